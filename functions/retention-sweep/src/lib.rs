//! The retention sweep function. An EventBridge schedule (daily) starts a run; a run that nears the
//! invocation's time limit saves its position and queues a `sweep.continue` message on its own queue, whose
//! delivery runs it again from there. Each run's report goes to the audit log and out as metrics
//! (`sweep_oldest_overdue_seconds` is alarmed above 24 hours; `data_requests_due_soon` and
//! `data_requests_overdue` alarm before a request's deadline is missed).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Duration, Utc};
use nex_shared::adapters::dynamo_data::DynamoCheckpoints;
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::adapters::privacy::PrivacyStores;
use nex_shared::adapters::sqs_batch::{self, RecordError};
use nex_shared::adapters::sqs_queue::SqsQueue;
use nex_shared::config::{store_tables, ConfigError, Vars};
use nex_shared::domain::envelope::{Envelope, EnvelopeError, Message};
use nex_shared::domain::inventory::Store;
use nex_shared::ports::{Clock, InfraError, Metrics, Queue, SystemClock};
use nex_shared::usecases::sweep::{Options, Progress, Report, Sweep};
use serde::{Deserialize, Serialize};
use tracing::{info, Instrument};

/// Time kept back from the invocation's deadline to save the position and queue the continuation.
const MARGIN: Duration = Duration::seconds(20);

#[derive(Debug, Clone)]
pub struct Config {
    pub tables: std::collections::BTreeMap<Store, String>,
    pub platform_table: String,
    pub exports_bucket: String,
    pub queue_url: String,
    pub lookback_days: u32,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            tables: store_tables(v)?,
            platform_table: v.required("PLATFORM_TABLE")?,
            exports_bucket: v.required("EXPORTS_BUCKET")?,
            queue_url: v.required("SWEEP_QUEUE_URL")?,
            lookback_days: v.parsed_or("SWEEP_LOOKBACK_DAYS", 35)?,
        })
    }
}

/// Asks the sweep to carry on from its checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Continue {
    pub started_at: DateTime<Utc>,
}

impl Message for Continue {
    const KIND: &'static str = "sweep.continue";
    const VERSION: u32 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl RecordError for SweepError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Envelope(_) => "BadMessage",
            Self::Infra(_) => "Infrastructure",
        }
    }
}

pub struct App<C = SystemClock> {
    pub stores: PrivacyStores,
    pub checkpoints: DynamoCheckpoints,
    pub queue: SqsQueue,
    pub metrics: EmfMetrics,
    pub clock: C,
    pub lookback_days: u32,
}

impl<C: Clock> App<C> {
    pub fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            stores: PrivacyStores::new(sdk, ddb.clone(), config.tables, config.exports_bucket),
            checkpoints: DynamoCheckpoints::new(ddb, config.platform_table),
            queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.queue_url),
            metrics: EmfMetrics::new("Nex", "retention-sweep"),
            clock,
            lookback_days: config.lookback_days,
        }
    }

    /// One run, stopping by `deadline` (minus a margin). Used by the function and the operator CLI.
    pub async fn run(
        &self,
        dry_run: bool,
        deadline: DateTime<Utc>,
        progress: &impl Progress,
    ) -> Result<Report, InfraError> {
        let now = self.clock.now();
        let sweep = Sweep {
            data: &self.stores.data,
            checkpoints: &self.checkpoints,
            exports: Some(&self.stores.exports),
            requests: &self.stores.requests,
            audit: &self.stores.audit,
        };
        let opts = Options {
            dry_run,
            lookback_days: self.lookback_days,
            stop_at: deadline - MARGIN,
            crash_after_pages: None,
            checkpoint_every: nex_shared::usecases::sweep::CHECKPOINT_EVERY,
        };
        let report = sweep.run(now, &self.clock, &opts, progress).await?;
        self.publish(&report);
        if !report.complete && !dry_run {
            let msg = Continue { started_at: now };
            let id = format!("sweep-{}", now.timestamp());
            self.queue
                .send(&Envelope::new(id.clone(), now, id, msg).encode())
                .await?;
        }
        Ok(report)
    }

    fn publish(&self, r: &Report) {
        let sum = |action: &str| -> u64 { r.actions.values().filter_map(|m| m.get(action)).sum() };
        let m = &self.metrics;
        m.count("sweep_items_deleted", sum("delete"), None);
        m.count("sweep_items_anonymised", sum("anonymise"), None);
        m.count("sweep_items_read", r.items_read, None);
        m.count(
            "sweep_oldest_overdue_seconds",
            r.oldest_overdue_seconds.unwrap_or(0).max(0) as u64,
            None,
        );
        m.count(
            "sweep_ttl_lag_seconds",
            r.ttl_lag_seconds.unwrap_or(0).max(0) as u64,
            None,
        );
        m.count("sweep_incomplete", u64::from(!r.complete), None);
        m.count("data_requests_overdue", r.requests_overdue, None);
        m.count("data_requests_due_soon", r.requests_due_soon, None);
        info!(
            dry_run = r.dry_run,
            complete = r.complete,
            changed = r.items_changed,
            read = r.items_read,
            buckets = r.buckets_read,
            oldest_overdue_seconds = r.oldest_overdue_seconds,
            requests_overdue = r.requests_overdue,
            "retention sweep run"
        );
    }

    /// The scheduled event (its content does not matter) starts a run.
    pub async fn scheduled(&self, request_id: &str, deadline: DateTime<Utc>) -> Result<Report, InfraError> {
        let span = tracing::info_span!("retention_sweep", request_id = %request_id, trigger = "schedule");
        self.run(false, deadline, &()).instrument(span).await
    }

    /// Continuation messages: each runs the sweep on from its checkpoint.
    pub async fn continued(&self, event: SqsEvent, request_id: &str, deadline: DateTime<Utc>) -> SqsBatchResponse {
        let span = tracing::info_span!("retention_sweep", request_id = %request_id, trigger = "continue");
        sqs_batch::process(event, |record| async move {
            Envelope::<Continue>::decode(record.body.as_deref().unwrap_or(""))?;
            self.run(false, deadline, &()).await?;
            Ok::<_, SweepError>(())
        })
        .instrument(span)
        .await
    }

    /// Either trigger, told apart by shape: SQS events have `Records`.
    pub async fn handle(
        &self,
        event: serde_json::Value,
        request_id: &str,
        deadline: DateTime<Utc>,
    ) -> Result<serde_json::Value, InfraError> {
        if event.get("Records").is_some() {
            let sqs: SqsEvent = serde_json::from_value(event).map_err(|e| InfraError {
                service: "lambda",
                operation: "decode SQS event",
                retryable: false,
                source: Some(Box::new(e)),
            })?;
            let out = self.continued(sqs, request_id, deadline).await;
            return Ok(serde_json::to_value(out).unwrap_or_default());
        }
        let report = self.scheduled(request_id, deadline).await?;
        Ok(serde_json::json!({ "complete": report.complete, "changed": report.items_changed }))
    }
}

/// The function's shape (see `nex_shared::function`): its configuration, its app, its trigger.
impl nex_shared::function::Function for App {
    type Config = Config;

    fn config(vars: &impl nex_shared::config::Vars) -> Result<Config, nex_shared::config::ConfigError> {
        Config::from_vars(vars)
    }

    async fn build(sdk: &aws_config::SdkConfig, config: Config) -> Result<Self, nex_shared::config::InitError> {
        Ok(App::build(sdk, config, SystemClock))
    }
}

impl nex_shared::function::ScheduleFunction for App {
    async fn schedule(
        &self,
        event: serde_json::Value,
        invocation: &nex_shared::function::Invocation,
    ) -> Result<serde_json::Value, nex_shared::ports::InfraError> {
        self.handle(event, &invocation.request_id, invocation.deadline).await
    }
}
