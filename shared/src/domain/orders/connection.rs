//! A merchant's connection to a marketplace account, and the rules of polling it: its status, its
//! watermark and resume point, its rate budget (a token bucket that survives between invocations) and
//! the backoff after a refusal.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::Marketplace;

/// Whether a connection is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    /// Paused by the merchant or an operator.
    Paused,
    /// The marketplace refused its credentials: not polled until it is connected again.
    NeedsReauthorization,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::Paused => "paused",
            ConnectionStatus::NeedsReauthorization => "needs_reauthorization",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Paused, Self::NeedsReauthorization].into_iter().find(|c| c.as_str() == s)
    }
}

/// Where an unfinished window resumes: the window's bounds and the platform's page position in it
/// (Amazon's `paginationToken`, eBay's offset, bol's page). Amazon wants every other parameter
/// unchanged with its token, so the window is kept with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The platform's position; `None` is the window's first page.
    pub position: Option<String>,
}

/// A token bucket: `rate` requests per second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    pub at: DateTime<Utc>,
}

/// A platform operation's published budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub rate: f64,
    pub burst: f64,
}

impl Budget {
    /// Takes one request from `bucket` at `now`. `Err(t)`: none left until `t`.
    pub fn take(&self, bucket: Option<Bucket>, now: DateTime<Utc>) -> Result<Bucket, DateTime<Utc>> {
        let b = bucket.unwrap_or(Bucket { tokens: self.burst, at: now });
        let elapsed = (now - b.at).num_milliseconds().max(0) as f64 / 1000.0;
        let tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        if tokens >= 1.0 {
            return Ok(Bucket { tokens: tokens - 1.0, at: now });
        }
        let wait = ((1.0 - tokens) / self.rate.max(1e-9) * 1000.0).ceil() as i64;
        Err(now + Duration::milliseconds(wait.min(86_400_000)))
    }
}

/// A connection as stored. No credentials: those are in its own secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: String,
    pub merchant: String,
    pub marketplace: Marketplace,
    /// The seller / account id on the marketplace (Amazon's selling partner id, eBay's user, bol's
    /// retailer client id).
    pub account: String,
    /// The marketplace sites it sells on (Amazon marketplace ids); may be empty for eBay and bol.
    pub sites: Vec<String>,
    pub status: ConnectionStatus,
    pub secret_id: String,
    pub created_at: DateTime<Utc>,
    /// Every order updated before it is stored and its event queued.
    pub watermark: Option<DateTime<Utc>>,
    pub cursor: Option<Cursor>,
    pub bucket: Option<Bucket>,
    /// Not to be called before (a 429's `Retry-After`, or the backoff).
    pub throttle_until: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// The class of the last failure (`rate_limited`, `transient`, `unauthorized`, `permanent`), never its text.
    pub last_error: Option<String>,
    pub failures: u32,
}

impl Connection {
    /// A connection just made: active, never polled yet.
    pub fn new(
        id: String, merchant: String, marketplace: Marketplace, account: String, sites: Vec<String>, secret_id: String,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            merchant,
            marketplace,
            account,
            sites,
            status: ConnectionStatus::Active,
            secret_id,
            created_at,
            watermark: None,
            cursor: None,
            bucket: None,
            throttle_until: None,
            last_success: None,
            last_error: None,
            failures: 0,
        }
    }
}

/// Shards of the index of pollable connections: the fan-out reads them in parallel.
pub const POLL_SHARDS: u32 = 8;

/// The poll shard of connection `id` (FNV-1a, stable across builds).
pub fn poll_shard(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % POLL_SHARDS
}

/// How far back the first poll of a new connection reaches.
pub const FIRST_LOOKBACK: Duration = Duration::days(7);

/// The backoff after the `failures`-th failure in a row: exponential from 30 s, at most an hour, with
/// full jitter from `jitter` in `[0, 1)` (the caller's randomness, so it is testable).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let cap = 3_600_000f64;
    let base = (30_000f64 * 2f64.powi(failures.min(16) as i32)).min(cap);
    Duration::milliseconds((base * (0.5 + jitter.clamp(0.0, 1.0) / 2.0)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn amazons_search_budget_allows_a_burst_of_twenty_then_one_call_every_three_minutes() {
        let budget = Budget { rate: 0.0056, burst: 20.0 };
        let mut b = None;
        for _ in 0..20 {
            b = Some(budget.take(b, t0()).unwrap());
        }
        let next = budget.take(b, t0()).unwrap_err();
        let wait = (next - t0()).num_seconds();
        assert!((178..=179).contains(&wait), "{wait}");
        assert!(budget.take(b, next).is_ok(), "the bucket state survives, so the next call waits");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(backoff(0, 1.0), Duration::seconds(30));
        assert_eq!(backoff(0, 0.0), Duration::seconds(15));
        assert_eq!(backoff(3, 1.0), Duration::seconds(240));
        assert_eq!(backoff(40, 1.0), Duration::hours(1));
    }

    #[test]
    fn statuses_round_trip() {
        for s in [ConnectionStatus::Active, ConnectionStatus::Paused, ConnectionStatus::NeedsReauthorization] {
            assert_eq!(ConnectionStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ConnectionStatus::parse("removed"), None);
    }
}
