//! The data-requests worker: one data-subject request per SQS record (opened by the WhatsApp `DATA`
//! keyword, the merchant API or an operator). Access and export requests get a JSON export in the exports
//! bucket (encrypted, expiring); deletion requests erase the person's data except what the law says to keep.
//! A completed request is not done again on redelivery; a failure midway is retried whole, and every step is
//! idempotent.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use nex_shared::adapters::dynamo_audit::DynamoAudit;
use nex_shared::adapters::dynamo_data::DynamoData;
use nex_shared::adapters::dynamo_requests::DynamoDataRequests;
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::adapters::privacy::PrivacyStores;
use nex_shared::adapters::s3_objects::S3Objects;
use nex_shared::adapters::sqs_batch::{self, RecordError};
use nex_shared::adapters::sqs_queue::SqsQueue;
use nex_shared::config::{store_tables, ConfigError, Vars};
use nex_shared::domain::envelope::{Envelope, EnvelopeError};
use nex_shared::domain::inventory::Store;
use nex_shared::ports::{Clock, DataRequest, Metrics, SystemClock};
use nex_shared::usecases::data_requests::{self, Outcome, ProcessError, Processor};
use tracing::{info, Instrument};

#[derive(Debug, Clone)]
pub struct Config {
    pub tables: std::collections::BTreeMap<Store, String>,
    pub exports_bucket: String,
    /// Where the answers to people's own requests are queued for sending.
    pub notifications_queue_url: String,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            tables: store_tables(v)?,
            exports_bucket: v.required("EXPORTS_BUCKET")?,
            notifications_queue_url: v.required("NOTIFICATIONS_QUEUE_URL")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

impl RecordError for WorkerError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Envelope(_) => "BadMessage",
            Self::Process(ProcessError::Unknown(_)) => "UnknownRequest",
            Self::Process(ProcessError::Infra(_)) => "Infrastructure",
        }
    }
}

pub struct App<C = SystemClock> {
    pub stores: PrivacyStores,
    pub notifications: SqsQueue,
    pub metrics: EmfMetrics,
    pub clock: C,
}

impl<C: Clock> App<C> {
    pub fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            stores: PrivacyStores::new(sdk, ddb, config.tables, config.exports_bucket),
            notifications: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.notifications_queue_url),
            metrics: EmfMetrics::new("Nex", "data-requests-worker"),
            clock,
        }
    }

    pub fn processor<'a>(
        &'a self,
        actor: &'a str,
    ) -> Processor<'a, DynamoData, S3Objects, DynamoDataRequests, DynamoAudit> {
        Processor {
            data: &self.stores.data,
            exports: &self.stores.exports,
            requests: &self.stores.requests,
            audit: &self.stores.audit,
            actor,
        }
    }

    pub async fn handle(&self, event: SqsEvent, request_id: &str) -> SqsBatchResponse {
        let span = tracing::info_span!("data_requests_worker", request_id = %request_id, records = event.records.len());
        sqs_batch::process(event, |record| async move {
            let env = Envelope::<DataRequest>::decode(record.body.as_deref().unwrap_or(""))?;
            let id = env.payload.id;
            let now = self.clock.now();
            let outcome = self.processor("data-requests-worker").process(&id, now, false).await?;
            // The person's own request is answered to them (also after a redelivery that found it done).
            if let Some(reply_to) = &env.payload.reply_to {
                let sent = data_requests::answer_person(
                    &self.stores.requests,
                    &self.stores.exports,
                    &self.notifications,
                    &id,
                    reply_to,
                    now,
                )
                .await
                .map_err(ProcessError::from)?;
                if sent {
                    self.metrics.count("data_request_answers_sent", 1, None);
                }
            }
            let (what, n) = match &outcome {
                Outcome::AlreadyDone => ("already_done", 0),
                Outcome::Exported { items, .. } => ("exported", *items),
                Outcome::Erased(r) => (
                    "erased",
                    r.deleted.values().sum::<u64>() + r.anonymised.values().sum::<u64>(),
                ),
                Outcome::NeedsOperator => ("needs_operator", 0),
            };
            self.metrics
                .count("data_requests_processed", 1, Some(("Outcome", what)));
            info!(request = %id, outcome = what, items = n, "data-subject request processed");
            Ok::<_, WorkerError>(())
        })
        .instrument(span)
        .await
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

impl nex_shared::function::SqsFunction for App {
    async fn sqs(
        &self,
        event: aws_lambda_events::sqs::SqsEvent,
        invocation: &nex_shared::function::Invocation,
    ) -> aws_lambda_events::sqs::SqsBatchResponse {
        self.handle(event, &invocation.request_id).await
    }
}
