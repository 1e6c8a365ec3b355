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
    /// Whether it held buyer data that is gone now (its deadline, an erasure): never stored again.
    pub buyer_removed: bool,
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
    /// Whether this order has (or had) a buyer item: kept on the order, so a removed buyer is known.
    pub buyer_held: bool,
    /// The first version stored of this order (its event is `order.created`, later ones `order.updated`).
    pub first: bool,
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

use crate::domain::orders::connection::{Budget, Connection, Cursor};
use crate::domain::orders::Normalised;
use secrecy::SecretString;

/// The connections table: each connection's record and its poll state, leased to one job at a time.
pub trait ConnectionStore: Send + Sync {
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Connection>, InfraError>> + Send;

    /// Takes the connection's lease `lease` until `until`, if nobody holds a live one; returns the
    /// connection as stored. `None`: absent, or another job holds it.
    fn lease(
        &self, id: &str, lease: &str, now: DateTime<Utc>, until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Connection>, InfraError>> + Send;

    /// Saves the poll state (watermark, cursor, bucket, throttle, outcome, status) if `lease` is still
    /// held; with `release`, gives the lease up. `Ok(false)`: the lease was lost, nothing saved.
    fn save(
        &self, connection: &Connection, lease: &str, release: bool,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// One page of the active connections of poll shard `shard` (ids), from the sparse index.
    fn pollable(
        &self, shard: u32, cursor: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<String>, Option<String>), InfraError>> + Send;
}

/// A connection's credentials, from its own secret. Never logged: `Debug` says which are set.
#[derive(Clone, Default)]
pub struct Credentials {
    pub refresh_token: Option<SecretString>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// The cached access token, shared by every job of the connection until shortly before it expires.
    pub access_token: Option<SecretString>,
    pub access_expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("client_id", &self.client_id.is_some())
            .field("access_token", &self.access_token.is_some())
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

/// The connections' secrets.
pub trait CredentialStore: Send + Sync {
    fn load(&self, secret_id: &str) -> impl Future<Output = Result<Credentials, InfraError>> + Send;
    /// Keeps a new access token with the rest of the credentials.
    fn save(&self, secret_id: &str, credentials: &Credentials) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// An access token and when it expires.
#[derive(Clone)]
pub struct AccessToken {
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// How a platform call failed, by class: never a platform's text (it may quote the request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// 429, with `Retry-After` in seconds when the platform said it.
    #[error("rate limited")]
    RateLimited { retry_after: Option<u64> },
    /// The credentials or the token were refused (401, `invalid_grant`, `invalid_client`).
    #[error("unauthorized")]
    Unauthorized,
    /// May pass: 5xx, timeouts, connection errors.
    #[error("transient failure ({0})")]
    Transient(&'static str),
    /// Will not pass by retrying: 400, 403, 404, a body that is not what the platform documents.
    #[error("permanent failure ({0})")]
    Permanent(&'static str),
}

impl SourceError {
    pub fn class(&self) -> &'static str {
        match self {
            SourceError::RateLimited { .. } => "rate_limited",
            SourceError::Unauthorized => "unauthorized",
            SourceError::Transient(_) => "transient",
            SourceError::Permanent(_) => "permanent",
        }
    }
}

/// An order as a listing gives it: whole, or a reference whose details are fetched only if it is newer
/// than what is stored (bol lists changed orders without their details).
#[derive(Debug, Clone)]
pub enum Listed {
    Full(Box<Normalised>),
    Ref { order_id: String, sort_key: String, changed_at: Option<DateTime<Utc>> },
}

/// One page of a window.
#[derive(Debug, Clone)]
pub struct Listing {
    pub orders: Vec<Listed>,
    /// Orders the platform sent that could not be normalised (no id, no time).
    pub invalid: u32,
    /// The next page's position in the same window; `None` on the last page.
    pub next: Option<String>,
    /// The window's end as the platform applied it (Amazon echoes `lastUpdatedBefore`).
    pub window_to: Option<DateTime<Utc>>,
    /// Seconds the platform's limit headers say to wait before the next call (bol's
    /// `X-RateLimit-Remaining: 0` with its `X-RateLimit-Reset`).
    pub pause: Option<u64>,
    /// The rate the platform says applies, in requests per second (Amazon's `x-amzn-RateLimit-Limit`):
    /// the bucket refills no faster than that when it is below the published budget.
    pub rate: Option<f64>,
}

/// A marketplace's orders API, for one connection at a time.
pub trait OrderSource: Send + Sync {
    /// The listing call's published budget.
    fn budget(&self) -> Budget;

    /// The next window after `watermark` (or the first window of a connection created at `created`).
    fn window(&self, watermark: Option<DateTime<Utc>>, created: DateTime<Utc>, now: DateTime<Utc>) -> Cursor;

    /// A new access token from the connection's credentials.
    fn token(&self, credentials: &Credentials) -> impl Future<Output = Result<AccessToken, SourceError>> + Send;

    /// One page of the window at the cursor's position.
    fn list(
        &self, token: &SecretString, connection: &Connection, cursor: &Cursor,
    ) -> impl Future<Output = Result<Listing, SourceError>> + Send;

    /// The whole order behind a reference.
    fn detail(
        &self, token: &SecretString, connection: &Connection, order_id: &str,
    ) -> impl Future<Output = Result<Normalised, SourceError>> + Send;
}
