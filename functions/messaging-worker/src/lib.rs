//! The messaging worker: one record at a time from the messaging queue, partial batch failures reported.
//! Inbound messages go into their conversation's transcript (moving its 90-day deadline); receipts move
//! an outbound message's delivery state up, never down. Every write is idempotent by construction
//! (conditional put per wamid, monotonic conditional updates), so a redelivered record changes nothing.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use nex_shared::adapters::dynamo_idempotency::DynamoInbox;
use nex_shared::adapters::dynamo_messaging::{DynamoConversations, DynamoLedger};
use nex_shared::adapters::dynamo_requests::DynamoDataRequests;
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::adapters::secrets;
use nex_shared::adapters::sqs_batch::{self, RecordError};
use nex_shared::adapters::sqs_queue::SqsQueue;
use nex_shared::config::{ConfigError, Vars};
use nex_shared::domain::envelope::{Envelope, EnvelopeError, Message};
use nex_shared::domain::retention::{self, DataClass};
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::domain::whatsapp::delivery::Delivery;
use nex_shared::ports::{
    DataRequest, DataRequests, InfraError, Metrics, Queue, Receipts, ReplyTo, TranscriptMessage, Transcripts,
};
use nex_shared::usecases::inbox;
use nex_shared::usecases::opt_in::{self, OptIn, OptInError};
use nex_shared::usecases::send_notification::{Content, SendRequest};
use nex_shared::usecases::whatsapp_ingest::{InboundMessage, Receipt};
use tracing::{info, Instrument};

#[derive(Debug, Clone)]
pub struct Config {
    pub messaging_table: String,
    pub platform_table: String,
    pub data_requests_table: String,
    pub data_requests_queue_url: String,
    pub notifications_queue_url: String,
    pub pepper_secret_id: String,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            messaging_table: v.required("MESSAGING_TABLE")?,
            platform_table: v.required("PLATFORM_TABLE")?,
            data_requests_table: v.required("DATA_REQUESTS_TABLE")?,
            data_requests_queue_url: v.required("DATA_REQUESTS_QUEUE_URL")?,
            notifications_queue_url: v.required("NOTIFICATIONS_QUEUE_URL")?,
            pepper_secret_id: v.required("SUBJECT_PEPPER_SECRET_ID")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("message names no person (neither phone nor BSUID)")]
    NoSubject,
    #[error("opt-in refused: {0}")]
    BadOptIn(&'static str),
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
            Self::BadOptIn(_) => "BadOptIn",
            Self::Infra(_) => "Infrastructure",
        }
    }
}

pub struct App {
    pub hasher: SubjectHasher,
    pub ledger: DynamoLedger,
    pub conversations: DynamoConversations,
    pub requests: DynamoDataRequests,
    /// Where the WhatsApp webhook's items wait; the queue carries references to them.
    pub inbox: DynamoInbox,
    pub data_requests_queue: SqsQueue,
    pub notifications_queue: SqsQueue,
    pub metrics: EmfMetrics,
}

impl App {
    /// Builds the clients and fetches the subject-hash pepper (once, for the container's life).
    pub async fn build(sdk: &aws_config::SdkConfig, config: Config) -> Result<Self, InfraError> {
        let pepper = secrets::fetch(&aws_sdk_secretsmanager::Client::new(sdk), &config.pepper_secret_id).await?;
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Ok(Self {
            hasher: SubjectHasher::new(&pepper),
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table.clone()),
            conversations: DynamoConversations::new(ddb.clone(), config.messaging_table),
            requests: DynamoDataRequests::new(ddb.clone(), config.data_requests_table.clone()),
            inbox: DynamoInbox::new(ddb.clone(), config.platform_table),
            data_requests_queue: SqsQueue::new(sqs.clone(), config.data_requests_queue_url),
            notifications_queue: SqsQueue::new(sqs, config.notifications_queue_url),
            metrics: EmfMetrics::new("Nex", "messaging-worker"),
        })
    }

    /// The `DATA` keyword: opens a data-subject request (30 days to answer), queues it for the
    /// data-requests function and queues a confirmation to the person. Each step is idempotent (stable
    /// ids), so a redelivery after a partial failure completes what is missing and duplicates nothing.
    async fn data_request(&self, m: &InboundMessage) -> Result<(), WorkerError> {
        let now = chrono::Utc::now();
        let request = DataRequest {
            id: format!("wa-{}", m.wamid),
            subjects: m.subjects.clone(),
            kind: "unspecified".into(),
            source: nex_shared::ports::SOURCE_PERSON.into(),
            // The person's own request is held for no merchant: it covers every merchant, so no merchant
            // may read, count or erase it (the merchant it arrived through is in `reply_to`).
            merchant: None,
            received_at: m.sent_at,
            answer_by: retention::deadline(DataClass::DataSubjectRequest, m.sent_at).unwrap_or(m.sent_at),
            // The answer goes back to the number that asked (in the queue message only, never stored).
            reply_to: m.phone.as_ref().map(|p| ReplyTo {
                merchant: m.merchant.clone(),
                phone_number_id: m.phone_number_id.clone(),
                to: format!("+{}", p.trim_start_matches('+')),
            }),
        };
        let opened = self.requests.open(&request).await?;
        self.data_requests_queue
            .send(&Envelope::new(request.id.clone(), now, m.wamid.clone(), request.clone()).encode())
            .await?;
        if let Some(phone) = &m.phone {
            let confirm = SendRequest {
                id: format!("dsr-confirm-{}", m.wamid),
                merchant: m.merchant.clone(),
                phone_number_id: Some(m.phone_number_id.clone()),
                to: format!("+{}", phone.trim_start_matches('+')),
                content: Content::Text {
                    body: format!(
                        "We received your data request (reference {}). We will answer by {}.",
                        request.id,
                        request.answer_by.format("%Y-%m-%d")
                    ),
                },
                own_order: false,
                order_open: false,
                private: false,
            };
            self.notifications_queue
                .send(&Envelope::new(confirm.id.clone(), now, m.wamid.clone(), confirm).encode())
                .await?;
        }
        self.metrics.count("data_requests_opened", u64::from(opened), None);
        info!(request = %request.id, merchant = %m.merchant, opened, answer_by = %request.answer_by.date_naive(), "data-subject request opened from WhatsApp");
        Ok(())
    }

    pub async fn handle(&self, event: SqsEvent, request_id: &str) -> SqsBatchResponse {
        let span = tracing::info_span!("messaging_worker", request_id = %request_id, records = event.records.len());
        let response = sqs_batch::process(event, |record| async move {
            let resolved =
                inbox::resolve(&self.inbox, record.body.as_deref().unwrap_or(""), chrono::Utc::now()).await?;
            let Some(body) = resolved.body() else {
                info!("webhook item applied before (its inbox body is gone); nothing to do");
                return Ok(());
            };
            self.record(body).await?;
            inbox::settle(&self.inbox, &resolved).await?;
            Ok::<_, WorkerError>(())
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
                    text: m.text.clone(),
                    at: m.sent_at,
                };
                let deadline = self.conversations.append(&m.merchant, subject, &message, true).await?;
                if m.keyword.as_deref() == Some("data_request") {
                    self.data_request(&m).await?;
                }
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
                        &r.merchant,
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
            OptIn::KIND => {
                let env = Envelope::<OptIn>::decode(body)?;
                let merchant = env.payload.merchant.clone().unwrap_or_default();
                let n = opt_in::record(&self.ledger, &self.hasher, &merchant, &env.payload, chrono::Utc::now())
                    .await
                    .map_err(|e| match e {
                        OptInError::Infra(i) => WorkerError::Infra(i),
                        other => WorkerError::BadOptIn(other.reason()),
                    })?;
                info!(merchant = %merchant, source = %env.payload.source, identifiers = n, "opt-in recorded from the storefront");
                Ok(())
            }
            // Any other type or version fails the record, so it reaches the DLQ.
            _ => Err(Envelope::<InboundMessage>::decode(body)
                .err()
                .unwrap_or(EnvelopeError::Malformed)
                .into()),
        }
    }
}

/// The function's shape (see `nex_shared::function`): its configuration, its app, its trigger.
impl nex_shared::function::Function for App {
    type Config = Config;

    fn config(vars: &impl nex_shared::config::Vars) -> Result<Config, nex_shared::config::ConfigError> {
        Config::from_vars(vars)
    }

    async fn build(sdk: &aws_config::SdkConfig, config: Config) -> Result<Self, nex_shared::config::InitError> {
        Ok(App::build(sdk, config).await?)
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
