//! Privacy: the retention sweep (daily, continued through its own queue), the data-requests worker
//! (exports and erasures) and the audit appender (consent changes into the hash-chained audit log).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use tracing::{error, info, Instrument};

use crate::adapters::aws::Aws;
use crate::adapters::dynamo_audit::DynamoAudit;
use crate::adapters::dynamo_data::{DynamoCheckpoints, DynamoData};
use crate::adapters::dynamo_ledger::DynamoLedger;
use crate::adapters::dynamo_requests::DynamoDataRequests;
use crate::adapters::emf::EmfMetrics;
use crate::adapters::privacy::PrivacyStores;
use crate::adapters::s3_objects::S3Objects;
use crate::adapters::sqs_batch::{self, Failure};
use crate::adapters::sqs_queue::SqsQueue;
use crate::config;
use crate::config::{store_tables, InitError, Tables};
use crate::domain::envelope::Envelope;
use crate::function::{Function, Invocation, ScheduleFunction, SqsFunction};
use crate::ports::{Clock, DataRequest, InfraError, Metrics, SharedClock};
use crate::usecases::consent_audit::{self, LedgerRef};
use crate::usecases::data_requests::{self, Outcome, ProcessError, Processor};
use crate::usecases::sweep::{self, Continue, Progress, Report, Sweep};

/// The retention sweep. An EventBridge schedule (daily) starts a run; a run that nears the invocation's
/// time limit saves its position and queues a `sweep.continue` message on its own queue, whose delivery
/// runs it again from there. Each run's report goes to the audit log and out as metrics.
pub struct RetentionSweep {
    pub stores: PrivacyStores,
    pub checkpoints: DynamoCheckpoints,
    pub queue: SqsQueue,
    pub metrics: EmfMetrics,
    pub clock: SharedClock,
    pub lookback_days: u32,
}

config! {
    RetentionSweepConfig {
        tables: Tables = store_tables,
        platform_table: String = "PLATFORM_TABLE",
        exports_bucket: String = "EXPORTS_BUCKET",
        queue_url: String = "SWEEP_QUEUE_URL",
        lookback_days: u32 = "SWEEP_LOOKBACK_DAYS" or 35,
    }
}

impl Function for RetentionSweep {
    const NAME: &'static str = "retention-sweep";
    type Config = RetentionSweepConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        Ok(Self {
            stores: PrivacyStores::new(aws, config.tables, config.exports_bucket),
            checkpoints: DynamoCheckpoints::new(aws.dynamodb(), config.platform_table),
            queue: SqsQueue::new(aws.sqs(), config.queue_url),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            clock,
            lookback_days: config.lookback_days,
        })
    }
}

impl RetentionSweep {
    /// One run, stopping by `deadline` (see [`sweep::run_and_continue`]).
    pub async fn run(
        &self, dry_run: bool, deadline: DateTime<Utc>, progress: &impl Progress,
    ) -> Result<Report, InfraError> {
        let sweep = Sweep {
            data: &self.stores.data,
            checkpoints: &self.checkpoints,
            exports: Some(&self.stores.exports),
            requests: &self.stores.requests,
            audit: &self.stores.audit,
        };
        sweep::run_and_continue(
            &sweep,
            &self.clock,
            &self.queue,
            &self.metrics,
            dry_run,
            self.lookback_days,
            deadline,
            progress,
        )
        .await
    }

    /// Continuation messages: each runs the sweep on from its checkpoint.
    pub async fn continued(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span = tracing::info_span!("retention_sweep", request_id = %invocation.request_id, trigger = "continue");
        sqs_batch::process(event, invocation.deadline, |record| async move {
            Envelope::<Continue>::decode(record.body.as_deref().unwrap_or(""))?;
            self.run(false, invocation.deadline, &()).await?;
            Ok::<_, Failure>(())
        })
        .instrument(span)
        .await
    }
}

impl ScheduleFunction for RetentionSweep {
    /// Either trigger, told apart by shape: SQS events have `Records`; the schedule's content does not
    /// matter.
    async fn schedule(
        &self, event: serde_json::Value, invocation: &Invocation,
    ) -> Result<serde_json::Value, InfraError> {
        if event.get("Records").is_some() {
            let sqs: SqsEvent = serde_json::from_value(event).map_err(|e| InfraError {
                service: "lambda",
                operation: "decode SQS event",
                retryable: false,
                source: Some(Box::new(e)),
            })?;
            return Ok(serde_json::to_value(self.continued(sqs, invocation).await).unwrap_or_default());
        }
        let span = tracing::info_span!("retention_sweep", request_id = %invocation.request_id, trigger = "schedule");
        let report = self.run(false, invocation.deadline, &()).instrument(span).await?;
        Ok(serde_json::json!({ "complete": report.complete, "changed": report.items_changed }))
    }
}

/// The data-requests worker: one data-subject request per record (opened by the WhatsApp `DATA` keyword,
/// the merchant API or an operator). Access and export requests get a JSON export in the exports bucket
/// (encrypted, expiring); deletion requests erase the person's data except what the law says to keep. A
/// completed request is not done again on redelivery; a failure midway is retried whole, and every step
/// is idempotent.
pub struct DataRequestsWorker {
    pub stores: PrivacyStores,
    pub notifications: SqsQueue,
    pub metrics: EmfMetrics,
    pub clock: SharedClock,
}

config! {
    DataRequestsWorkerConfig {
        tables: Tables = store_tables,
        exports_bucket: String = "EXPORTS_BUCKET",
        /// Where the answers to people's own requests are queued for sending.
        notifications_queue_url: String = "NOTIFICATIONS_QUEUE_URL",
    }
}

impl Function for DataRequestsWorker {
    const NAME: &'static str = "data-requests-worker";
    type Config = DataRequestsWorkerConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        Ok(Self {
            stores: PrivacyStores::new(aws, config.tables, config.exports_bucket),
            notifications: SqsQueue::new(aws.sqs(), config.notifications_queue_url),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            clock,
        })
    }
}

impl DataRequestsWorker {
    pub fn processor<'a>(
        &'a self, actor: &'a str,
    ) -> Processor<'a, DynamoData, S3Objects, DynamoDataRequests, DynamoAudit> {
        Processor {
            data: &self.stores.data,
            exports: &self.stores.exports,
            requests: &self.stores.requests,
            audit: &self.stores.audit,
            actor,
        }
    }

    async fn request(&self, request: DataRequest) -> Result<(), ProcessError> {
        let id = request.id;
        let now = self.clock.now();
        let outcome = self.processor(Self::NAME).process(&id, now, false).await?;
        // The person's own request is answered to them (also after a redelivery that found it done).
        if let Some(reply_to) = &request.reply_to {
            let stores = &self.stores;
            if data_requests::answer_person(&stores.requests, &stores.exports, &self.notifications, &id, reply_to, now)
                .await?
            {
                self.metrics.count("data_request_answers_sent", 1, None);
            }
        }
        let (what, n) = match &outcome {
            Outcome::AlreadyDone => ("already_done", 0),
            Outcome::Exported { items, .. } => ("exported", *items),
            Outcome::Erased(r) => ("erased", r.deleted.values().sum::<u64>() + r.anonymised.values().sum::<u64>()),
            Outcome::NeedsOperator => ("needs_operator", 0),
        };
        self.metrics.count("data_requests_processed", 1, Some(("Outcome", what)));
        info!(request = %crate::telemetry::log_ref(&id), outcome = what, items = n, "data-subject request processed");
        Ok(())
    }
}

impl SqsFunction for DataRequestsWorker {
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span = tracing::info_span!("data_requests_worker", request_id = %invocation.request_id, records = event.records.len());
        sqs_batch::process(event, invocation.deadline, |record| async move {
            let env = Envelope::<DataRequest>::decode(record.body.as_deref().unwrap_or(""))?;
            self.request(env.payload).await?;
            Ok::<_, Failure>(())
        })
        .instrument(span)
        .await
    }
}

/// The audit appender: the one path by which consent changes enter the audit log. Each record is a ledger
/// entry's key (queued by the messaging table's stream); a whole batch is read back and appended in as few
/// chain steps as it takes. A record that is not a ledger reference fails on its own (and reaches the DLQ);
/// when the append fails, every reference in the batch is left for redelivery, and the audit keys make the
/// retry append only what is missing.
pub struct AuditAppender {
    pub clock: SharedClock,
    pub ledger: DynamoLedger,
    pub audit: DynamoAudit,
    pub metrics: EmfMetrics,
}

config! {
    AuditAppenderConfig {
        messaging_table: String = "MESSAGING_TABLE",
        data_requests_table: String = "DATA_REQUESTS_TABLE",
    }
}

impl Function for AuditAppender {
    const NAME: &'static str = "audit-appender";
    type Config = AuditAppenderConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let ddb = aws.dynamodb();
        Ok(Self {
            clock,
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table),
            audit: DynamoAudit::new(ddb, config.data_requests_table),
            metrics: EmfMetrics::new("Nex", Self::NAME),
        })
    }
}

impl SqsFunction for AuditAppender {
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span =
            tracing::info_span!("audit_appender", request_id = %invocation.request_id, records = event.records.len());
        async {
            let mut response = SqsBatchResponse::default();
            let mut refs = Vec::new();
            let mut ids = Vec::new();
            for record in event.records {
                let id = record.message_id.clone().unwrap_or_default();
                match record.body.as_deref().and_then(LedgerRef::parse) {
                    Some(r) => {
                        refs.push(r);
                        ids.push(id);
                    }
                    None => {
                        error!(message_id = %id, error_type = "NotALedgerReference", "record failed; left for redelivery");
                        response.batch_item_failures.push(sqs_batch::failure(id));
                    }
                }
            }
            if refs.is_empty() {
                return response;
            }
            match consent_audit::audit_changes(&self.ledger, &self.audit, &refs, self.clock.now()).await {
                Ok(appended) => {
                    self.metrics.count("audit_entries_appended", appended as u64, None);
                    info!(references = refs.len(), appended, "consent changes audited");
                }
                Err(e) => {
                    self.metrics.count("audit_append_failed", 1, None);
                    error!(error = %e, retryable = e.retryable, references = refs.len(), "consent changes not audited; left for redelivery");
                    response.batch_item_failures.extend(ids.into_iter().map(sqs_batch::failure));
                }
            }
            response
        }
        .instrument(span)
        .await
    }
}
