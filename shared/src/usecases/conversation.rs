//! What the messaging worker does with one record of the messaging queue: an inbound message goes into
//! its conversation's transcript (moving its 90-day deadline) and a `DATA` keyword opens a data-subject
//! request; a receipt moves an outbound message's delivery state up, never down; a storefront opt-in goes
//! into the consent ledger. Every write is idempotent by construction (conditional put per wamid,
//! monotonic conditional updates, stable request and send ids), so a redelivered record changes nothing.

use chrono::{DateTime, Utc};
use tracing::info;

use crate::adapters::sqs_batch::RecordError;

use crate::domain::envelope::{Envelope, EnvelopeError, Message};
use crate::domain::retention::{self, DataClass};
use crate::domain::subject::SubjectHasher;
use crate::domain::whatsapp::delivery::Delivery;
use crate::ports::{
    Clock, ConsentLedger, DataRequest, DataRequests, IdempotencyStore, InfraError, Metrics, Queue, Receipts, ReplyTo,
    TranscriptMessage, Transcripts,
};
use crate::usecases::opt_in::{self, OptIn, OptInError};
use crate::usecases::send_notification::{Content, SendRequest};
use crate::usecases::whatsapp_ingest::{InboundMessage, Receipt};

#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("message names no person (neither phone nor BSUID)")]
    NoSubject,
    #[error("opt-in refused: {0}")]
    BadOptIn(&'static str),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl RecordError for ConversationError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Envelope(e) => e.error_type(),
            Self::NoSubject => "NoSubject",
            Self::BadOptIn(_) => "BadOptIn",
            Self::Infra(_) => "Infrastructure",
        }
    }
}

pub struct Conversation<'a, K, L, T, R, Q, M, I> {
    pub clock: &'a K,
    pub hasher: &'a SubjectHasher,
    pub ledger: &'a L,
    pub transcripts: &'a T,
    pub requests: &'a R,
    pub data_requests_queue: &'a Q,
    pub notifications_queue: &'a Q,
    pub metrics: &'a M,
    /// The notifications sender's claims: a status webhook confirms a send left unconfirmed.
    pub sends: &'a I,
}

impl<K, L, T, R, Q, M, I> Conversation<'_, K, L, T, R, Q, M, I>
where
    K: Clock,
    L: ConsentLedger,
    T: Transcripts + Receipts,
    R: DataRequests,
    Q: Queue,
    M: Metrics,
    I: IdempotencyStore,
{
    /// Applies one message of the messaging queue (an envelope). Any other type or version fails the
    /// record, so it reaches the DLQ.
    pub async fn apply(&self, body: &str) -> Result<(), ConversationError> {
        let kind = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .ok_or(EnvelopeError::Malformed)?;
        match kind.as_str() {
            InboundMessage::KIND => self.inbound(Envelope::<InboundMessage>::decode(body)?.payload).await,
            Receipt::KIND => self.receipt(Envelope::<Receipt>::decode(body)?.payload).await,
            OptIn::KIND => self.opt_in(Envelope::<OptIn>::decode(body)?.payload).await,
            _ => Err(Envelope::<InboundMessage>::decode(body).err().unwrap_or(EnvelopeError::Malformed).into()),
        }
    }

    async fn inbound(&self, m: InboundMessage) -> Result<(), ConversationError> {
        let subject = m.subjects.first().ok_or(ConversationError::NoSubject)?;
        let message = TranscriptMessage {
            wamid: m.wamid.clone(),
            direction: "in".into(),
            kind: m.kind.clone(),
            text: m.text.clone(),
            at: m.sent_at,
        };
        let deadline = self.transcripts.append(&m.merchant, subject, &message, true).await?;
        if m.keyword.as_deref() == Some("data_request") {
            self.data_request(&m, self.clock.now()).await?;
        }
        info!(wamid = %crate::telemetry::log_ref(&m.wamid), merchant = %m.merchant, kind = %m.kind, keeps_until = %deadline.date_naive(), "transcript updated");
        Ok(())
    }

    async fn receipt(&self, r: Receipt) -> Result<(), ConversationError> {
        // Any status of a message of ours means Meta took it: an attempt that could not record that is
        // confirmed here, so its redelivery records it as sent instead of sending it again.
        if let Some(request_id) = &r.callback {
            if crate::usecases::send_notification::confirm_sent(self.sends, &r.merchant, request_id, &r.wamid).await? {
                self.metrics.count("whatsapp_send_confirmed", 1, None);
                info!(wamid = %crate::telemetry::log_ref(&r.wamid), "an unconfirmed send confirmed by Meta's status webhook");
            }
        }
        let Some(status) = Delivery::parse(&r.status) else {
            self.metrics.count("whatsapp_status_unknown", 1, None);
            info!(wamid = %crate::telemetry::log_ref(&r.wamid), status = %r.status, "receipt status not modelled; acknowledged");
            return Ok(());
        };
        self.transcripts
            .apply(&r.merchant, &r.wamid, r.subjects.first().map(String::as_str), status, r.error_code, r.at)
            .await?;
        info!(wamid = %crate::telemetry::log_ref(&r.wamid), status = %r.status, error_code = r.error_code, "receipt applied");
        Ok(())
    }

    async fn opt_in(&self, o: OptIn) -> Result<(), ConversationError> {
        let merchant = o.merchant.clone().unwrap_or_default();
        let n =
            opt_in::record(self.ledger, self.hasher, &merchant, &o, self.clock.now()).await.map_err(|e| match e {
                OptInError::Infra(i) => ConversationError::Infra(i),
                other => ConversationError::BadOptIn(other.reason()),
            })?;
        info!(merchant = %merchant, source = %o.source, identifiers = n, "opt-in recorded from the storefront");
        Ok(())
    }

    /// The `DATA` keyword: opens a data-subject request (30 days to answer), queues it for the
    /// data-requests function and queues a confirmation to the person. Each step is idempotent (stable
    /// ids), so a redelivery after a partial failure completes what is missing and duplicates nothing.
    async fn data_request(&self, m: &InboundMessage, now: DateTime<Utc>) -> Result<(), ConversationError> {
        let request = DataRequest {
            id: format!("wa-{}", m.wamid),
            subjects: m.subjects.clone(),
            kind: "unspecified".into(),
            source: crate::ports::SOURCE_PERSON.into(),
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
        info!(request = %crate::telemetry::log_ref(&request.id), merchant = %m.merchant, opened, answer_by = %request.answer_by.date_naive(), "data-subject request opened from WhatsApp");
        Ok(())
    }
}
