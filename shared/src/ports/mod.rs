//! Narrow ports: what use cases need from the outside world. Each trait states its error contract. This
//! file holds what every capability shares (errors, the clock, idempotency and the inbox, queues, metrics,
//! objects); each capability's ports and the records they store are in its own file, re-exported here.
//!
//! Futures are `Send` so use cases can run on any tokio runtime (the Lambda runtime, the local stack's
//! multi-task server, tests).

use std::future::Future;

use chrono::{DateTime, Utc};

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
    /// The service refused the request as it is (DynamoDB's `ValidationException`: an item too large, an
    /// attribute it cannot store): the same request will never pass.
    pub fn is_validation(&self) -> bool {
        !self.retryable && self.source.as_ref().is_some_and(|s| format!("{s:?}").contains("ValidationException"))
    }

    /// The thing asked for does not exist (`ResourceNotFoundException`).
    pub fn is_not_found(&self) -> bool {
        self.source.as_ref().is_some_and(|s| format!("{s:?}").contains("ResourceNotFoundException"))
    }

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
        &self, key: &str, now: DateTime<Utc>, lock_until: DateTime<Utc>, expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, InfraError>> + Send;

    /// Marks a claimed key completed, with an optional result for later duplicates.
    fn complete(&self, key: &str, result: Option<&str>) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Removes an in-progress lock so that a retry can run after a failed claim's work. MUST NOT remove
    /// a completed record.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Completes `key` with `result` only while a claim on it is in progress: word from elsewhere that
    /// the claimed work happened (Meta's status webhook for a send). Creates nothing; `false` if no claim
    /// was in progress.
    fn confirm(&self, key: &str, result: &str) -> impl Future<Output = Result<bool, InfraError>> + Send;
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
        &self, key: &str, body: &str, owner: &Owner<'_>, now: DateTime<Utc>, expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Recorded, InfraError>> + Send;

    /// The body waiting under `key`; `None` once its consumer is done with it (or the record is past
    /// its deadline), so a redelivered reference is a no-op.
    fn load(&self, key: &str, now: DateTime<Utc>) -> impl Future<Output = Result<Option<String>, InfraError>> + Send;

    /// Drops the body after its consumer applied it: the body may hold personal data, the record is
    /// only an id kept for de-duplication. Idempotent.
    fn done(&self, key: &str) -> impl Future<Output = Result<(), InfraError>> + Send;
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

/// Private objects (data exports, backups) with short-lived links.
pub trait ObjectStore: Send + Sync {
    /// Stores `body` at `key`, encrypted at rest, never public.
    fn put_private(
        &self, key: &str, body: Vec<u8>, content_type: &str,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// A link that reads `key` for `valid_for`, then stops working.
    fn presigned_get(
        &self, key: &str, valid_for: std::time::Duration,
    ) -> impl Future<Output = Result<String, InfraError>> + Send;

    /// Removes `key` (absent is not an error).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Keys under `prefix` with their last-modified times.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, DateTime<Utc>)>, InfraError>> + Send;
}

pub use messaging::*;
pub use orders::*;
pub use payments::*;
pub use privacy::*;
pub use webhooks::*;

mod messaging;
mod orders;
mod payments;
mod privacy;
mod webhooks;
