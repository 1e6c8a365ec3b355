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

impl<M: Metrics> Puller<'_, M> {
    /// Pulls `account` until done, throttled, or `deadline` is near (`now` is the injected clock's time).
    pub async fn pull(&self, account: &str, now: DateTime<Utc>, deadline: DateTime<Utc>) -> Result<Pulled, InfraError> {
        let mut out = Pulled::default();
        let t = now.timestamp();
        let Some(mut acc) = self.store.account(account).await? else {
            out.outcome = Outcome::Skipped;
            return Ok(out);
        };
        if acc.status != "active" {
            out.outcome = if acc.status == "token_error" { Outcome::TokenError } else { Outcome::Skipped };
            return Ok(out);
        }
        let app = self.store.app_throttle().await?.filter(|u| *u > t);
        if let Some(until) = app.or(acc.throttle_until.filter(|u| *u > t)) {
            out.outcome = Outcome::Later { until };
            return Ok(out);
        }
        if !self.store.lease(account, t, t + self.settings.lease_secs).await? {
            out.outcome = Outcome::Busy;
            return Ok(out);
        }
        let result = self.run(&mut acc, now, deadline, &mut out).await;
        acc.lease_until = None;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                acc.last_error = Some("storage".into());
                self.store.save_account(&acc).await?;
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
        self.store.save_account(&acc).await?;
        out.outcome = outcome;
        Ok(out)
    }

    async fn run(
        &self, acc: &mut AdAccount, now: DateTime<Utc>, deadline: DateTime<Utc>, out: &mut Pulled,
    ) -> Result<Outcome, InfraError> {
        let t = now.timestamp();
        if acc.currency.is_empty() {
            out.graph_calls += 1;
            match self.graph.account(&acc.id).await {
                Ok((info, _)) => {
                    acc.currency = info.currency;
                    acc.offset_hours = info.offset_hours;
                    acc.timezone_name = info.timezone_name;
                }
                Err(f) => return self.failed(acc, f, None, t).await,
            }
        }
        if acc.pending.is_empty() && acc.job.is_none() {
            let today = insights::account_today(now, acc.offset_hours);
            acc.pending = vec![insights::window(today, self.settings.restatement_days)];
        }
        let mappings = self.store.mappings().await?;
        let mut dirty: HashSet<(String, NaiveDate)> = HashSet::new();
        let mut unmapped: HashSet<String> = HashSet::new();
        let result = loop {
            if deadline - chrono::Utc::now() < chrono::Duration::seconds(20) {
                break Outcome::Later { until: t };
            }
            if let Some((run_id, since, until, started)) = acc.job.clone() {
                match self
                    .poll_job(acc, &run_id, since, until, started, t, &mappings, &mut dirty, &mut unmapped, out)
                    .await?
                {
                    Step::Continue | Step::Replanned => continue,
                    Step::Stop(o) => break o,
                }
            }
            let Some((since, until)) = acc.pending.first().copied() else { break Outcome::Done };
            if (until - since).num_days() + 1 > self.settings.sync_max_days {
                match self.start_job(acc, since, until, t, out).await? {
                    Step::Continue | Step::Replanned => continue,
                    Step::Stop(o) => break o,
                }
            }
            match self.pull_sync(acc, since, until, t, &mappings, &mut dirty, &mut unmapped, out).await? {
                Step::Continue => {
                    acc.pending.remove(0);
                }
                Step::Replanned => {}
                Step::Stop(o) => break o,
            }
        };
        self.finish(&dirty, &unmapped, acc, now, out).await?;
        Ok(result)
    }

    /// Rollups of the retailers' changed days, and the unmapped campaigns noted.
    async fn finish(
        &self, dirty: &HashSet<(String, NaiveDate)>, unmapped: &HashSet<String>, acc: &AdAccount, now: DateTime<Utc>,
        out: &mut Pulled,
    ) -> Result<(), InfraError> {
        for (retailer, date) in dirty {
            recompute(self.store, retailer, *date, now).await?;
            out.rollups += 1;
        }
        if !unmapped.is_empty() {
            let list: Vec<_> = unmapped.iter().map(|c| (c.clone(), acc.id.clone())).collect();
            self.store.note_unmapped(&list, now.timestamp()).await?;
            out.unmapped = list.len();
            self.metrics.count("UnmappedCampaigns", list.len() as u64, None);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pull_sync(
        &self, acc: &mut AdAccount, since: NaiveDate, until: NaiveDate, t: i64, mappings: &HashMap<String, String>,
        dirty: &mut HashSet<(String, NaiveDate)>, unmapped: &mut HashSet<String>, out: &mut Pulled,
    ) -> Result<Step, InfraError> {
        let stored = self.stored(&acc.id, since, until).await?;
        let mut next: Option<String> = None;
        loop {
            out.graph_calls += 1;
            let answer = self.graph.insights(&acc.id, &acc.currency, since, until, next.as_deref()).await;
            match answer {
                Ok((page, usage)) => {
                    next = page.next.clone();
                    self.upsert(page, &stored, mappings, dirty, unmapped, t, out).await?;
                    if let Some(stop) = self.pace(acc, &usage, t).await? {
                        // Resume this range from its start (upserts are idempotent).
                        return Ok(Step::Stop(stop));
                    }
                    if next.is_none() {
                        return Ok(Step::Continue);
                    }
                }
                // Meta asks for less: the range in halves, and a single day as an async report run.
                Err(Failure::Graph(e, _)) if e.class == ErrorClass::ReduceData => {
                    return match insights::split(since, until) {
                        Some((a, b)) => {
                            acc.pending.remove(0);
                            acc.pending.insert(0, b);
                            acc.pending.insert(0, a);
                            Ok(Step::Replanned)
                        }
                        None => match self.start_job(acc, since, until, t, out).await? {
                            Step::Continue => Ok(Step::Replanned),
                            other => Ok(other),
                        },
                    };
                }
                Err(f) => return Ok(Step::Stop(self.failed(acc, f, Some((since, until)), t).await?)),
            }
        }
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
            Err(f) => Ok(Step::Stop(self.failed(acc, f, None, t).await?)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn poll_job(
        &self, acc: &mut AdAccount, run_id: &str, since: NaiveDate, until: NaiveDate, started: i64, t: i64,
        mappings: &HashMap<String, String>, dirty: &mut HashSet<(String, NaiveDate)>, unmapped: &mut HashSet<String>,
        out: &mut Pulled,
    ) -> Result<Step, InfraError> {
        out.graph_calls += 1;
        let state = match self.graph.job(run_id).await {
            Ok((s, _)) => s,
            Err(f) => return Ok(Step::Stop(self.failed(acc, f, None, t).await?)),
        };
        let give_up = |acc: &mut AdAccount| {
            acc.job = None;
            match insights::split(since, until) {
                Some((a, b)) => {
                    acc.pending.insert(0, b);
                    acc.pending.insert(0, a);
                }
                None => acc.pending.insert(0, (since, until)),
            }
        };
        match state {
            JobState::Completed => {
                let stored = self.stored(&acc.id, since, until).await?;
                let mut next: Option<String> = None;
                loop {
                    out.graph_calls += 1;
                    match self.graph.job_rows(run_id, &acc.id, &acc.currency, next.as_deref()).await {
                        Ok((page, _)) => {
                            next = page.next.clone();
                            self.upsert(page, &stored, mappings, dirty, unmapped, t, out).await?;
                            if next.is_none() {
                                break;
                            }
                        }
                        Err(f) => return Ok(Step::Stop(self.failed(acc, f, None, t).await?)),
                    }
                }
                acc.job = None;
                Ok(Step::Continue)
            }
            JobState::Failed | JobState::Skipped => {
                warn!(account = %acc.id, %since, %until, state = ?state, "async report run did not complete; its range is split and pulled again");
                give_up(acc);
                if (until - since).num_days() < 1 {
                    // A single day that Meta will not report: tried again at the next run.
                    return Ok(Step::Stop(Outcome::Failed { why: "report_run_failed".into() }));
                }
                Ok(Step::Continue)
            }
            JobState::Running { .. } if t - started > self.settings.job_timeout_secs => {
                warn!(account = %acc.id, "async report run never finished; given up");
                give_up(acc);
                Ok(Step::Continue)
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

    #[allow(clippy::too_many_arguments)]
    async fn upsert(
        &self, page: Page, stored: &HashMap<(NaiveDate, String), StoredRow>, mappings: &HashMap<String, String>,
        dirty: &mut HashSet<(String, NaiveDate)>, unmapped: &mut HashSet<String>, t: i64, out: &mut Pulled,
    ) -> Result<(), InfraError> {
        out.rows_read += page.rows.len();
        out.rows_refused += page.refused.len();
        let now = DateTime::from_timestamp(t, 0).unwrap_or_else(Utc::now);
        let mut writes: Vec<(Row, Option<String>)> = Vec::new();
        for row in page.rows {
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
        self.store.put_rows(&writes, expiry(now)).await
    }

    /// Throttling from the answer's usage: `Some` when the pull must stop now.
    async fn pace(&self, acc: &mut AdAccount, usage: &Usage, t: i64) -> Result<Option<Outcome>, InfraError> {
        if let Some(wait) = insights::pace(usage) {
            acc.throttle_until = Some(t + wait);
            if usage.app_pct >= 95.0 {
                self.store.set_app_throttle(t + wait).await?;
            }
            self.metrics.count("InsightsThrottled", 1, None);
            return Ok(Some(Outcome::Later { until: t + wait }));
        }
        let ms = insights::slow_down_ms(usage);
        if self.settings.pace && ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Ok(None)
    }

    /// A failed call: throttled, token, or a failure kept for the next run.
    async fn failed(
        &self, acc: &mut AdAccount, f: Failure, _range: Option<(NaiveDate, NaiveDate)>, t: i64,
    ) -> Result<Outcome, InfraError> {
        Ok(match f {
            Failure::Graph(e, usage) => match e.class {
                ErrorClass::Throttled { app_wide, regain_secs } => {
                    let wait = regain_secs.or(usage.regain_secs).unwrap_or(300).max(60);
                    acc.throttle_until = Some(t + wait);
                    if app_wide {
                        self.store.set_app_throttle(t + wait).await?;
                    }
                    self.metrics.count("InsightsThrottled", 1, None);
                    Outcome::Later { until: t + wait }
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

/// Recomputes a retailer's rollups of one day from its rows (all accounts, per currency).
pub async fn recompute(
    store: &DynamoInsights, retailer: &str, date: NaiveDate, now: DateTime<Utc>,
) -> Result<(), InfraError> {
    let rows = store.retailer_rows(retailer, date, date).await?;
    let mut by_currency: HashMap<String, Rollup> = HashMap::new();
    for r in rows.iter().filter(|r| r.date == date) {
        by_currency.entry(r.currency.clone()).or_default().add(r);
    }
    store.put_rollups(retailer, date, &by_currency, expiry(now)).await
}

/// Maps `campaign` to `retailer` and re-attributes its stored rows (their rollups, old and new, follow).
pub async fn map_campaign(
    store: &DynamoInsights, campaign: &str, account: &str, retailer: &str, source: &str, now: DateTime<Utc>,
) -> Result<usize, InfraError> {
    store.set_mapping(campaign, account, retailer, source, now.timestamp(), false).await?;
    let since = now.date_naive() - chrono::Duration::days(1200);
    let until = now.date_naive() + chrono::Duration::days(2);
    let rows: Vec<StoredRow> =
        store.rows(account, since, until).await?.into_iter().filter(|r| r.row.campaign_id == campaign).collect();
    let mut dirty = HashSet::new();
    let mut writes = Vec::new();
    for r in rows {
        if r.retailer.as_deref() == Some(retailer) {
            continue;
        }
        if let Some(prev) = &r.retailer {
            dirty.insert((prev.clone(), r.row.date));
        }
        dirty.insert((retailer.to_owned(), r.row.date));
        writes.push((r.row, Some(retailer.to_owned())));
    }
    let n = writes.len();
    store.put_rows(&writes, expiry(now)).await?;
    for (m, d) in &dirty {
        recompute(store, m, *d, now).await?;
    }
    store.forget_unmapped(campaign).await?;
    Ok(n)
}
