//! One ad account's insights pull: the trailing restatement window in the account's own dates, upserted
//! by (account, campaign, date) so a restated day replaces the old value and an unchanged one costs no
//! write; the retailers' rollups of the days that changed recomputed. Resumable: the ranges still to pull
//! and an async report run in progress live on the account item, so a pull cut off, throttled or split
//! goes on from where it was. One pull per account at a time (a lease); rate limits read from every answer.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use tracing::{info, warn};

use crate::adapters::dynamo_insights::{AdAccount, DynamoInsights, StoredRow};
use crate::adapters::meta_graph::{Failure, GraphClient};
use crate::domain::insights::{self, ErrorClass, JobState, Page, Rollup, Row, Usage};
use crate::domain::retention::{self, DataClass};
use crate::ports::{InfraError, Metrics};

/// How a pull runs.
#[derive(Debug, Clone, Copy)]
pub struct PullSettings {
    pub restatement_days: u32,
    /// Ranges longer than this go to an async report run at once.
    pub sync_max_days: i64,
    /// An async run older than this is given up (and its range split).
    pub job_timeout_secs: i64,
    /// How long a lease holds the account.
    pub lease_secs: i64,
    /// Whether to sleep between calls as usage rises (off in tests with an injected clock).
    pub pace: bool,
}

impl Default for PullSettings {
    fn default() -> Self {
        Self { restatement_days: 28, sync_max_days: 93, job_timeout_secs: 3600, lease_secs: 900, pace: true }
    }
}

/// How long past the invocation's deadline a pull's lease holds the account.
pub const LEASE_AFTER_DEADLINE: i64 = 30;

/// What one pull did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pulled {
    pub outcome: Outcome,
    pub rows_read: usize,
    pub rows_written: usize,
    pub rows_refused: usize,
    pub unmapped: usize,
    pub rollups: usize,
    pub graph_calls: usize,
    /// The retailers' days this pull marked (and so recomputes).
    pub touched: HashSet<(String, NaiveDate)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Outcome {
    #[default]
    Done,
    /// Throttled or an async run still running: come back after `until` (epoch seconds).
    Later { until: i64 },
    /// Another pull holds the account.
    Busy,
    /// The token was refused: the account is stopped until an operator resumes it.
    TokenError,
    /// Not active, or unknown.
    Skipped,
    /// Failed this time (kept for the next run).
    Failed { why: String },
}

pub struct Puller<'a, M> {
    pub store: &'a DynamoInsights,
    pub graph: &'a GraphClient,
    pub metrics: &'a M,
    pub settings: PullSettings,
}

fn expiry(now: DateTime<Utc>) -> i64 {
    retention::deadline(DataClass::AdPerformanceRecord, now).unwrap_or(now).timestamp()
}

enum Step {
    /// Go on (after a pull: its range is done).
    Continue,
    /// The pending ranges were rewritten (a split, an async run): nothing to pop.
    Replanned,
    Stop(Outcome),
}

/// Days per planned range: a cut-off or a failure costs at most this much work again.
const CHUNK_DAYS: i64 = 7;
/// Pages per range before the answer is judged to loop.
const MAX_PAGES: usize = 200;
/// How far back a stopped account catches up.
const MAX_CATCH_UP_DAYS: i64 = 90;
/// Time kept for the rollups and the account's save before the invocation's end.
const RESERVE_SECS: i64 = 30;

/// Puts a range's two halves (or the day itself) at the head of the ranges to pull.
fn push_halves_front(pending: &mut Vec<(NaiveDate, NaiveDate)>, since: NaiveDate, until: NaiveDate) {
    match insights::split(since, until) {
        Some((a, b)) => {
            pending.insert(0, b);
            pending.insert(0, a);
        }
        None => pending.insert(0, (since, until)),
    }
}

/// Plans a run: the trailing window (and any days since the last complete pull, up to 90 back), in
/// ranges of a week.
pub fn plan(today: NaiveDate, restatement_days: u32, pulled_through: Option<NaiveDate>) -> Vec<(NaiveDate, NaiveDate)> {
    let (mut since, until) = insights::window(today, restatement_days);
    if let Some(p) = pulled_through {
        since = since.min(p + chrono::Duration::days(1)).max(today - chrono::Duration::days(MAX_CATCH_UP_DAYS));
    }
    let mut out = Vec::new();
    let mut a = since;
    while a <= until {
        let b = (a + chrono::Duration::days(CHUNK_DAYS - 1)).min(until);
        out.push((a, b));
        a = b + chrono::Duration::days(1);
    }
    out
}

impl<M: Metrics> Puller<'_, M> {
    /// Pulls `account` until done, throttled, or `deadline` is near (`now` is the injected clock's time).
    pub async fn pull(&self, account: &str, now: DateTime<Utc>, deadline: DateTime<Utc>) -> Result<Pulled, InfraError> {
        let mut out = Pulled::default();
        let t = now.timestamp();
        let Some(seen) = self.store.account(account).await? else {
            out.outcome = Outcome::Skipped;
            return Ok(out);
        };
        if seen.status != "active" {
            out.outcome = if seen.status == "token_error" { Outcome::TokenError } else { Outcome::Skipped };
            return Ok(out);
        }
        let app = self.store.app_throttle().await?.filter(|u| *u > t);
        if let Some(until) = app.or(seen.throttle_until.filter(|u| *u > t)) {
            out.outcome = Outcome::Later { until };
            return Ok(out);
        }
        // Held while this invocation can still run (to its deadline) and a little after, never longer than
        // the settings' lease: a pull cut off at its time limit gives the account back then, not up to
        // 15 minutes later (the soak found redelivered pulls skipped as busy that long).
        let lease = (t + self.settings.lease_secs)
            .min(deadline.timestamp() + LEASE_AFTER_DEADLINE)
            .max(t + LEASE_AFTER_DEADLINE);
        // The state as taken with the lease: no other pull changes it while it is held.
        let Some(mut acc) = self.store.lease(account, t, lease).await? else {
            out.outcome = Outcome::Busy;
            return Ok(out);
        };
        let result = self.run(&mut acc, now, deadline, &mut out).await;
        acc.lease_until = None;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                acc.last_error = Some("storage".into());
                self.store.save_account(&acc, Some(lease)).await?;
                return Err(e);
            }
        };
        match &outcome {
            Outcome::Done => {
                acc.last_success_at = Some(t);
                acc.last_error = None;
            }
            Outcome::Failed { why } => acc.last_error = Some(why.clone()),
            _ => {}
        }
        if !self.store.save_account(&acc, Some(lease)).await? {
            warn!(account = %account, "the pull outlived its lease; its state is not written over a newer pull's");
        }
        out.outcome = outcome;
        Ok(out)
    }

    async fn run(
        &self, acc: &mut AdAccount, now: DateTime<Utc>, deadline: DateTime<Utc>, out: &mut Pulled,
    ) -> Result<Outcome, InfraError> {
        let t = now.timestamp();
        if acc.currency.is_empty() || acc.info_at.is_none_or(|i| t - i > 86_400) {
            out.graph_calls += 1;
            match self.graph.account(&acc.id).await {
                Ok((info, _)) => {
                    acc.currency = info.currency;
                    acc.offset_hours = info.offset_hours;
                    acc.timezone_name = info.timezone_name;
                    acc.info_at = Some(t);
                }
                Err(f) if acc.currency.is_empty() => return self.failed(acc, f, t).await,
                Err(_) => {} // yesterday's offset will do for this run
            }
        }
        if acc.pending.is_empty() && acc.job.is_none() {
            let today = insights::account_today(now, acc.offset_hours);
            acc.pending = plan(today, self.settings.restatement_days, acc.pulled_through);
        }
        let mappings = self.store.mappings().await?;
        let mut unmapped: HashSet<String> = HashSet::new();
        let result = loop {
            if deadline - chrono::Utc::now() < chrono::Duration::seconds(RESERVE_SECS) {
                break Outcome::Later { until: t + 1 };
            }
            if let Some(until) = self.store.app_throttle().await?.filter(|u| *u > t) {
                break Outcome::Later { until };
            }
            let step = if let Some((run_id, since, until, started)) = acc.job.clone() {
                self.poll_job(acc, &run_id, since, until, started, t, &mappings, &mut unmapped, deadline, out).await?
            } else {
                let Some((since, until)) = acc.pending.first().copied() else { break Outcome::Done };
                if (until - since).num_days() + 1 > self.settings.sync_max_days {
                    self.start_job(acc, since, until, t, out).await?
                } else {
                    match self.pull_sync(acc, since, until, t, &mappings, &mut unmapped, deadline, out).await? {
                        Step::Continue => {
                            acc.pending.remove(0);
                            acc.pulled_through = acc.pulled_through.max(Some(until));
                            acc.head_failures = 0;
                            Step::Replanned
                        }
                        other => other,
                    }
                }
            };
            match step {
                Step::Continue | Step::Replanned => {}
                Step::Stop(o @ Outcome::Failed { .. }) => {
                    self.head_failed(acc);
                    break o;
                }
                Step::Stop(o) => break o,
            }
        };
        self.finish(&unmapped, acc, now, out).await?;
        Ok(result)
    }

    /// The head range (or report run) failed again: after 3 failures in a row it goes to the back, after 6
    /// it is dropped and counted, so no range Meta keeps refusing blocks the account's other days.
    fn head_failed(&self, acc: &mut AdAccount) {
        acc.head_failures += 1;
        if acc.head_failures < 3 {
            return;
        }
        if let Some((_, since, until, _)) = acc.job.take() {
            acc.pending.insert(0, (since, until));
        }
        if acc.head_failures >= 6 {
            if !acc.pending.is_empty() {
                let (since, until) = acc.pending.remove(0);
                warn!(account = %acc.id, %since, %until, "a range Meta kept refusing is dropped for this run");
                self.metrics.count("InsightsRangesDropped", 1, None);
            }
            acc.head_failures = 0;
        } else if !acc.pending.is_empty() {
            let head = acc.pending.remove(0);
            acc.pending.push(head);
        }
    }

    /// Rollups of the days this pull marked and of any mark older than a minute (left by a pull cut off,
    /// or a pull's own, read again once the index surely has its rows), and the unmapped campaigns noted.
    /// A mark is cleared only when it is older than a minute, so the retailer index (eventually consistent)
    /// has every row it marked by the time the last recompute reads it. Other pulls' fresh marks are theirs.
    async fn finish(
        &self, unmapped: &HashSet<String>, acc: &AdAccount, now: DateTime<Utc>, out: &mut Pulled,
    ) -> Result<(), InfraError> {
        let t = now.timestamp();
        for (retailer, date, marked_at) in self.store.dirty().await? {
            let old = marked_at < t - 60;
            if !old && !out.touched.contains(&(retailer.clone(), date)) {
                continue;
            }
            if recompute(self.store, &retailer, date, now).await? {
                out.rollups += 1;
            }
            if marked_at < t - 60 {
                self.store.clear_dirty(&retailer, date, marked_at).await?;
            }
        }
        if !unmapped.is_empty() {
            let list: Vec<_> = unmapped.iter().map(|c| (c.clone(), acc.id.clone())).collect();
            self.store.note_unmapped(&list, t).await?;
            out.unmapped = list.len();
            self.metrics.count("UnmappedCampaigns", list.len() as u64, None);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pull_sync(
        &self, acc: &mut AdAccount, since: NaiveDate, until: NaiveDate, t: i64, mappings: &HashMap<String, String>,
        unmapped: &mut HashSet<String>, deadline: DateTime<Utc>, out: &mut Pulled,
    ) -> Result<Step, InfraError> {
        let stored = self.stored(&acc.id, since, until).await?;
        let mut seen: HashSet<(NaiveDate, String)> = HashSet::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            if deadline - chrono::Utc::now() < chrono::Duration::seconds(RESERVE_SECS) {
                // The range is pulled again from its start next time (its writes so far are idempotent).
                return Ok(Step::Stop(Outcome::Later { until: t + 1 }));
            }
            out.graph_calls += 1;
            let answer = self.graph.insights(&acc.id, &acc.currency, since, until, next.as_deref()).await;
            match answer {
                Ok((page, usage)) => {
                    if page.next.is_some() && page.next == next {
                        return Ok(Step::Stop(Outcome::Failed { why: "paging_loop".into() }));
                    }
                    next = page.next.clone();
                    self.upsert(page, &acc.id, (since, until), &stored, &mut seen, mappings, unmapped, t, out).await?;
                    if let Some(stop) = self.pace(acc, &usage, t).await? {
                        return Ok(Step::Stop(stop));
                    }
                    if next.is_none() {
                        self.vanished(&stored, &seen, t, out).await?;
                        return Ok(Step::Continue);
                    }
                }
                // Meta asks for less: the range in halves, and a single day as an async report run.
                Err(Failure::Graph(e, _)) if e.class == ErrorClass::ReduceData => {
                    if since < until {
                        acc.pending.remove(0);
                        push_halves_front(&mut acc.pending, since, until);
                        return Ok(Step::Replanned);
                    }
                    return match self.start_job(acc, since, until, t, out).await? {
                        Step::Continue => Ok(Step::Replanned),
                        other => Ok(other),
                    };
                }
                Err(f) => return Ok(Step::Stop(self.failed(acc, f, t).await?)),
            }
        }
        Ok(Step::Stop(Outcome::Failed { why: "too_many_pages".into() }))
    }

    /// Rows stored for the range that a complete answer no longer has (Meta omits days without delivery):
    /// restated to zero, so their rollups follow.
    async fn vanished(
        &self, stored: &HashMap<(NaiveDate, String), StoredRow>, seen: &HashSet<(NaiveDate, String)>, t: i64,
        out: &mut Pulled,
    ) -> Result<(), InfraError> {
        let zeroed: Vec<(Row, Option<String>)> = stored
            .iter()
            .filter(|(k, r)| {
                !seen.contains(*k) && (r.row.impressions > 0 || r.row.clicks > 0 || !r.row.spend.is_zero())
            })
            .map(|(_, r)| {
                (
                    Row { impressions: 0, clicks: 0, spend: rust_decimal::Decimal::ZERO, ..r.row.clone() },
                    r.retailer.clone(),
                )
            })
            .collect();
        if zeroed.is_empty() {
            return Ok(());
        }
        let dirty: Vec<_> = zeroed.iter().filter_map(|(r, m)| Some((m.clone()?, r.date))).collect();
        out.touched.extend(dirty.iter().cloned());
        self.store.mark_dirty(&dirty, t).await?;
        out.rows_written += zeroed.len();
        let now = DateTime::from_timestamp(t, 0).unwrap_or_else(Utc::now);
        self.store.put_rows(&zeroed, expiry(now)).await
    }

    async fn start_job(
        &self, acc: &mut AdAccount, since: NaiveDate, until: NaiveDate, t: i64, out: &mut Pulled,
    ) -> Result<Step, InfraError> {
        out.graph_calls += 1;
        match self.graph.start_job(&acc.id, since, until).await {
            Ok((run_id, _)) => {
                acc.pending.retain(|r| *r != (since, until));
                acc.job = Some((run_id, since, until, t));
                info!(account = %acc.id, %since, %until, "async report run started");
                Ok(Step::Continue)
            }
            Err(f) => Ok(Step::Stop(self.failed(acc, f, t).await?)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn poll_job(
        &self, acc: &mut AdAccount, run_id: &str, since: NaiveDate, until: NaiveDate, started: i64, t: i64,
        mappings: &HashMap<String, String>, unmapped: &mut HashSet<String>, deadline: DateTime<Utc>, out: &mut Pulled,
    ) -> Result<Step, InfraError> {
        let give_up = |acc: &mut AdAccount| {
            acc.job = None;
            push_halves_front(&mut acc.pending, since, until);
        };
        if t - started > self.settings.job_timeout_secs {
            warn!(account = %acc.id, "async report run never finished; given up");
            give_up(acc);
            return Ok(Step::Replanned);
        }
        out.graph_calls += 1;
        let state = match self.graph.job(run_id).await {
            Ok((s, _)) => s,
            Err(f) => return Ok(Step::Stop(self.failed(acc, f, t).await?)),
        };
        match state {
            JobState::Completed => {
                let stored = self.stored(&acc.id, since, until).await?;
                let mut seen = HashSet::new();
                let mut next: Option<String> = None;
                for _ in 0..MAX_PAGES {
                    if deadline - chrono::Utc::now() < chrono::Duration::seconds(RESERVE_SECS) {
                        return Ok(Step::Stop(Outcome::Later { until: t + 1 }));
                    }
                    out.graph_calls += 1;
                    match self.graph.job_rows(run_id, &acc.id, &acc.currency, next.as_deref()).await {
                        Ok((page, _)) => {
                            if page.next.is_some() && page.next == next {
                                return Ok(Step::Stop(Outcome::Failed { why: "paging_loop".into() }));
                            }
                            next = page.next.clone();
                            self.upsert(page, &acc.id, (since, until), &stored, &mut seen, mappings, unmapped, t, out)
                                .await?;
                            if next.is_none() {
                                self.vanished(&stored, &seen, t, out).await?;
                                acc.job = None;
                                acc.head_failures = 0;
                                acc.pulled_through = acc.pulled_through.max(Some(until));
                                return Ok(Step::Continue);
                            }
                        }
                        Err(f) => return Ok(Step::Stop(self.failed(acc, f, t).await?)),
                    }
                }
                Ok(Step::Stop(Outcome::Failed { why: "too_many_pages".into() }))
            }
            JobState::Failed | JobState::Skipped => {
                warn!(account = %acc.id, %since, %until, state = ?state, "async report run did not complete; its range is split and pulled again");
                give_up(acc);
                if (until - since).num_days() < 1 {
                    // A single day that Meta will not report: tried again (up to the head's limit).
                    return Ok(Step::Stop(Outcome::Failed { why: "report_run_failed".into() }));
                }
                Ok(Step::Replanned)
            }
            JobState::Running { .. } => Ok(Step::Stop(Outcome::Later { until: t + 30 })),
        }
    }

    async fn stored(
        &self, account: &str, since: NaiveDate, until: NaiveDate,
    ) -> Result<HashMap<(NaiveDate, String), StoredRow>, InfraError> {
        Ok(self
            .store
            .rows(account, since, until)
            .await?
            .into_iter()
            .map(|r| ((r.row.date, r.row.campaign_id.clone()), r))
            .collect())
    }

    /// Writes the page's new and restated rows (the retailers' days marked first), skips unchanged ones,
    /// and refuses rows of another account or outside the range asked for.
    #[allow(clippy::too_many_arguments)]
    async fn upsert(
        &self, page: Page, account: &str, (since, until): (NaiveDate, NaiveDate),
        stored: &HashMap<(NaiveDate, String), StoredRow>, seen: &mut HashSet<(NaiveDate, String)>,
        mappings: &HashMap<String, String>, unmapped: &mut HashSet<String>, t: i64, out: &mut Pulled,
    ) -> Result<(), InfraError> {
        out.rows_read += page.rows.len();
        out.rows_refused += page.refused.len();
        let now = DateTime::from_timestamp(t, 0).unwrap_or_else(Utc::now);
        let mut writes: Vec<(Row, Option<String>)> = Vec::new();
        let mut dirty: HashSet<(String, NaiveDate)> = HashSet::new();
        for row in page.rows {
            if row.account_id != account || row.date < since || row.date > until {
                out.rows_refused += 1;
                continue;
            }
            // A row seen twice in one answer counts once.
            if !seen.insert((row.date, row.campaign_id.clone())) {
                continue;
            }
            let retailer = mappings.get(&row.campaign_id).cloned();
            if retailer.is_none() {
                unmapped.insert(row.campaign_id.clone());
            }
            let old = stored.get(&(row.date, row.campaign_id.clone()));
            if old.is_some_and(|o| o.row.same_values(&row) && o.retailer == retailer) {
                continue;
            }
            if let Some(r) = &retailer {
                dirty.insert((r.clone(), row.date));
            }
            if let Some(prev) = old.and_then(|o| o.retailer.clone()) {
                dirty.insert((prev, row.date));
            }
            writes.push((row, retailer));
        }
        out.rows_written += writes.len();
        let dirty: Vec<_> = dirty.into_iter().collect();
        out.touched.extend(dirty.iter().cloned());
        self.store.mark_dirty(&dirty, t).await?;
        self.store.put_rows(&writes, expiry(now)).await
    }

    /// Throttling from the answer's usage: `Some` when the pull must stop now.
    async fn pace(&self, acc: &mut AdAccount, usage: &Usage, t: i64) -> Result<Option<Outcome>, InfraError> {
        if let Some(wait) = insights::pace(usage) {
            let until = t.saturating_add(wait);
            acc.throttle_until = Some(until);
            if usage.app_pct >= 95.0 {
                self.store.set_app_throttle(until).await?;
            }
            self.metrics.count("InsightsThrottled", 1, None);
            return Ok(Some(Outcome::Later { until }));
        }
        let ms = insights::slow_down_ms(usage);
        if self.settings.pace && ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Ok(None)
    }

    /// A failed call: throttled, token, or a failure kept for the next run.
    async fn failed(&self, acc: &mut AdAccount, f: Failure, t: i64) -> Result<Outcome, InfraError> {
        Ok(match f {
            Failure::Graph(e, usage) => match e.class {
                ErrorClass::Throttled { app_wide, regain_secs } => {
                    let wait = regain_secs.or(usage.regain_secs).unwrap_or(300).clamp(60, insights::MAX_WAIT_SECS);
                    let until = t.saturating_add(wait);
                    acc.throttle_until = Some(until);
                    if app_wide {
                        self.store.set_app_throttle(until).await?;
                    }
                    self.metrics.count("InsightsThrottled", 1, None);
                    Outcome::Later { until }
                }
                ErrorClass::Token => {
                    acc.status = "token_error".into();
                    acc.last_error = Some(format!("token ({})", e.code));
                    self.metrics.count("MetaTokenErrors", 1, None);
                    warn!(account = %acc.id, "Meta refused the token; this account's pulls stop until it is resumed");
                    Outcome::TokenError
                }
                _ => Outcome::Failed { why: format!("graph_error_{}_{}", e.code, e.subcode.unwrap_or(0)) },
            },
            Failure::Transport => Outcome::Failed { why: "transport".into() },
            Failure::Unreadable => Outcome::Failed { why: "unreadable_answer".into() },
        })
    }
}

/// Recomputes a retailer's rollups of one day from its rows (all accounts, per currency); `true` if they
/// changed (an unchanged day costs no write).
pub async fn recompute(
    store: &DynamoInsights, retailer: &str, date: NaiveDate, now: DateTime<Utc>,
) -> Result<bool, InfraError> {
    let rows = store.retailer_rows(retailer, date, date).await?;
    let mut by_currency: HashMap<String, Rollup> = HashMap::new();
    for r in rows.iter().filter(|r| r.date == date) {
        by_currency.entry(r.currency.clone()).or_default().add(r);
    }
    store.put_rollups(retailer, date, &by_currency, expiry(now)).await
}

/// Maps `campaign` to `retailer` (the newest mapping wins, whatever order they arrive in) and
/// re-attributes its stored rows: only their retailer changes, their values stay the latest pull's. The
/// days of the old and the new retailer are marked, then recomputed.
pub async fn map_campaign(
    store: &DynamoInsights, campaign: &str, account: &str, retailer: &str, source: &str, now: DateTime<Utc>,
) -> Result<usize, InfraError> {
    if !store.set_mapping(campaign, account, retailer, source, now.timestamp(), false).await? {
        return Ok(0); // a newer mapping stands
    }
    let since = now.date_naive() - chrono::Duration::days(1200);
    let until = now.date_naive() + chrono::Duration::days(2);
    let rows: Vec<StoredRow> = store
        .rows(account, since, until)
        .await?
        .into_iter()
        .filter(|r| r.row.campaign_id == campaign && r.retailer.as_deref() != Some(retailer))
        .collect();
    let mut dirty = HashSet::new();
    for r in &rows {
        if let Some(prev) = &r.retailer {
            dirty.insert((prev.clone(), r.row.date));
        }
        dirty.insert((retailer.to_owned(), r.row.date));
    }
    let marks: Vec<_> = dirty.iter().cloned().collect();
    store.mark_dirty(&marks, now.timestamp()).await?;
    for r in &rows {
        store.set_row_retailer(&r.row, retailer).await?;
    }
    for (m, d) in &dirty {
        recompute(store, m, *d, now).await?;
    }
    store.forget_unmapped(campaign).await?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_run_is_the_window_in_weeks_and_catches_up_what_a_stopped_account_missed() {
        let p = plan(d("2026-12-01"), 28, Some(d("2026-11-30")));
        assert_eq!(p.first(), Some(&(d("2026-11-04"), d("2026-11-10"))));
        assert_eq!(p.last(), Some(&(d("2026-11-25"), d("2026-12-01"))));
        assert_eq!(p.len(), 4);
        // Stopped since early October: from the day after, not just the last 28 days.
        let p = plan(d("2026-12-01"), 28, Some(d("2026-10-10")));
        assert_eq!(p.first().unwrap().0, d("2026-10-11"));
        // But never more than 90 days back.
        let p = plan(d("2026-12-01"), 28, Some(d("2025-01-01")));
        assert_eq!(p.first().unwrap().0, d("2026-09-02"));
        let days: i64 = p.iter().map(|(a, b)| (*b - *a).num_days() + 1).sum();
        assert_eq!(days, 91, "each day once");
    }
}
