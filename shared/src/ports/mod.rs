//! Narrow ports: what use cases need from the outside world. Each trait states its error contract.
//!
//! Futures are `Send` so use cases can run on any tokio runtime (the Lambda runtime, the local stack's
//! multi-task server, tests).

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::payment::PaymentFacts;
use crate::domain::retention::Stamp;
use crate::domain::stripe::event::CardSummary;

/// A failure of an outside system. `retryable` says whether the same call may succeed later
/// (throttling, timeouts, 5xx) or never will (validation, access denied, missing resource).
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} failed")]
pub struct InfraError {
    pub service: &'static str,
    pub operation: &'static str,
    pub retryable: bool,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl InfraError {
    /// A retention deadline beyond the date range (only for absurd anchors): never retryable.
    pub fn deadline_out_of_range() -> Self {
        Self {
            service: "domain",
            operation: "retention::stamp",
            retryable: false,
            source: Some("deadline out of range".into()),
        }
    }
}

/// The time. Injected everywhere a deadline, tolerance or window is computed.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The clock a function is built with: the wall clock in Lambda, any clock in tests.
pub type SharedClock = std::sync::Arc<dyn Clock>;

impl<T: Clock + ?Sized> Clock for std::sync::Arc<T> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No live record existed: the caller now holds the in-progress lock and must `complete` or `release`.
    Acquired,
    /// The work was done before; its stored result, if any.
    Completed(Option<String>),
    /// Another invocation holds a live in-progress lock: try again later.
    InProgress,
}

/// Outcome of [`Inbox::hand_off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    Duplicate,
}

/// The one idempotency store used by every ingress and consumer, keyed by `source#id`.
///
/// Records carry their own expiry and every condition checks it, so an expired record that DynamoDB TTL
/// has not removed yet counts as absent; TTL only collects the garbage.
pub trait IdempotencyStore: Send + Sync {
    /// Takes the in-progress lock on `key` until `lock_until` (bounded by the invocation's remaining time,
    /// so a crashed run's lock lapses and a retry can take over).
    /// MUST return `Completed` when a live completed record exists and `InProgress` when a live lock does.
    fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lock_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, InfraError>> + Send;

    /// Marks a claimed key completed, with an optional result for later duplicates.
    fn complete(&self, key: &str, result: Option<&str>) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Removes an in-progress lock so that a retry can run after a failed claim's work. MUST NOT remove
    /// a completed record.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// Whom a stored body is held for (the merchant, when known) and about (the subject hash, when any).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner<'a> {
    pub merchant: Option<&'a str>,
    pub subject: Option<&'a str>,
}

/// The ingresses' hand-off: the one write that makes a delivery safe to acknowledge.
///
/// The rule it serves: an ingress answers 2xx only for what it has durably handed on, and
/// de-duplication never turns an interrupted hand-off into a permanent "duplicate". So recording that a
/// delivery was seen and handing it on are the same conditional write: the record holds the message body,
/// and the table's change stream delivers a reference to it (`{"inbox": key}`) to the consumer's queue
/// (routed by the key's source prefix, see `template.yaml`'s pipes), even if the ingress is cut off the
/// next instant. One AWS request per new delivery, one per duplicate.
pub trait Inbox: Send + Sync {
    /// Writes `body` under `key` (`source#id`) unless a live record exists; the record (not the body)
    /// lives until `expires_at`, longer than the platform's retries. `owner` names whom the body is held
    /// for and about (merchant, subject hash), recorded on the item like on every item with personal data.
    /// MUST return `Duplicate`, writing nothing, when a live record exists; `New` only once the body is
    /// durable. Errors: `InfraError`; nothing is written then, and the platform's retry starts over.
    fn hand_off(
        &self,
        key: &str,
        body: &str,
        owner: &Owner<'_>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Recorded, InfraError>> + Send;

    /// The body waiting under `key`; `None` once its consumer is done with it (or the record is past
    /// its deadline), so a redelivered reference is a no-op.
    fn load(&self, key: &str, now: DateTime<Utc>) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;

    /// Drops the body after its consumer applied it: the body may hold personal data, the record is
    /// only an id kept for de-duplication. Idempotent.
    fn done(&self, key: &str) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// One order's payment record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub payment_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_ref: Option<String>,
    /// Derived from `facts`; stored for queries and people.
    pub status: String,
    pub facts: PaymentFacts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardSummary>,
    /// The newest Stripe API version among the applied events (versions are date-prefixed, so the
    /// greatest string is the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Keyed hash of the customer's email: the data-subject index key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The merchant the record is held for; `None` (unknown) is never served to a merchant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    /// Latest Stripe event `created` applied (epoch seconds): the retention anchor.
    pub last_event_at: i64,
    pub updated_at: DateTime<Utc>,
    #[serde(flatten)]
    pub retention: Stamp,
    /// Optimistic-concurrency version, incremented by every write.
    pub version: u64,
}

/// A read of a record: `value` is `None` when absent or past its deadline; `version` is the stored
/// version even then, so the next write can replace an expired item that TTL has not removed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded<T> {
    pub value: Option<T>,
    pub version: Option<u64>,
}

/// Outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Ok,
    /// Someone else wrote first: re-read and try again.
    Conflict,
}

/// Payment records of orders.
pub trait PaymentStore: Send + Sync {
    /// Reads with strong consistency. MUST treat an item past its deadline as absent (`value: None`).
    fn get(
        &self,
        payment_key: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Loaded<PaymentRecord>, InfraError>> + Send;

    /// Writes `record` if the stored version is still `expected` (`None`: no item at all).
    /// MUST return `Conflict`, not an error, when the condition fails.
    fn put(
        &self,
        record: &PaymentRecord,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Written, InfraError>> + Send;
}

/// A queue of messages for another function.
pub trait Queue: Send + Sync {
    /// Sends one message body. On `Ok` the message is durably queued.
    fn send(&self, body: &str) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// Counters and gauges, emitted as CloudWatch embedded metrics in production.
pub trait Metrics: Send + Sync {
    fn count(&self, name: &'static str, value: u64, dimension: Option<(&'static str, &str)>);
}

/// Which merchant a WhatsApp business phone number belongs to.
pub trait MerchantDirectory: Send + Sync {
    /// `None` for a phone number id no merchant has registered.
    fn merchant_for_phone_number(
        &self,
        phone_number_id: &str,
    ) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;

    /// The merchant owning a WhatsApp Business Account (template events name the account, not a number).
    fn merchant_for_account(&self, waba_id: &str) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;
}

/// Templates' current categories, as Meta last classified them.
pub trait TemplateCatalog: Send + Sync {
    fn set_category(
        &self,
        merchant: &str,
        template: &str,
        category: crate::domain::whatsapp::consent::Category,
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
        &self,
        refs: &[crate::usecases::consent_audit::LedgerRef],
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
        &self,
        merchant: &str,
        subject: &str,
        message: &TranscriptMessage,
        inbound: bool,
    ) -> impl Future<Output = Result<DateTime<Utc>, InfraError>> + Send;

    /// The conversation's messages in time order; empty once the conversation is past its deadline.
    fn read(
        &self,
        merchant: &str,
        subject: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<TranscriptMessage>, InfraError>> + Send;
}

/// Delivery receipts of outbound messages.
pub trait Receipts: Send + Sync {
    /// Applies a receipt monotonically (see `domain::whatsapp::delivery`). Idempotent. The receipt
    /// records `merchant`, the business the message was sent for.
    fn apply(
        &self,
        merchant: &str,
        wamid: &str,
        subject: Option<&str>,
        status: crate::domain::whatsapp::delivery::Delivery,
        error_code: Option<i64>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    fn get(
        &self,
        wamid: &str,
        now: DateTime<Utc>,
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
    /// Network failure or a 5xx: retry later.
    #[error("transient failure")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The WhatsApp Cloud API's send endpoints.
pub trait CloudMessaging: Send + Sync {
    /// Sends `message` (a Cloud API message object) from `phone_number_id`; marketing templates go
    /// through `/marketing_messages`, everything else through `/messages`. Returns the new wamid.
    fn send(
        &self,
        phone_number_id: &str,
        message: &serde_json::Value,
        marketing: bool,
    ) -> impl Future<Output = Result<String, SendError>> + Send;
}

/// What the send-time decision reads, and where refusals are recorded.
pub trait SendContext: Send + Sync {
    /// The consent ledger's current view for this person and merchant.
    fn consent(
        &self,
        subject: &str,
        merchant: &str,
    ) -> impl Future<Output = Result<crate::domain::whatsapp::consent::Consent, InfraError>> + Send;

    /// When the person last wrote to this merchant (opens the 24-hour window), if within the transcript window.
    fn last_inbound(
        &self,
        merchant: &str,
        subject: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, InfraError>> + Send;

    /// A template's category as Meta classifies it now; `None` for a template nobody registered.
    fn template_category(
        &self,
        merchant: &str,
        template: &str,
    ) -> impl Future<Output = Result<Option<crate::domain::whatsapp::consent::Category>, InfraError>> + Send;

    /// The merchant's registered WhatsApp business number (phone number id), if any.
    fn merchant_number(&self, merchant: &str) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;

    /// Records why a message was not sent (kept with the transcript, same window).
    fn record_refusal(
        &self,
        merchant: &str,
        subject: &str,
        request_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// A data-subject request as opened (by the WhatsApp `DATA` keyword, an operator or a merchant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRequest {
    /// Stable for the intake that opened it (e.g. derived from the wamid), so reopening is idempotent.
    pub id: String,
    pub subjects: Vec<String>,
    /// `access`, `export`, `deletion`, `correction`, or `unspecified` until the person says which.
    pub kind: String,
    pub source: String,
    pub merchant: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The answer is due by then (30 days).
    pub answer_by: DateTime<Utc>,
    /// Where the person's own request (`DATA`) is answered. Travels in the queue message only (the
    /// number is personal data): never stored with the request record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
}

/// The WhatsApp conversation a person's own request came from, where its answer goes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub merchant: String,
    pub phone_number_id: String,
    /// E.164.
    pub to: String,
}

/// Says where, never the number.
impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo")
            .field("merchant", &self.merchant)
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

/// A data-subject request with what has happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request: DataRequest,
    /// `received`, `running`, `completed`, or `needs_operator` (a kind that is not automated).
    pub status: String,
    /// The outcome as JSON (counts per kind and action, with reasons); no personal data.
    pub result: Option<String>,
    /// Where the export is, for access and export requests.
    pub export_key: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When the answer was handed to the person's channel (their own `DATA` request).
    pub answered_at: Option<DateTime<Utc>>,
}

/// Data-subject requests.
pub trait DataRequests: Send + Sync {
    /// Opens `request` unless a request with its id exists. Returns true if this call opened it, false
    /// ONLY when the id exists; any other failure (throttling included) is an error.
    fn open(&self, request: &DataRequest) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// The request `id`, if it exists.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<RequestRecord>, InfraError>> + Send;

    /// Records a new status (and outcome). A final status (`completed`, `closed`) also closes the request,
    /// so it no longer counts towards the deadline alarm; `needs_operator` stays open (listed, alarmed)
    /// until an operator closes it.
    fn update(
        &self,
        id: &str,
        status: &str,
        result: Option<&str>,
        export_key: Option<&str>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Records that the answer was handed to the person's channel at `at`.
    fn note_answered(&self, id: &str, at: DateTime<Utc>) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Open requests (id, answer-by), oldest deadline first.
    fn open_requests(&self) -> impl Future<Output = Result<Vec<(String, DateTime<Utc>)>, InfraError>> + Send;
}

/// Whose data a data-subject request covers. The rule: a merchant's request (its API key) sees and
/// changes only items held for that merchant (their `merchant` attribute names it; an item whose merchant
/// is unknown is never served to a merchant); the person's own request (`DATA` from their verified number)
/// covers what is held about them for every merchant; an operator's covers the whole platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Merchant(&'a str),
    Person,
    Platform,
}

impl Scope<'_> {
    /// Whether an item with these attributes is within the scope.
    pub fn covers(&self, attributes: &Attrs) -> bool {
        match self {
            Scope::Merchant(m) => !m.is_empty() && attributes.get("merchant").and_then(|v| v.as_str()) == Some(*m),
            Scope::Person | Scope::Platform => true,
        }
    }
}

impl DataRequest {
    /// The scope follows from who opened the request. Fails closed: any intake other than the person's
    /// own and an operator's is a merchant's, and one naming no merchant covers nothing.
    pub fn scope(&self) -> Scope<'_> {
        match self.source.as_str() {
            SOURCE_PERSON => Scope::Person,
            SOURCE_OPERATOR => Scope::Platform,
            _ => Scope::Merchant(self.merchant.as_deref().unwrap_or("")),
        }
    }
}

/// The intakes of data-subject requests, as stored in [`DataRequest::source`].
pub const SOURCE_PERSON: &str = "whatsapp_keyword";
pub const SOURCE_OPERATOR: &str = "operator";
pub const SOURCE_MERCHANT_API: &str = "merchant_api";

impl crate::domain::envelope::Message for DataRequest {
    const KIND: &'static str = "dsr.requested";
    const VERSION: u32 = 1;
}

/// Merchants' API keys for the suite's merchant-facing routes. Only a key's SHA-256 is stored.
pub trait MerchantKeys: Send + Sync {
    /// The merchant owning the key whose SHA-256 (hex) is `key_sha256`, if any.
    fn merchant_for_key(&self, key_sha256: &str) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;
}

/// Private objects (data exports, backups) with short-lived links.
pub trait ObjectStore: Send + Sync {
    /// Stores `body` at `key`, encrypted at rest, never public.
    fn put_private(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// A link that reads `key` for `valid_for`, then stops working.
    fn presigned_get(
        &self,
        key: &str,
        valid_for: std::time::Duration,
    ) -> impl Future<Output = Result<String, InfraError>> + Send;

    /// Removes `key` (absent is not an error).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Keys under `prefix` with their last-modified times.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, DateTime<Utc>)>, InfraError>> + Send;
}

pub use crate::domain::inventory::Store;

/// An item's attributes as JSON (strings, numbers, sets and lists as arrays, maps as objects).
pub type Attrs = serde_json::Map<String, serde_json::Value>;

/// An item's key: partition key and, for tables with one, sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemKey {
    pub pk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sk: Option<String>,
}

/// An item found on the due-date index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEntry {
    pub key: ItemKey,
    pub expires_at: i64,
    /// `delete` or `anonymise`, as stamped.
    pub action: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DuePage {
    pub items: Vec<DueEntry>,
    /// Opaque: where the next page starts.
    pub next: Option<String>,
}

/// The suite's tables as the retention sweep and data-subject requests see them.
pub trait DataStore: Send + Sync {
    /// The tables this deployment has, in sweep order.
    fn stores(&self) -> Vec<Store>;

    /// One page of the items of due-index partition `bucket` with a deadline at or before `now`.
    fn due(
        &self,
        store: Store,
        bucket: &str,
        now: i64,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<DuePage, InfraError>> + Send;

    /// Deletes `keys` (absent keys are fine): batched, retrying what the service leaves unprocessed.
    fn delete(&self, store: Store, keys: &[ItemKey]) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Deletes the item only if its deadline is at or before `now`; returns it if it did.
    fn delete_if_due(
        &self,
        store: Store,
        key: &ItemKey,
        now: i64,
    ) -> impl Future<Output = Result<Option<Attrs>, InfraError>> + Send;

    /// Removes `fields` from the item. With `due_at`, only if its deadline is at or before it, and the
    /// deadline goes too (nothing personal is left to delete). Returns whether the item was changed.
    fn remove_fields(
        &self,
        store: Store,
        key: &ItemKey,
        fields: &[&str],
        due_at: Option<i64>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Every item of partition `pk` whose sort key starts with `sk_prefix`.
    fn partition(
        &self,
        store: Store,
        pk: &str,
        sk_prefix: &str,
    ) -> impl Future<Output = Result<Vec<(ItemKey, Attrs)>, InfraError>> + Send;

    /// Every item of `store` about `subject` (a keyed subject hash), whole.
    fn about(
        &self,
        store: Store,
        subject: &str,
    ) -> impl Future<Output = Result<Vec<(ItemKey, Attrs)>, InfraError>> + Send;
}

/// Named progress markers (the sweep's resume point).
pub trait Checkpoints: Send + Sync {
    fn load(&self, name: &str) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;
    fn save(&self, name: &str, value: &str) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// The append-only, hash-chained audit log.
pub trait AuditLog: Send + Sync {
    /// Appends `entry` as the next link of the chain. `None` if an entry with the same key was appended
    /// before (nothing is written).
    fn append(
        &self,
        entry: crate::domain::audit::NewEntry,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<crate::domain::audit::Entry>, InfraError>> + Send;

    /// Appends `entries` in order, as few chain steps as it can (many entries per transaction), leaving
    /// out keyed entries appended before. Returns what it appended. Idempotent per key.
    fn append_many(
        &self,
        entries: Vec<crate::domain::audit::NewEntry>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<crate::domain::audit::Entry>, InfraError>> + Send;

    /// Up to `limit` entries after `after_seq`, in order.
    fn entries(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::domain::audit::Entry>, InfraError>> + Send;

    /// The newest entry's number and hash, as the log records them.
    fn head(&self) -> impl Future<Output = Result<Option<(u64, String)>, InfraError>> + Send;
}
