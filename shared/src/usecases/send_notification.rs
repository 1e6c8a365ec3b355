//! Send one order notification or merchant message through the WhatsApp Cloud API, if the rules allow.
//!
//! At send time (never earlier) the template's *current* category and the ledger's *current* state are
//! read and `domain::whatsapp::consent::decide` rules. Every refusal, ours or Meta's, is recorded with its
//! reason next to the transcript. A request is claimed before anything is sent and completed with the
//! returned wamid, so a redelivered SQS message never sends twice; only retryable failures (rate limits,
//! transient errors, a broken token) release the claim for the redelivery. A second mark, taken just
//! before the Cloud API call and never lapsing, keeps an attempt cut off during that call (or unable to
//! record its answer) from being sent again by the redelivery: at most once, where Meta offers no
//! idempotency key.

use chrono::{DateTime, Duration, Utc};
use tracing::{error, info, warn};

pub use crate::domain::messages::{Content, SendRequest};
use crate::domain::retention::{self, DataClass};
use crate::domain::subject::{IdentifierKind, SubjectHasher};
use crate::domain::whatsapp::consent::{self, Category, Context, Outbound};
use crate::ports::{
    Claim, Clock, CloudMessaging, IdempotencyStore, InfraError, Metrics, SendContext, SendError, TranscriptMessage,
    Transcripts,
};

pub const SOURCE: &str = "notifications-sender";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        wamid: String,
    },
    Refused {
        reason: String,
    },
    /// Handled before; its recorded result (`wamid` or `refused:<reason>`).
    AlreadyDone(Option<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("request has no usable recipient")]
    NoRecipient,
    #[error("request is being handled by another invocation")]
    InProgress,
    /// Rate limited or transient: the redelivery retries (the queue's visibility timeout is the backoff).
    #[error("retry later: {0}")]
    RetryLater(SendError),
    /// The access token is broken: fails loudly (metric, alarm) until an operator fixes it.
    #[error("WhatsApp authentication failed (code {0})")]
    Auth(i64),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl crate::adapters::sqs_batch::RecordError for NotifyError {
    /// A stable name for logs, metrics and the runtime's `errorType`.
    fn error_type(&self) -> &'static str {
        match self {
            Self::NoRecipient => "NoRecipient",
            Self::InProgress => "InProgress",
            Self::RetryLater(_) => "RetryLater",
            Self::Auth(_) => "WhatsAppAuth",
            Self::Infra(_) => "Infrastructure",
        }
    }
}

pub struct SendNotification<'a, C, I, X, T, A, M> {
    pub hasher: &'a SubjectHasher,
    pub clock: &'a C,
    pub idempotency: &'a I,
    pub context: &'a X,
    pub transcripts: &'a T,
    pub cloud: &'a A,
    pub metrics: &'a M,
}

impl<C, I, X, T, A, M> SendNotification<'_, C, I, X, T, A, M>
where
    C: Clock,
    I: IdempotencyStore,
    X: SendContext,
    T: Transcripts,
    A: CloudMessaging,
    M: Metrics,
{
    pub async fn handle(&self, req: &SendRequest, lock_until: DateTime<Utc>) -> Result<Outcome, NotifyError> {
        let subject = self.hasher.hash(IdentifierKind::Phone, &req.to).ok_or(NotifyError::NoRecipient)?;
        let now = self.clock.now();
        let key = format!("{SOURCE}#{}", req.id);
        let expires = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(19));
        match self.idempotency.claim(&key, now, lock_until, expires).await? {
            Claim::Completed(result) => return Ok(Outcome::AlreadyDone(result)),
            Claim::InProgress => return Err(NotifyError::InProgress),
            Claim::Acquired => {}
        }
        let result = self.decide_and_send(req, &subject, &key, now).await;
        if matches!(result, Err(NotifyError::RetryLater(_) | NotifyError::Auth(_) | NotifyError::Infra(_))) {
            if let Err(e) = self.idempotency.release(&key).await {
                warn!(error = %e, "could not release the send claim; it lapses with its lock");
            }
        }
        result
    }

    async fn decide_and_send(
        &self, req: &SendRequest, subject: &str, key: &str, now: DateTime<Utc>,
    ) -> Result<Outcome, NotifyError> {
        let (outbound, marketing) = match &req.content {
            Content::Template { name, .. } => match self.context.template_category(&req.merchant, name).await? {
                Some(category) => (Outbound::Template { category }, category == Category::Marketing),
                None => return self.refuse(req, subject, key, "unknown_template", now).await,
            },
            Content::Text { .. } => (Outbound::FreeForm, false),
        };
        let consent = self.context.consent(subject, &req.merchant).await?;
        let last_inbound_at = self.context.last_inbound(&req.merchant, subject, now).await?;
        let ctx = Context { own_order: req.own_order, order_open: req.order_open, last_inbound_at };
        if let Err(refusal) = consent::decide(outbound, consent, ctx, now) {
            let reason = serde_json::to_value(refusal).ok().and_then(|v| v.as_str().map(str::to_owned));
            return self.refuse(req, subject, key, reason.as_deref().unwrap_or("refused"), now).await;
        }
        let phone_number_id = match &req.phone_number_id {
            Some(id) => id.clone(),
            None => match self.context.merchant_number(&req.merchant).await? {
                Some(id) => id,
                None => return self.refuse(req, subject, key, "merchant_has_no_whatsapp_number", now).await,
            },
        };
        // Meta takes no idempotency key: once a request may have reached it, no later attempt may send it
        // again. This mark is taken right before the call and does not lapse; an attempt that finds it
        // taken (an earlier one was cut off during the call, or could not record Meta's answer) sends
        // nothing and says so. Only Meta's own refusals to take the message give it back.
        let mark = format!("{key}#meta");
        let keep = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(19));
        if !matches!(self.idempotency.claim(&mark, now, keep, keep).await?, Claim::Acquired) {
            self.metrics.count("whatsapp_send_unconfirmed", 1, None);
            warn!(request_id = %req.id, "an earlier attempt may have reached Meta unrecorded; not sent again");
            return self.refuse(req, subject, key, "unconfirmed_earlier_attempt", now).await;
        }
        let sent = self.cloud.send(&phone_number_id, &cloud_message(req), marketing).await;
        if matches!(sent, Err(SendError::Auth { .. } | SendError::RateLimited { .. } | SendError::Transient(_))) {
            if let Err(e) = self.idempotency.release(&mark).await {
                warn!(error = %e, "could not give back the send mark; the redelivery will not send");
            }
        }
        match sent {
            Ok(wamid) => {
                // Completed first: once Meta has the message, a redelivery must never send it again.
                self.idempotency.complete(key, Some(&wamid)).await?;
                let (kind, text) = match &req.content {
                    Content::Template { name, .. } => ("template", Some(format!("template:{name}"))),
                    Content::Text { .. } if req.private => ("private_text", None),
                    Content::Text { body } => ("text", Some(body.clone())),
                };
                let message = TranscriptMessage {
                    wamid: wamid.clone(),
                    direction: "out".into(),
                    kind: kind.into(),
                    text,
                    at: now,
                };
                self.transcripts.append(&req.merchant, subject, &message, false).await?;
                self.metrics.count("whatsapp_sent", 1, None);
                info!(request_id = %req.id, wamid = %wamid, merchant = %req.merchant, marketing, "whatsapp message sent");
                Ok(Outcome::Sent { wamid })
            }
            Err(SendError::WindowClosed) => self.refuse(req, subject, key, "window_closed_131047", now).await,
            Err(SendError::MarketingStopped) => self.refuse(req, subject, key, "marketing_stopped_131050", now).await,
            Err(SendError::Permanent { code }) => {
                self.refuse(req, subject, key, &format!("rejected_{code}"), now).await
            }
            Err(SendError::Auth { code }) => {
                self.metrics.count("whatsapp_auth_failed", 1, None);
                error!(code, request_id = %req.id, "WhatsApp Cloud API refused our token; every send fails until it is fixed");
                Err(NotifyError::Auth(code))
            }
            Err(SendError::Unanswered(e)) => {
                // The mark stays: the redelivery finds it and sends nothing (at most once).
                self.metrics.count("whatsapp_send_unconfirmed", 1, None);
                warn!(request_id = %req.id, error = %e, "Meta may have the message; it is not sent again");
                self.refuse(req, subject, key, "unconfirmed_no_answer", now).await
            }
            Err(e @ (SendError::RateLimited { .. } | SendError::Transient(_))) => {
                self.metrics.count("whatsapp_send_retried", 1, None);
                warn!(request_id = %req.id, error = %e, "send deferred; the redelivery retries it");
                Err(NotifyError::RetryLater(e))
            }
        }
    }

    async fn refuse(
        &self, req: &SendRequest, subject: &str, key: &str, reason: &str, now: DateTime<Utc>,
    ) -> Result<Outcome, NotifyError> {
        self.context.record_refusal(&req.merchant, subject, &req.id, reason, now).await?;
        self.idempotency.complete(key, Some(&format!("refused:{reason}"))).await?;
        self.metrics.count("whatsapp_send_refused", 1, Some(("Reason", reason)));
        info!(request_id = %req.id, merchant = %req.merchant, reason, "whatsapp message not sent");
        Ok(Outcome::Refused { reason: reason.to_owned() })
    }
}

/// The Cloud API message object for a request.
pub fn cloud_message(req: &SendRequest) -> serde_json::Value {
    let mut m = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": req.to,
    });
    match &req.content {
        Content::Template { name, language, components } => {
            m["type"] = "template".into();
            m["template"] = serde_json::json!({ "name": name, "language": { "code": language } });
            if !components.is_null() {
                m["template"]["components"] = components.clone();
            }
        }
        Content::Text { body } => {
            m["type"] = "text".into();
            m["text"] = serde_json::json!({ "body": body });
        }
    }
    m
}
