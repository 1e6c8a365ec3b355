//! What the messaging side needs: merchants' numbers and keys, the consent ledger, transcripts and
//! receipts, the Cloud API, and what a send-time decision reads.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::InfraError;

/// Which merchant a WhatsApp business phone number belongs to.
pub trait MerchantDirectory: Send + Sync {
    /// `None` for a phone number id no merchant has registered.
    fn merchant_for_phone_number(
        &self, phone_number_id: &str,
    ) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;

    /// The merchant owning a WhatsApp Business Account (template events name the account, not a number).
    fn merchant_for_account(&self, waba_id: &str) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;
}

/// Templates' current categories, as Meta last classified them.
pub trait TemplateCatalog: Send + Sync {
    fn set_category(
        &self, merchant: &str, template: &str, category: crate::domain::whatsapp::consent::Category,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// What a consent-ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAction {
    /// Marketing opt-in for one merchant.
    OptIn,
    /// Opt-out of marketing for every merchant (STOP / UNSUBSCRIBE / BAND).
    OptOut,
    /// Meta's "Stop promotions" for the business phone number.
    MetaStop,
    /// Meta's "Resume promotions".
    MetaResume,
}

/// One append-only ledger entry: who (subject hash), which merchant (`None`: every merchant), what,
/// from where, when. `id` makes recording it idempotent (the wamid of the message that carried it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEntry {
    pub id: String,
    pub subject: String,
    pub merchant: Option<String>,
    pub action: ConsentAction,
    pub source: String,
    pub at: DateTime<Utc>,
}

/// The consent ledger.
pub trait ConsentLedger: Send + Sync {
    /// Appends `entry` and updates the subject's consent state in one atomic step, so that an opt-out
    /// is in force when this returns. MUST be idempotent per `(subject, id)`: recording the same entry
    /// again changes nothing and is not an error.
    fn record(&self, entry: &ConsentEntry) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// Reads ledger entries back by key, for the audit appender.
pub trait LedgerReader: Send + Sync {
    /// The entries behind `refs` that still exist (de-duplicated).
    fn read(
        &self, refs: &[crate::usecases::consent_audit::LedgerRef],
    ) -> impl Future<Output = Result<Vec<ConsentEntry>, InfraError>> + Send;
}

/// One message of a conversation's transcript, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptMessage {
    pub wamid: String,
    /// `in` (from the person) or `out` (to the person).
    pub direction: String,
    pub kind: String,
    pub text: Option<String>,
    pub at: DateTime<Utc>,
}

/// Transcripts of conversations (merchant x person), kept 90 days after the conversation's LAST
/// interaction.
pub trait Transcripts: Send + Sync {
    /// Adds `message` to the conversation (idempotent per wamid) and moves the conversation's deadline to
    /// 90 days after its latest interaction. MUST NOT shorten a deadline (a late, older message keeps
    /// the later deadline), and no message may carry a TTL earlier than its conversation's deadline.
    /// Returns the conversation's deadline after the write.
    fn append(
        &self, merchant: &str, subject: &str, message: &TranscriptMessage, inbound: bool,
    ) -> impl Future<Output = Result<DateTime<Utc>, InfraError>> + Send;

    /// The conversation's messages in time order; empty once the conversation is past its deadline.
    fn read(
        &self, merchant: &str, subject: &str, now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<TranscriptMessage>, InfraError>> + Send;
}

/// Delivery receipts of outbound messages.
pub trait Receipts: Send + Sync {
    /// Applies a receipt monotonically (see `domain::whatsapp::delivery`). Idempotent. The receipt
    /// records `merchant`, the business the message was sent for.
    fn apply(
        &self, merchant: &str, wamid: &str, subject: Option<&str>, status: crate::domain::whatsapp::delivery::Delivery,
        error_code: Option<i64>, at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    fn get(
        &self, wamid: &str, now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<crate::domain::whatsapp::delivery::DeliveryState>, InfraError>> + Send;
}

/// Why the WhatsApp Cloud API did not send, by what the caller must do about it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// 131047: the 24-hour window is closed; a template is needed. Permanent for this message.
    #[error("customer service window closed (131047)")]
    WindowClosed,
    /// 131050: the person stopped marketing messages from this number. Permanent.
    #[error("person stopped marketing messages (131050)")]
    MarketingStopped,
    /// Throughput or rate limit: retry later with backoff.
    #[error("rate limited (code {code})")]
    RateLimited { code: i64 },
    /// The token is invalid or lacks permission: nothing will work until an operator acts.
    #[error("authentication failed (code {code})")]
    Auth { code: i64 },
    /// Any other refusal of this message: record it, do not retry.
    #[error("rejected (code {code})")]
    Permanent { code: i64 },
    /// Meta answered with a 5xx, or could not be reached at all: not sent, retry later.
    #[error("transient failure")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request went out and no usable answer came back (a timeout, a cut connection, a 2xx without
    /// a message id): Meta may have the message, so it is not sent again.
    #[error("no usable answer; the message may have been sent")]
    Unanswered(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The WhatsApp Cloud API's send endpoints.
pub trait CloudMessaging: Send + Sync {
    /// Sends `message` (a Cloud API message object) from `phone_number_id`; marketing templates go
    /// through `/marketing_messages`, everything else through `/messages`. Returns the new wamid.
    fn send(
        &self, phone_number_id: &str, message: &serde_json::Value, marketing: bool,
    ) -> impl Future<Output = Result<String, SendError>> + Send;
}

/// What the send-time decision reads, and where refusals are recorded.
pub trait SendContext: Send + Sync {
    /// The consent ledger's current view for this person and merchant.
    fn consent(
        &self, subject: &str, merchant: &str,
    ) -> impl Future<Output = Result<crate::domain::whatsapp::consent::Consent, InfraError>> + Send;

    /// When the person last wrote to this merchant (opens the 24-hour window), if within the transcript window.
    fn last_inbound(
        &self, merchant: &str, subject: &str, now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, InfraError>> + Send;

    /// A template's category as Meta classifies it now; `None` for a template nobody registered.
    fn template_category(
        &self, merchant: &str, template: &str,
    ) -> impl Future<Output = Result<Option<crate::domain::whatsapp::consent::Category>, InfraError>> + Send;

    /// The merchant's registered WhatsApp business number (phone number id), if any.
    fn merchant_number(&self, merchant: &str) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;

    /// Records why a message was not sent (kept with the transcript, same window).
    fn record_refusal(
        &self, merchant: &str, subject: &str, request_id: &str, reason: &str, at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// Merchants' API keys for the suite's merchant-facing routes. Only a key's SHA-256 is stored.
pub trait MerchantKeys: Send + Sync {
    /// The merchant owning the key whose SHA-256 (hex) is `key_sha256`, if any.
    fn merchant_for_key(&self, key_sha256: &str) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;
}
