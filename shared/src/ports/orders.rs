//! Marketplace orders: where normalised orders are kept, each with its buyer apart.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};

use super::InfraError;
use crate::domain::orders::{Buyer, Order};
use crate::domain::retention::Stamp;

/// What is stored of an order's version, enough to decide whether a fetched order is newer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub updated_at: DateTime<Utc>,
    /// When it shipped, as recorded (the platform's time, or when the poller first saw it shipped).
    pub shipped_at: Option<DateTime<Utc>>,
    /// Whether its buyer item is stored.
    pub buyer: bool,
}

/// What a new version of an order does to its buyer item.
#[derive(Debug, Clone)]
pub enum BuyerWrite<'a> {
    /// The platform gave buyer data: stored with this deadline.
    Put(&'a Buyer, Stamp),
    /// No buyer data this time, but the stored buyer's deadline moved (the order shipped).
    Restamp(Stamp),
    /// The buyer's deadline is already past: the stored buyer goes.
    Delete,
    /// Nothing to change.
    Keep,
}

/// One new version of an order, ready to store.
#[derive(Debug, Clone)]
pub struct OrderWrite<'a> {
    pub merchant: &'a str,
    pub order: &'a Order,
    /// The order's deadline (anonymisation); `None` when it is already past: the order is then stored
    /// without its link to the buyer and without a buyer.
    pub stamp: Option<Stamp>,
    /// The buyer's subject hash, recorded on the order and the buyer item so a data request finds both.
    pub subject: Option<String>,
    pub buyer: BuyerWrite<'a>,
    /// The order's event id (stable per order version), so every consumer can de-duplicate.
    pub event_id: String,
    pub event_expires_at: i64,
}

/// The orders table.
pub trait OrderStore: Send + Sync {
    /// The stored versions of `merchant`'s orders with these sort keys (`order#<marketplace>#<id>`); keys
    /// that are not stored are absent. One round trip per 100 keys.
    fn versions(
        &self, merchant: &str, sort_keys: &[String],
    ) -> impl Future<Output = Result<HashMap<String, StoredVersion>, InfraError>> + Send;

    /// Stores a new version of an order, its buyer and its event in one transaction, only if the stored
    /// version is older (or absent). `Ok(false)`: a same or newer version is stored, nothing was written.
    fn write(&self, write: &OrderWrite<'_>) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// The order and its buyer, as long as each is within its deadline at `now`: an order past its
    /// anonymisation comes without its buyer link, a buyer past its deadline not at all.
    fn get(
        &self, merchant: &str, sort_key: &str, now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(Order, Option<Buyer>)>, InfraError>> + Send;
}
