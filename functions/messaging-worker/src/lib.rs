//! The messaging worker: one record at a time from the messaging queue, partial batch failures reported.
//! Inbound messages go into their conversation's transcript (moving its 90-day deadline); receipts move
//! an outbound message's delivery state up, never down. Every write is idempotent by construction
//! (conditional put per wamid, monotonic conditional updates), so a redelivered record changes nothing.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use nex_shared::adapters::dynamo_messaging::DynamoConversations;
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::adapters::sqs_batch::{self, RecordError};
use nex_shared::config::{ConfigError, Vars};
use nex_shared::domain::envelope::{Envelope, EnvelopeError, Message};
use nex_shared::domain::whatsapp::delivery::Delivery;
use nex_shared::ports::{InfraError, Metrics, Receipts, TranscriptMessage, Transcripts};
use nex_shared::usecases::whatsapp_ingest::{InboundMessage, Receipt};
use tracing::{info, Instrument};

#[derive(Debug, Clone)]
pub struct Config {
    pub messaging_table: String,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            messaging_table: v.required("MESSAGING_TABLE")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("message names no person (neither phone nor BSUID)")]
    NoSubject,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl RecordError for WorkerError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Envelope(EnvelopeError::Malformed) => "MalformedEnvelope",
            Self::Envelope(EnvelopeError::Unsupported { .. }) => "UnsupportedMessage",
            Self::Envelope(EnvelopeError::BadPayload) => "BadPayload",
            Self::NoSubject => "NoSubject",
            Self::Infra(_) => "Infrastructure",
        }
    }
}

pub struct App {
    pub conversations: DynamoConversations,
    pub metrics: EmfMetrics,
}

impl App {
    pub fn build(sdk: &aws_config::SdkConfig, config: Config) -> Self {
        Self {
            conversations: DynamoConversations::new(aws_sdk_dynamodb::Client::new(sdk), config.messaging_table),
            metrics: EmfMetrics::new("Nex", "messaging-worker"),
        }
    }

    pub async fn handle(&self, event: SqsEvent, request_id: &str) -> SqsBatchResponse {
        let span = tracing::info_span!("messaging_worker", request_id = %request_id, records = event.records.len());
        let response = sqs_batch::process(event, |record| async move {
            self.record(record.body.as_deref().unwrap_or("")).await
        })
        .instrument(span)
        .await;
        if !response.batch_item_failures.is_empty() {
            self.metrics.count(
                "messaging_records_failed",
                response.batch_item_failures.len() as u64,
                None,
            );
        }
        response
    }

    async fn record(&self, body: &str) -> Result<(), WorkerError> {
        let kind = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .ok_or(EnvelopeError::Malformed)?;
        match kind.as_str() {
            InboundMessage::KIND => {
                let env = Envelope::<InboundMessage>::decode(body)?;
                let m = env.payload;
                let subject = m.subjects.first().ok_or(WorkerError::NoSubject)?;
                let message = TranscriptMessage {
                    wamid: m.wamid.clone(),
                    direction: "in".into(),
                    kind: m.kind.clone(),
                    text: m.text,
                    at: m.sent_at,
                };
                let deadline = self.conversations.append(&m.merchant, subject, &message, true).await?;
                info!(wamid = %m.wamid, merchant = %m.merchant, kind = %m.kind, keeps_until = %deadline.date_naive(), "transcript updated");
                Ok(())
            }
            Receipt::KIND => {
                let env = Envelope::<Receipt>::decode(body)?;
                let r = env.payload;
                let Some(status) = Delivery::parse(&r.status) else {
                    self.metrics.count("whatsapp_status_unknown", 1, None);
                    info!(wamid = %r.wamid, status = %r.status, "receipt status not modelled; acknowledged");
                    return Ok(());
                };
                self.conversations
                    .apply(
                        &r.wamid,
                        r.subjects.first().map(String::as_str),
                        status,
                        r.error_code,
                        r.at,
                    )
                    .await?;
                info!(wamid = %r.wamid, status = %r.status, error_code = r.error_code, "receipt applied");
                Ok(())
            }
            _ => Err(Envelope::<InboundMessage>::decode(body)
                .err()
                .unwrap_or(EnvelopeError::Malformed)
                .into()),
        }
    }
}
