//! Send one order notification or merchant message through the WhatsApp Cloud API, if the rules allow.
//!
//! At send time (never earlier) the template's *current* category and the ledger's *current* state are
//! read and `domain::whatsapp::consent::decide` rules. Every refusal, ours or Meta's, is recorded with its
//! reason next to the transcript. A request is claimed before anything is sent and completed with the
//! returned wamid, so a redelivered SQS message never sends twice; only retryable failures (rate limits,
//! transient errors, a broken token) release the claim for the redelivery.
//!
//! Meta takes no idempotency key, so a second mark is taken just before the Cloud API call, and the call
//! carries the request's id as `biz_opaque_callback_data`, which Meta echoes in the message's status
//! webhooks. An attempt cut off during the call (or left without a usable answer) leaves the mark; Meta's
//! status webhook, when it comes, completes it ([`confirm_sent`]). A redelivery that finds the mark
//! completed records the message as sent without sending; one that finds it still open waits (retries
//! later) until `confirm_wait` has passed since the mark, and then sends: Meta never had the message.
//! Exactly once, as long as Meta's status webhook comes within `confirm_wait` of the call.

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
    /// An earlier attempt may have reached Meta: the redelivery waits for Meta's status webhook (or for
    /// `confirm_wait` to pass) before it may send.
    #[error("an earlier attempt may have reached Meta; waiting for its status webhook")]
    Unconfirmed,
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
            Self::Unconfirmed => "Unconfirmed",
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
    /// How long after an attempt that may have reached Meta a later one waits for Meta's word.
    pub confirm_wait: Duration,
}

/// The mark of a merchant's request's Cloud API call (see the module's doc). The merchant is part of it:
/// a status from one merchant's number confirms only that merchant's sends.
pub fn meta_mark(merchant: &str, request_id: &str) -> String {
    format!("{SOURCE}#{merchant}#{request_id}#meta")
}

/// Meta's status webhook for a message sent from `merchant`'s number, carrying its request's id back: the
/// call reached Meta. Completes the request's mark if an attempt left it open; `false` if none did (the
/// usual case: the attempt recorded Meta's answer itself). Creates nothing.
pub async fn confirm_sent<I: IdempotencyStore>(
    idempotency: &I, merchant: &str, request_id: &str, wamid: &str,
) -> Result<bool, InfraError> {
    if merchant.is_empty() || request_id.is_empty() || request_id.len() > 512 || wamid.is_empty() {
        return Ok(false);
    }
    idempotency.confirm(&meta_mark(merchant, request_id), wamid).await
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
        if matches!(
            result,
            Err(NotifyError::RetryLater(_) | NotifyError::Auth(_) | NotifyError::Infra(_) | NotifyError::Unconfirmed)
        ) {
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
        // Meta takes no idempotency key. The mark, taken right before the call, holds for `confirm_wait`:
        // an attempt that finds it completed (Meta's answer, or its status webhook, said it has the
        // message) records the message as sent; one that finds it open waits for that word; once it lapses
        // unconfirmed, Meta never had the message and it is sent. Meta's answers that it did not take the
        // message (rate limited, transient, a broken token) give the mark back at once.
        let mark = meta_mark(&req.merchant, &req.id);
        let keep = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(19));
        match self.idempotency.claim(&mark, now, now + self.confirm_wait, keep).await? {
            Claim::Acquired => {}
            Claim::Completed(wamid) => {
                self.metrics.count("whatsapp_send_confirmed_by_status", 1, None);
                info!(request = %crate::telemetry::log_ref(&req.id), "Meta's status webhook says an earlier attempt reached it; not sent again");
                return self.sent(req, subject, key, wamid.unwrap_or_default(), now).await;
            }
            Claim::InProgress => {
                self.metrics.count("whatsapp_send_unconfirmed", 1, None);
                warn!(request = %crate::telemetry::log_ref(&req.id), "an earlier attempt may have reached Meta; waiting for its status webhook");
                return Err(NotifyError::Unconfirmed);
            }
        }
        let mut message = cloud_message(req);
        if marketing {
            // Meta documents `biz_opaque_callback_data` for `/messages`, not for the marketing messages
            // endpoint: none is sent there, and an unconfirmed marketing send waits out its mark.
            if let Some(m) = message.as_object_mut() {
                m.remove("biz_opaque_callback_data");
            }
        }
        let sent = self.cloud.send(&phone_number_id, &message, marketing).await;
        if matches!(sent, Err(SendError::Auth { .. } | SendError::RateLimited { .. } | SendError::Transient(_))) {
            if let Err(e) = self.idempotency.release(&mark).await {
                warn!(error = %e, "could not give back the send mark; the redelivery will not send");
            }
        }
        match sent {
            Ok(wamid) => {
                // The mark first: if what follows fails, the redelivery finds Meta's answer here and does
                // not depend on the status webhook coming within the wait.
                if let Err(e) = self.idempotency.confirm(&mark, &wamid).await {
                    warn!(error = %e, request = %crate::telemetry::log_ref(&req.id), "could not record Meta's answer on the send mark");
                }
                self.metrics.count("whatsapp_sent", 1, None);
                info!(request = %crate::telemetry::log_ref(&req.id), wamid = %crate::telemetry::log_ref(&wamid), merchant = %req.merchant, marketing, "whatsapp message sent");
                self.sent(req, subject, key, wamid, now).await
            }
            Err(SendError::WindowClosed) => self.refuse(req, subject, key, "window_closed_131047", now).await,
            Err(SendError::MarketingStopped) => self.refuse(req, subject, key, "marketing_stopped_131050", now).await,
            Err(SendError::Permanent { code }) => {
                self.refuse(req, subject, key, &format!("rejected_{code}"), now).await
            }
            Err(SendError::Auth { code }) => {
                self.metrics.count("whatsapp_auth_failed", 1, None);
                error!(code, request = %crate::telemetry::log_ref(&req.id), "WhatsApp Cloud API refused our token; every send fails until it is fixed");
                Err(NotifyError::Auth(code))
            }
            Err(SendError::Unanswered(e)) => {
                // The mark stays: the redelivery waits for Meta's status webhook, or for the mark to lapse.
                self.metrics.count("whatsapp_send_unconfirmed", 1, None);
                warn!(request = %crate::telemetry::log_ref(&req.id), error = %e, "Meta may have the message; waiting for its status webhook");
                Err(NotifyError::Unconfirmed)
            }
            Err(e @ (SendError::RateLimited { .. } | SendError::Transient(_))) => {
                self.metrics.count("whatsapp_send_retried", 1, None);
                warn!(request = %crate::telemetry::log_ref(&req.id), error = %e, "send deferred; the redelivery retries it");
                Err(NotifyError::RetryLater(e))
            }
        }
    }

    /// Meta has the message: completed first (a redelivery must never send it again), then kept in the
    /// transcript (keyed by its wamid, so a second append is the same item).
    async fn sent(
        &self, req: &SendRequest, subject: &str, key: &str, wamid: String, now: DateTime<Utc>,
    ) -> Result<Outcome, NotifyError> {
        self.idempotency.complete(key, Some(&wamid)).await?;
        let (kind, text) = match &req.content {
            Content::Template { name, .. } => ("template", Some(format!("template:{name}"))),
            Content::Text { .. } if req.private => ("private_text", None),
            Content::Text { body } => ("text", Some(body.clone())),
        };
        let message =
            TranscriptMessage { wamid: wamid.clone(), direction: "out".into(), kind: kind.into(), text, at: now };
        self.transcripts.append(&req.merchant, subject, &message, false).await?;
        Ok(Outcome::Sent { wamid })
    }

    async fn refuse(
        &self, req: &SendRequest, subject: &str, key: &str, reason: &str, now: DateTime<Utc>,
    ) -> Result<Outcome, NotifyError> {
        self.context.record_refusal(&req.merchant, subject, &req.id, reason, now).await?;
        self.idempotency.complete(key, Some(&format!("refused:{reason}"))).await?;
        self.metrics.count("whatsapp_send_refused", 1, Some(("Reason", reason)));
        info!(request = %crate::telemetry::log_ref(&req.id), merchant = %req.merchant, reason, "whatsapp message not sent");
        Ok(Outcome::Refused { reason: reason.to_owned() })
    }
}

/// The Cloud API message object for a request.
pub fn cloud_message(req: &SendRequest) -> serde_json::Value {
    // Meta echoes `biz_opaque_callback_data` in the message's status webhooks (`confirm_sent`).
    let mut m = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": req.to,
        "biz_opaque_callback_data": req.id,
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
