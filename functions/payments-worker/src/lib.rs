//! The payments worker: turns an SQS batch into one `ApplyPayment` call per record and reports the
//! records that failed, so only they are redelivered (and, after the queue's `maxReceiveCount`, moved to
//! the DLQ).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use nex_shared::adapters::dynamo_idempotency::{DynamoIdempotency, DynamoInbox};
use nex_shared::adapters::dynamo_payments::DynamoPayments;
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::adapters::sqs_batch::{self, RecordError};
use nex_shared::adapters::sqs_queue::SqsQueue;
use nex_shared::config::{ConfigError, Vars};
use nex_shared::domain::envelope::{Envelope, EnvelopeError};
use nex_shared::domain::stripe::event::PaymentEvent;
use nex_shared::ports::{Clock, InfraError, Metrics, SystemClock};
use nex_shared::usecases::apply_payment::{Applied, ApplyError, ApplyPayment};
use nex_shared::usecases::inbox;
use tracing::{info, Instrument};

#[derive(Debug, Clone)]
pub struct Config {
    pub platform_table: String,
    pub payments_table: String,
    pub notifications_queue_url: String,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            platform_table: v.required("PLATFORM_TABLE")?,
            payments_table: v.required("PAYMENTS_TABLE")?,
            notifications_queue_url: v.required("NOTIFICATIONS_QUEUE_URL")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Inbox(#[from] InfraError),
}

impl RecordError for WorkerError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Envelope(EnvelopeError::Malformed) => "MalformedEnvelope",
            Self::Envelope(EnvelopeError::Unsupported { .. }) => "UnsupportedMessage",
            Self::Envelope(EnvelopeError::BadPayload) => "BadPayload",
            Self::Apply(e) => e.error_type(),
            Self::Inbox(_) => "Infrastructure",
        }
    }
}

pub struct App<C = SystemClock> {
    pub clock: C,
    pub idempotency: DynamoIdempotency,
    /// Where the webhook's events wait; the queue carries references to them.
    pub inbox: DynamoInbox,
    pub payments: DynamoPayments,
    pub notifications: SqsQueue,
    pub metrics: EmfMetrics,
}

impl<C: Clock> App<C> {
    pub fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            clock,
            idempotency: DynamoIdempotency::new(ddb.clone(), config.platform_table.clone()),
            inbox: DynamoInbox::new(ddb.clone(), config.platform_table),
            payments: DynamoPayments::new(ddb, config.payments_table),
            notifications: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.notifications_queue_url),
            metrics: EmfMetrics::new("Nex", "payments-worker"),
        }
    }

    /// Handles one batch. `deadline`: when the invocation is cut off (bounds the idempotency locks).
    pub async fn handle(&self, event: SqsEvent, request_id: &str, deadline: DateTime<Utc>) -> SqsBatchResponse {
        let span = tracing::info_span!("payments_worker", request_id = %request_id, records = event.records.len());
        let use_case = ApplyPayment {
            clock: &self.clock,
            idempotency: &self.idempotency,
            payments: &self.payments,
            notifications: &self.notifications,
        };
        let response = sqs_batch::process(event, |record| {
            let use_case = &use_case;
            async move {
                let resolved = inbox::resolve(&self.inbox, record.body.as_deref().unwrap_or(""), self.clock.now()).await?;
                let Some(body) = resolved.body() else {
                    info!("payment event applied before (its inbox body is gone); nothing to do");
                    return Ok(());
                };
                let envelope = Envelope::<PaymentEvent>::decode(body)?;
                let outcome = use_case.handle(&envelope.payload, deadline).await?;
                inbox::settle(&self.inbox, &resolved).await?;
                let (status, effect) = match &outcome {
                    Applied::Updated { status } => (status.as_str(), "updated"),
                    Applied::Unchanged { status } => (status.as_str(), "unchanged"),
                    Applied::AlreadyDone => ("", "already_done"),
                    Applied::PastDeadline => ("", "past_retention_deadline_not_stored"),
                };
                info!(event_id = %envelope.id, trace_id = %envelope.trace_id, event_type = %envelope.payload.event_type, effect, status, "payment event applied");
                Ok::<_, WorkerError>(())
            }
        })
        .instrument(span)
        .await;
        let failed = response.batch_item_failures.len() as u64;
        if failed > 0 {
            self.metrics.count("payment_records_failed", failed, None);
        }
        response
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
        self.handle(event, &invocation.request_id, invocation.deadline).await
    }
}
