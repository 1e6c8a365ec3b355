//! The audit appender: the one path by which consent changes enter the audit log. Each SQS record is a
//! ledger entry's key (queued by the messaging table's stream); a whole batch is read back and appended
//! in as few chain steps as it takes. A record that is not a ledger reference fails on its own (and
//! reaches the DLQ); when the append fails, every reference in the batch is left for redelivery, and
//! the audit keys make the retry append only what is missing.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use nex_shared::adapters::dynamo_audit::DynamoAudit;
use nex_shared::adapters::dynamo_messaging::DynamoLedger;
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::config::{ConfigError, Vars};
use nex_shared::ports::{Clock, Metrics, SystemClock};
use nex_shared::usecases::consent_audit::{self, LedgerRef};
use tracing::{error, info, Instrument};

#[derive(Debug, Clone)]
pub struct Config {
    pub messaging_table: String,
    pub data_requests_table: String,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            messaging_table: v.required("MESSAGING_TABLE")?,
            data_requests_table: v.required("DATA_REQUESTS_TABLE")?,
        })
    }
}

pub struct App<C = SystemClock> {
    pub clock: C,
    pub ledger: DynamoLedger,
    pub audit: DynamoAudit,
    pub metrics: EmfMetrics,
}

impl<C: Clock> App<C> {
    pub fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            clock,
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table),
            audit: DynamoAudit::new(ddb, config.data_requests_table),
            metrics: EmfMetrics::new("Nex", "audit-appender"),
        }
    }

    pub async fn handle(&self, event: SqsEvent, request_id: &str) -> SqsBatchResponse {
        let span = tracing::info_span!("audit_appender", request_id = %request_id, records = event.records.len());
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
                        response.batch_item_failures.push(failure(id));
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
                    response.batch_item_failures.extend(ids.into_iter().map(failure));
                }
            }
            response
        }
        .instrument(span)
        .await
    }
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
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
