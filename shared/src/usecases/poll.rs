//! Polling one connection: its window's pages in order, each page's orders stored (and their events
//! written) before the resume point moves, and the watermark moved only when the whole window is in.
//!
//! - One job per connection at a time: the connection is leased, and every save is conditional on the
//!   lease, so a job that lost it (it ran past its time) cannot overwrite the next one's progress. The
//!   lease also serialises the token refresh.
//! - The access token is cached in the connection's secret until 130 s before it expires, so the
//!   next job, in any container, uses it instead of asking for another.
//! - The listing call's budget is a token bucket kept on the connection: a job that has none left stops
//!   and says when the next may call. A 429 stops the job until its `Retry-After` (or a jittered backoff);
//!   a transient failure backs off; a refused credential marks the connection `needs_reauthorization`
//!   and it is not polled again until it is connected again.
//! - A job cut off at any point resumes from the last saved cursor, or the watermark: pages are fetched
//!   again, and the versions make storing them again a no-op.

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::orders::connection::{backoff, Connection, ConnectionStatus};
use crate::domain::subject::SubjectHasher;
use crate::ports::{
    Clock, ConnectionStore, CredentialStore, InfraError, Listed, Metrics, OrderSource, OrderStore, SourceError,
};
use crate::usecases::orders_ingest::{store_page, PageResult};

/// Time a job keeps back from its deadline to save where it stopped.
pub const MARGIN: Duration = Duration::seconds(10);
/// A cached access token is used until this long before it expires: longer than a job runs (120 s), so a
/// token does not expire mid-job (bol's live five minutes, so each is still used about three).
pub const TOKEN_MARGIN: Duration = Duration::seconds(130);

/// A listing's orders made whole, as far as they got.
struct Completed {
    orders: Vec<crate::domain::orders::Normalised>,
    invalid: u32,
    stop: Option<Stop>,
}

enum Stop {
    Time,
    Refused(SourceError),
}

/// How a poll job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Nothing was called: the connection is absent, leased to another job, not active, or throttled.
    Skipped(&'static str),
    /// The window is in: the watermark moved.
    Done { result: PageResult, pages: u32 },
    /// Stopped before the window's end (its budget, a 429, its time); the next job resumes.
    Stopped { result: PageResult, pages: u32, why: &'static str },
    /// The marketplace refused the credentials: the connection waits for its merchant.
    NeedsReauthorization,
    /// A failure recorded on the connection, by class.
    Failed(&'static str),
}

/// Takes connection `id`'s lease for a job that ends at `deadline`: the connection as stored and the lease,
/// or `None` when it is absent or another job holds it.
pub async fn lease(
    connections: &impl ConnectionStore, clock: &dyn Clock, id: &str, deadline: DateTime<Utc>,
) -> Result<Option<(Connection, String)>, InfraError> {
    let lease = uuid::Uuid::new_v4().simple().to_string();
    Ok(connections.lease(id, &lease, clock.now(), deadline + MARGIN).await?.map(|c| (c, lease)))
}

pub struct Poller<'a, C, K, O, S, M> {
    pub connections: &'a C,
    pub credentials: &'a K,
    pub orders: &'a O,
    pub source: &'a S,
    pub hasher: &'a SubjectHasher,
    pub metrics: &'a M,
    pub clock: &'a dyn Clock,
}

impl<C, K, O, S, M> Poller<'_, C, K, O, S, M>
where
    C: ConnectionStore,
    K: CredentialStore,
    O: OrderStore,
    S: OrderSource,
    M: Metrics,
{
    /// Polls connection `id` until its window is in or `deadline` (the invocation's) nears.
    /// `jitter` in `[0, 1)` spreads the backoffs.
    pub async fn poll(&self, id: &str, deadline: DateTime<Utc>, jitter: f64) -> Result<PollOutcome, InfraError> {
        match lease(self.connections, self.clock, id, deadline).await? {
            Some((c, lease)) => self.poll_leased(c, lease, deadline, jitter).await,
            None => Ok(PollOutcome::Skipped("leased_or_absent")),
        }
    }

    /// [`Poller::poll`] of a connection whose lease the caller took with [`lease`] (the caller needs the
    /// connection first to pick its marketplace's source).
    pub async fn poll_leased(
        &self, mut c: Connection, lease: String, deadline: DateTime<Utc>, jitter: f64,
    ) -> Result<PollOutcome, InfraError> {
        let now = self.clock.now();
        if c.status != ConnectionStatus::Active {
            self.connections.save(&c, &lease, true).await?;
            return Ok(PollOutcome::Skipped("not_active"));
        }
        if c.throttle_until.is_some_and(|t| t > now) {
            self.connections.save(&c, &lease, true).await?;
            return Ok(PollOutcome::Skipped("throttled"));
        }
        let market = c.marketplace.as_str();
        let mut credentials = self.credentials.load(&c.secret_id).await?;
        let cached = match (&credentials.access_token, credentials.access_expires_at) {
            (Some(t), Some(exp)) if exp - TOKEN_MARGIN > now => Some(t.clone()),
            _ => None,
        };
        let mut fresh = false;
        let mut token: SecretString = match cached {
            Some(t) => t,
            None => match self.refresh(&mut credentials, &c.secret_id).await? {
                Ok(t) => {
                    fresh = true;
                    t
                }
                Err(e) => return self.failed(&mut c, &lease, e, jitter).await,
            },
        };
        let mut cursor = c.cursor.clone().unwrap_or_else(|| self.source.window(c.watermark, c.created_at, now));
        let (mut result, mut pages) = (PageResult::default(), 0u32);
        let mut budget = self.source.budget();
        loop {
            let now = self.clock.now();
            if now + MARGIN >= deadline {
                c.cursor = Some(cursor);
                return self.stopped(&mut c, &lease, result, pages, "time").await;
            }
            match budget.take(c.bucket, now) {
                Ok(b) => c.bucket = Some(b),
                Err(until) => {
                    c.cursor = Some(cursor);
                    c.throttle_until = Some(until);
                    return self.stopped(&mut c, &lease, result, pages, "budget").await;
                }
            }
            let listing = match self.source.list(&token, &c, &cursor).await {
                Ok(l) => l,
                Err(SourceError::Unauthorized) if !fresh => {
                    // The cached token was refused before its time (revoked, rotated): one new one.
                    fresh = true;
                    match self.refresh(&mut credentials, &c.secret_id).await? {
                        Ok(t) => {
                            token = t;
                            continue;
                        }
                        Err(e) => return self.failed(&mut c, &lease, e, jitter).await,
                    }
                }
                Err(e) => {
                    c.cursor = Some(cursor);
                    return self.failed(&mut c, &lease, e, jitter).await;
                }
            };
            if let Some(r) = listing.rate.filter(|r| r.is_finite() && *r > 0.0) {
                budget.rate = budget.rate.min(r);
            }
            let done = self.complete(&token, &c, listing.orders, deadline).await?;
            let stored = store_page(self.orders, self.hasher, &c.merchant, done.orders, self.clock.now()).await?;
            // Not readable from the listing, from its detail, or not storable: one count for the page.
            let invalid = listing.invalid + done.invalid + stored.invalid;
            self.total_and("OrdersInvalid", u64::from(invalid), ("Marketplace", market));
            match done.stop {
                Some(Stop::Time) => {
                    result.add(stored);
                    c.cursor = Some(cursor);
                    return self.stopped(&mut c, &lease, result, pages, "time").await;
                }
                // A detail call refused the token: one new one, and the page again (what is stored is skipped).
                Some(Stop::Refused(SourceError::Unauthorized)) if !fresh => {
                    result.add(stored);
                    fresh = true;
                    match self.refresh(&mut credentials, &c.secret_id).await? {
                        Ok(t) => {
                            token = t;
                            continue;
                        }
                        Err(e) => return self.failed(&mut c, &lease, e, jitter).await,
                    }
                }
                Some(Stop::Refused(e)) => {
                    c.cursor = Some(cursor);
                    return self.failed(&mut c, &lease, e, jitter).await;
                }
                None => {}
            }
            if stored.buyer_missing > 0 {
                let who = format!("{}/{market}", c.merchant);
                self.total_and(
                    "OrdersWithoutBuyerData",
                    u64::from(stored.buyer_missing),
                    ("MerchantMarketplace", &who),
                );
            }
            result.add(stored);
            pages += 1;
            match listing.next {
                Some(position) if listing.pause.is_some() => {
                    cursor.position = Some(position);
                    c.cursor = Some(cursor);
                    c.throttle_until = listing.pause.map(|s| self.clock.now() + Duration::seconds(s.min(3600) as i64));
                    return self.stopped(&mut c, &lease, result, pages, "limit_headers").await;
                }
                Some(position) => {
                    cursor.position = Some(position);
                    c.cursor = Some(cursor.clone());
                    if !self.connections.save(&c, &lease, false).await? {
                        return Ok(PollOutcome::Stopped { result, pages, why: "lease_lost" });
                    }
                }
                None => {
                    let end = listing.window_to.map_or(cursor.to, |t| t.min(cursor.to));
                    c.watermark = Some(c.watermark.map_or(end, |w| w.max(end)));
                    c.cursor = None;
                    c.last_success = Some(self.clock.now());
                    c.last_error = None;
                    c.failures = 0;
                    self.connections.save(&c, &lease, true).await?;
                    self.metrics.count("OrdersNew", u64::from(result.new), Some(("Marketplace", market)));
                    self.metrics.count("OrdersChanged", u64::from(result.changed), Some(("Marketplace", market)));
                    return Ok(PollOutcome::Done { result, pages });
                }
            }
        }
    }

    /// Counts `n` (when there is any) once in total, which the alarm watches, and once by `dimension`,
    /// which says where.
    fn total_and(&self, name: &'static str, n: u64, dimension: (&'static str, &str)) {
        if n > 0 {
            self.metrics.count(name, n, None);
            self.metrics.count(name, n, Some(dimension));
        }
    }

    /// A new access token, kept in the connection's secret. The inner error is the platform's refusal.
    async fn refresh(
        &self, credentials: &mut crate::ports::Credentials, secret_id: &str,
    ) -> Result<Result<SecretString, SourceError>, InfraError> {
        match self.source.token(credentials).await {
            Ok(t) => {
                // Kept only if the connection's credentials are still the ones this token came from: a
                // merchant who connected again meanwhile must not get the old refresh token back.
                let current = self.credentials.load(secret_id).await?;
                let same = |a: &Option<SecretString>, b: &Option<SecretString>| {
                    a.as_ref().map(ExposeSecret::expose_secret) == b.as_ref().map(ExposeSecret::expose_secret)
                };
                if same(&current.refresh_token, &credentials.refresh_token)
                    && same(&current.client_secret, &credentials.client_secret)
                {
                    credentials.access_token = Some(t.token.clone());
                    credentials.access_expires_at = Some(t.expires_at);
                    self.credentials.save(secret_id, credentials).await?;
                }
                Ok(Ok(t.token))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// The whole orders of a listing: references are fetched only when newer than what is stored, until
    /// the invocation's time nears. Returns what it has, and why it stopped early if it did (the page is
    /// then stored as far as it got, and listed again by the next job, which fetches only what is missing).
    async fn complete(
        &self, token: &SecretString, c: &Connection, listed: Vec<Listed>, deadline: DateTime<Utc>,
    ) -> Result<Completed, InfraError> {
        let refs: Vec<String> = listed
            .iter()
            .filter_map(|l| match l {
                Listed::Ref { sort_key, .. } => Some(sort_key.clone()),
                Listed::Full(_) => None,
            })
            .collect();
        let stored =
            if refs.is_empty() { Default::default() } else { self.orders.versions(&c.merchant, &refs).await? };
        let mut done = Completed { orders: Vec::with_capacity(listed.len()), invalid: 0, stop: None };
        for l in listed {
            match l {
                Listed::Full(n) => done.orders.push(*n),
                Listed::Ref { order_id, sort_key, changed_at } => {
                    let known = stored.get(&sort_key);
                    if known.is_some_and(|k| {
                        changed_at.is_some_and(|t| t.timestamp_millis() <= k.updated_at.timestamp_millis())
                    }) {
                        continue;
                    }
                    if self.clock.now() + MARGIN >= deadline {
                        done.stop = Some(Stop::Time);
                        return Ok(done);
                    }
                    match self.source.detail(token, c, &order_id).await {
                        Ok(n) => done.orders.push(n),
                        // One order that is gone (404) or not what the platform documents holds up nothing
                        // else; any other refusal stops the page unmoved.
                        Err(SourceError::Permanent(why))
                            if why == crate::adapters::marketplaces::NOT_FOUND || why == "order not normalisable" =>
                        {
                            done.invalid += 1
                        }
                        Err(e) => {
                            done.stop = Some(Stop::Refused(e));
                            return Ok(done);
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    async fn stopped(
        &self, c: &mut Connection, lease: &str, result: PageResult, pages: u32, why: &'static str,
    ) -> Result<PollOutcome, InfraError> {
        self.connections.save(c, lease, true).await?;
        Ok(PollOutcome::Stopped { result, pages, why })
    }

    async fn failed(
        &self, c: &mut Connection, lease: &str, e: SourceError, jitter: f64,
    ) -> Result<PollOutcome, InfraError> {
        let now = self.clock.now();
        let market = c.marketplace.as_str();
        c.last_error = Some(e.class().to_owned());
        self.metrics.count("PollFailures", 1, Some(("Class", e.class())));
        let outcome = match e {
            SourceError::Unauthorized => {
                c.status = ConnectionStatus::NeedsReauthorization;
                self.total_and("ConnectionsNeedingReauthorization", 1, ("Marketplace", market));
                PollOutcome::NeedsReauthorization
            }
            SourceError::RateLimited { retry_after } => {
                let wait = retry_after
                    .map(|s| Duration::seconds(s.min(3600) as i64))
                    .unwrap_or_else(|| backoff(c.failures, jitter));
                c.failures += 1;
                c.throttle_until = Some(now + wait);
                PollOutcome::Stopped { result: PageResult::default(), pages: 0, why: "rate_limited" }
            }
            SourceError::Transient(_) | SourceError::Permanent(_) => {
                c.failures += 1;
                c.throttle_until = Some(now + backoff(c.failures, jitter));
                PollOutcome::Failed(e.class())
            }
        };
        self.connections.save(c, lease, true).await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::adapters::memory::{FixedClock, MemoryConnections, MemoryCredentials, MemoryMetrics, MemoryOrders};
    use crate::domain::orders::connection::{Budget, Connection, Cursor};
    use crate::domain::orders::{amazon, Marketplace};
    use crate::ports::{AccessToken, Credentials, Listing};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn order(id: &str, updated: &str) -> Listed {
        let json = format!(
            r#"{{"orderId":"{id}","createdTime":"2026-11-30T10:00:00Z","lastUpdatedTime":"{updated}",
            "fulfillment":{{"fulfillmentStatus":"UNSHIPPED","fulfilledBy":"AMAZON"}}}}"#
        );
        Listed::Full(Box::new(amazon::normalise(&serde_json::from_str(&json).unwrap()).unwrap()))
    }

    fn page(orders: Vec<Listed>, next: Option<&str>) -> Result<Listing, SourceError> {
        Ok(Listing { orders, invalid: 0, next: next.map(str::to_owned), window_to: None, pause: None, rate: None })
    }

    /// A platform that answers from a script, and remembers what it was asked.
    #[derive(Default)]
    struct Script {
        lists: Mutex<VecDeque<Result<Listing, SourceError>>>,
        tokens: Mutex<VecDeque<Result<AccessToken, SourceError>>>,
        asked: Mutex<Vec<(String, Option<String>)>>,
        budget: Option<Budget>,
    }

    fn token(t: &str, exp: DateTime<Utc>) -> Result<AccessToken, SourceError> {
        Ok(AccessToken { token: SecretString::from(t.to_owned()), expires_at: exp })
    }

    impl OrderSource for Script {
        fn budget(&self) -> Budget {
            self.budget.unwrap_or(Budget { rate: 1.0, burst: 100.0 })
        }
        fn window(&self, watermark: Option<DateTime<Utc>>, created: DateTime<Utc>, now: DateTime<Utc>) -> Cursor {
            Cursor { from: watermark.unwrap_or(created), to: now - Duration::minutes(2), position: None }
        }
        async fn token(&self, _c: &Credentials) -> Result<AccessToken, SourceError> {
            self.tokens.lock().unwrap().pop_front().unwrap_or(Err(SourceError::Transient("no token scripted")))
        }
        async fn list(&self, token: &SecretString, _c: &Connection, cursor: &Cursor) -> Result<Listing, SourceError> {
            self.asked.lock().unwrap().push((token.expose_secret().to_owned(), cursor.position.clone()));
            self.lists.lock().unwrap().pop_front().unwrap_or(Err(SourceError::Transient("no page scripted")))
        }
        async fn detail(
            &self, _t: &SecretString, _c: &Connection, _id: &str,
        ) -> Result<crate::domain::orders::Normalised, SourceError> {
            Err(SourceError::Permanent("no details here"))
        }
    }

    fn connection() -> Connection {
        Connection::new(
            "c1".into(),
            "m1".into(),
            Marketplace::Amazon,
            "A1".into(),
            vec!["A1PA6795UKMFR9".into()],
            "s1".into(),
            t0() - Duration::days(1),
        )
    }

    struct World {
        connections: MemoryConnections,
        credentials: MemoryCredentials,
        orders: MemoryOrders,
        metrics: MemoryMetrics,
        clock: FixedClock,
        hasher: SubjectHasher,
    }

    impl World {
        fn new() -> Self {
            let credentials = MemoryCredentials::default();
            credentials.secrets.lock().unwrap().insert(
                "s1".into(),
                Credentials { refresh_token: Some(SecretString::from("r".to_owned())), ..Credentials::default() },
            );
            Self {
                connections: MemoryConnections::with(connection()),
                credentials,
                orders: MemoryOrders::default(),
                metrics: MemoryMetrics::default(),
                clock: FixedClock::at(t0()),
                hasher: SubjectHasher::new(&SecretString::from("p".to_owned())),
            }
        }
        async fn poll(&self, source: &Script) -> PollOutcome {
            self.try_poll(source).await.unwrap()
        }
        async fn try_poll(&self, source: &Script) -> Result<PollOutcome, InfraError> {
            let p = Poller {
                connections: &self.connections,
                credentials: &self.credentials,
                orders: &self.orders,
                source,
                hasher: &self.hasher,
                metrics: &self.metrics,
                clock: &self.clock,
            };
            p.poll("c1", self.clock.now() + Duration::minutes(5), 0.5).await
        }
    }

    #[tokio::test]
    async fn pages_are_followed_and_the_watermark_moves_only_at_the_windows_end() {
        let w = World::new();
        let s = Script::default();
        s.tokens.lock().unwrap().push_back(token("t1", t0() + Duration::hours(1)));
        s.lists.lock().unwrap().extend([
            page(vec![order("1-1", "2026-11-30T11:00:00Z")], Some("p2")),
            page(vec![order("1-2", "2026-11-30T12:00:00Z")], None),
        ]);
        let out = w.poll(&s).await;
        assert!(matches!(out, PollOutcome::Done { pages: 2, result } if result.new == 2), "{out:?}");
        assert_eq!(*s.asked.lock().unwrap(), vec![("t1".into(), None), ("t1".into(), Some("p2".into()))]);
        let c = w.connections.get_now("c1");
        assert_eq!(c.watermark, Some(t0() - Duration::minutes(2)));
        assert_eq!(c.cursor, None);
        assert_eq!(w.orders.events.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_job_cut_off_midway_resumes_at_its_page_with_nothing_lost_or_doubled() {
        let w = World::new();
        let s = Script::default();
        s.tokens.lock().unwrap().push_back(token("t1", t0() + Duration::hours(1)));
        // The first page is stored, then the platform fails: the cursor says where to go on.
        s.lists
            .lock()
            .unwrap()
            .extend([page(vec![order("1-1", "2026-11-30T11:00:00Z")], Some("p2")), Err(SourceError::Transient("502"))]);
        assert_eq!(w.poll(&s).await, PollOutcome::Failed("transient"));
        let c = w.connections.get_now("c1");
        assert_eq!(c.watermark, None, "the window is not in");
        assert_eq!(c.cursor.as_ref().and_then(|c| c.position.as_deref()), Some("p2"));
        assert!(c.throttle_until.is_some());
        // Later: the same token is used from the secret, the job resumes at page 2, the page-1 order again
        // (a re-delivered page) changes nothing.
        w.clock.set(t0() + Duration::hours(1) - Duration::minutes(10));
        s.lists
            .lock()
            .unwrap()
            .extend([page(vec![order("1-1", "2026-11-30T11:00:00Z"), order("1-2", "2026-11-30T12:00:00Z")], None)]);
        let out = w.poll(&s).await;
        assert!(matches!(out, PollOutcome::Done { result, .. } if result.new == 1 && result.unchanged == 1), "{out:?}");
        assert_eq!(s.asked.lock().unwrap().last().unwrap(), &("t1".into(), Some("p2".into())));
        assert_eq!(w.orders.events.lock().unwrap().len(), 2, "each order once");
        assert_eq!(w.connections.get_now("c1").watermark, Some(t0() - Duration::minutes(2)), "the first window's end");
    }

    #[tokio::test]
    async fn a_crash_between_storing_the_last_page_and_moving_the_watermark_loses_and_doubles_nothing() {
        let w = World::new();
        let s = Script::default();
        s.tokens.lock().unwrap().push_back(token("t1", t0() + Duration::hours(1)));
        s.lists.lock().unwrap().extend([
            page(vec![order("1-1", "2026-11-30T11:00:00Z")], Some("p2")),
            page(vec![order("1-2", "2026-11-30T12:00:00Z")], None),
        ]);
        // Both pages stored, then the job dies before the watermark is saved.
        w.connections.fail_release.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(w.try_poll(&s).await.is_err());
        assert_eq!(w.orders.events.lock().unwrap().len(), 2);
        let c = w.connections.get_now("c1");
        assert_eq!(c.watermark, None, "the watermark did not move");
        // Its lease lapses; the next job resumes at the last page and finds it stored.
        w.clock.set(t0() + Duration::minutes(6));
        s.lists.lock().unwrap().push_back(page(vec![order("1-2", "2026-11-30T12:00:00Z")], None));
        let out = w.poll(&s).await;
        assert!(matches!(out, PollOutcome::Done { result, .. } if result.unchanged == 1 && result.new == 0), "{out:?}");
        assert_eq!(s.asked.lock().unwrap().last().unwrap().1.as_deref(), Some("p2"));
        assert_eq!(w.orders.events.lock().unwrap().len(), 2, "nothing doubled");
        assert!(w.connections.get_now("c1").watermark.is_some());
    }

    #[tokio::test]
    async fn an_order_updated_exactly_at_the_windows_edge_is_in_the_next_window_and_stored_once() {
        let w = World::new();
        let s = Script::default();
        s.tokens.lock().unwrap().push_back(token("t1", t0() + Duration::hours(1)));
        let edge = (t0() - Duration::minutes(2)).to_rfc3339();
        // Updated at the first window's end: the first window may or may not return it, the next one
        // starts at that instant (inclusive), so it is seen in either, and stored once.
        s.lists.lock().unwrap().push_back(page(vec![order("1-1", &edge)], None));
        w.poll(&s).await;
        let first = w.connections.get_now("c1").watermark.unwrap();
        assert_eq!(first.to_rfc3339(), edge);
        w.clock.set(t0() + Duration::minutes(10));
        s.lists.lock().unwrap().push_back(page(vec![order("1-1", &edge)], None));
        let out = w.poll(&s).await;
        assert!(matches!(out, PollOutcome::Done { result, .. } if result.unchanged == 1), "{out:?}");
        assert_eq!(w.orders.events.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_429_stops_until_its_retry_after_or_a_backoff_without_it() {
        let w = World::new();
        let s = Script::default();
        s.tokens.lock().unwrap().push_back(token("t1", t0() + Duration::hours(1)));
        s.lists.lock().unwrap().push_back(Err(SourceError::RateLimited { retry_after: Some(4) }));
        assert!(matches!(w.poll(&s).await, PollOutcome::Stopped { why: "rate_limited", .. }));
        assert_eq!(w.connections.get_now("c1").throttle_until, Some(t0() + Duration::seconds(4)));
        assert_eq!(w.poll(&s).await, PollOutcome::Skipped("throttled"), "nothing is called while throttled");
        w.clock.set(t0() + Duration::seconds(5));
        s.lists.lock().unwrap().push_back(Err(SourceError::RateLimited { retry_after: None }));
        w.poll(&s).await;
        let until = w.connections.get_now("c1").throttle_until.unwrap();
        assert_eq!(until - w.clock.now(), backoff(1, 0.5), "no Retry-After: the jittered backoff");
    }

    #[tokio::test]
    async fn a_token_that_expires_mid_run_is_renewed_once_and_the_run_goes_on() {
        let w = World::new();
        w.credentials.secrets.lock().unwrap().get_mut("s1").unwrap().access_token =
            Some(SecretString::from("old".to_owned()));
        w.credentials.secrets.lock().unwrap().get_mut("s1").unwrap().access_expires_at =
            Some(t0() + Duration::minutes(30));
        let s = Script::default();
        s.tokens.lock().unwrap().push_back(token("new", t0() + Duration::hours(1)));
        s.lists.lock().unwrap().extend([
            page(vec![order("1-1", "2026-11-30T11:00:00Z")], Some("p2")),
            Err(SourceError::Unauthorized),
            page(vec![], None),
        ]);
        assert!(matches!(w.poll(&s).await, PollOutcome::Done { .. }));
        let asked = s.asked.lock().unwrap().clone();
        assert_eq!(asked.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["old", "old", "new"]);
        assert_eq!(asked[2].1.as_deref(), Some("p2"), "the same page with the new token");
        let kept = w.credentials.secrets.lock().unwrap()["s1"].clone();
        assert_eq!(kept.access_token.unwrap().expose_secret(), "new", "kept for the next job");
    }

    #[tokio::test]
    async fn a_reconnect_during_a_run_keeps_the_new_credentials() {
        let w = World::new();
        let fresh =
            Credentials { refresh_token: Some(SecretString::from("new-grant".to_owned())), ..Credentials::default() };
        *w.credentials.reconnect_after_first_load.lock().unwrap() = Some(fresh);
        let s = Script::default();
        s.tokens.lock().unwrap().push_back(token("t-old-grant", t0() + Duration::hours(1)));
        s.lists.lock().unwrap().push_back(page(vec![], None));
        assert!(matches!(w.poll(&s).await, PollOutcome::Done { .. }));
        let kept = w.credentials.secrets.lock().unwrap()["s1"].clone();
        assert_eq!(kept.refresh_token.unwrap().expose_secret(), "new-grant", "the old grant is not written back");
        assert!(kept.access_token.is_none());
    }

    #[tokio::test]
    async fn refused_credentials_mark_the_connection_and_stop_its_polling() {
        let w = World::new();
        let s = Script::default();
        s.tokens.lock().unwrap().push_back(Err(SourceError::Unauthorized));
        assert_eq!(w.poll(&s).await, PollOutcome::NeedsReauthorization);
        let c = w.connections.get_now("c1");
        assert_eq!((c.status, c.last_error.as_deref()), (ConnectionStatus::NeedsReauthorization, Some("unauthorized")));
        assert_eq!(w.metrics.0.lock().unwrap().get("ConnectionsNeedingReauthorization").copied(), Some(2));
        assert_eq!(w.poll(&s).await, PollOutcome::Skipped("not_active"));
        assert!(s.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_exhausted_budget_stops_the_job_and_says_when_to_call_next() {
        let w = World::new();
        let s = Script { budget: Some(Budget { rate: 0.0056, burst: 1.0 }), ..Script::default() };
        s.tokens.lock().unwrap().push_back(token("t1", t0() + Duration::hours(1)));
        s.lists.lock().unwrap().extend([page(vec![order("1-1", "2026-11-30T11:00:00Z")], Some("p2"))]);
        let out = w.poll(&s).await;
        assert!(matches!(out, PollOutcome::Stopped { why: "budget", pages: 1, .. }), "{out:?}");
        let c = w.connections.get_now("c1");
        assert_eq!(c.cursor.unwrap().position.as_deref(), Some("p2"));
        assert!(c.throttle_until.unwrap() > t0() + Duration::seconds(170));
    }

    #[tokio::test]
    async fn a_leased_connection_is_not_polled_twice_at_once() {
        let w = World::new();
        use crate::ports::ConnectionStore;
        w.connections.lease("c1", "other", t0(), t0() + Duration::minutes(1)).await.unwrap().unwrap();
        assert_eq!(w.poll(&Script::default()).await, PollOutcome::Skipped("leased_or_absent"));
    }
}
