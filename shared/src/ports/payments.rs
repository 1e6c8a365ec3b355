//! What the payments side needs: orders' payment records.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::InfraError;
use crate::domain::payment::PaymentFacts;
use crate::domain::retention::Stamp;
use crate::domain::stripe::event::CardSummary;

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
        &self, payment_key: &str, now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Loaded<PaymentRecord>, InfraError>> + Send;

    /// Writes `record` if the stored version is still `expected` (`None`: no item at all).
    /// MUST return `Conflict`, not an error, when the condition fails.
    fn put(
        &self, record: &PaymentRecord, expected: Option<u64>,
    ) -> impl Future<Output = Result<Written, InfraError>> + Send;
}
