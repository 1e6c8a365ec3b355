//! What the privacy side needs: data-subject requests, every store as the sweep and requests see it,
//! checkpoints and the audit log.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::InfraError;
pub use crate::domain::messages::{DataRequest, ReplyTo};

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
        &self, id: &str, status: &str, result: Option<&str>, export_key: Option<&str>, at: DateTime<Utc>,
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
            SOURCE_PERSON | SOURCE_MARKETPLACE_DELETION => Scope::Person,
            SOURCE_OPERATOR => Scope::Platform,
            _ => Scope::Merchant(self.merchant.as_deref().unwrap_or("")),
        }
    }
}

/// The intakes of data-subject requests, as stored in [`DataRequest::source`].
pub const SOURCE_PERSON: &str = "whatsapp_keyword";
pub const SOURCE_OPERATOR: &str = "operator";
pub const SOURCE_MERCHANT_API: &str = "merchant_api";
/// A marketplace's signed notice that the person's account there was deleted (eBay's Marketplace Account
/// Deletion): it stands for the person, so it covers what is held about them for every merchant.
pub const SOURCE_MARKETPLACE_DELETION: &str = "marketplace_account_deletion";

pub use crate::domain::data_inventory::Store;

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
        &self, store: Store, bucket: &str, now: i64, cursor: Option<&str>,
    ) -> impl Future<Output = Result<DuePage, InfraError>> + Send;

    /// Deletes `keys` (absent keys are fine): batched, retrying what the service leaves unprocessed.
    fn delete(&self, store: Store, keys: &[ItemKey]) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Deletes the item only if its deadline is at or before `now`; returns it if it did.
    fn delete_if_due(
        &self, store: Store, key: &ItemKey, now: i64,
    ) -> impl Future<Output = Result<Option<Attrs>, InfraError>> + Send;

    /// Removes `fields` from the item. With `due_at`, only if its deadline is at or before it, and the
    /// deadline goes too (nothing personal is left to delete). Returns whether the item was changed.
    fn remove_fields(
        &self, store: Store, key: &ItemKey, fields: &[&str], due_at: Option<i64>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Every item of partition `pk` whose sort key starts with `sk_prefix`.
    fn partition(
        &self, store: Store, pk: &str, sk_prefix: &str,
    ) -> impl Future<Output = Result<Vec<(ItemKey, Attrs)>, InfraError>> + Send;

    /// Every item of `store` about `subject` (a keyed subject hash), whole.
    fn about(
        &self, store: Store, subject: &str,
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
        &self, entry: crate::domain::audit::NewEntry, at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<crate::domain::audit::Entry>, InfraError>> + Send;

    /// Appends `entries` in order, as few chain steps as it can (many entries per transaction), leaving
    /// out keyed entries appended before. Returns what it appended. Idempotent per key.
    fn append_many(
        &self, entries: Vec<crate::domain::audit::NewEntry>, at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<crate::domain::audit::Entry>, InfraError>> + Send;

    /// Up to `limit` entries after `after_seq`, in order.
    fn entries(
        &self, after_seq: u64, limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::domain::audit::Entry>, InfraError>> + Send;

    /// The newest entry's number and hash, as the log records them.
    fn head(&self) -> impl Future<Output = Result<Option<(u64, String)>, InfraError>> + Send;
}
