//! The retention sweep: enforces every deadline DynamoDB TTL cannot (or not in time).
//!
//! Work is found on each table's sparse `due` index, one partition per UTC day and shard
//! (`retention::due_bucket`), with `expires_at <= now`: a run reads the days since the last completed
//! run, so its cost follows the work due, never the table size. What it does per item comes from the
//! item's stamped action and its kind ([`inventory`]):
//! - `delete`: batched deletes (BatchWriteItem, unprocessed items retried);
//! - `anonymise`: the kind's personal attributes and the deadline are removed, conditional on the
//!   deadline still being due;
//! - a conversation: deleted only if still due (a new message moves its deadline), then the messages it
//!   held up to its last interaction;
//! - a terminated merchant's contract: the merchant's order metadata is deleted (contract end);
//! - S3 exports past their window are deleted; open data-subject requests near their deadline counted.
//!
//! Resumable: after each page that changed anything, the position (day, table, shard, page) is saved, and
//! a run that reaches its time limit stops and saves; the next run starts there. Re-running changes nothing:
//! deleted items are gone from the index, anonymised ones left it, conditional writes skip moved deadlines.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::audit::NewEntry;
use crate::domain::data_inventory::{self, Store};
pub use crate::domain::messages::Continue;
use crate::domain::retention::{self, DataClass, Mechanism, DUE_SHARDS};
use crate::ports::{AuditLog, Checkpoints, DataRequests, DataStore, DueEntry, InfraError, ItemKey, ObjectStore};

/// The checkpoint's name.
pub const CHECKPOINT: &str = "retention-sweep";
/// Where data exports live in the exports bucket.
pub const EXPORT_PREFIX: &str = "exports/";
/// Open requests whose deadline is this close are reported as due soon (and alarmed on).
pub const REQUEST_WARNING_DAYS: i64 = 7;

#[derive(Debug, Clone)]
pub struct Options {
    /// Report what would be done; write nothing (not even the checkpoint).
    pub dry_run: bool,
    /// With no checkpoint yet, how many days back the first run looks.
    pub lookback_days: u32,
    /// Stop (and save the position) once the clock passes this: the invocation's deadline minus a margin.
    pub stop_at: DateTime<Utc>,
    /// Stop abruptly after this many pages with work, *before* saving their position (tests and the
    /// benchmark use it to simulate a crash).
    pub crash_after_pages: Option<u64>,
    /// Save the position after every this many pages with work (and always when stopping). A crash redoes
    /// at most this many pages, which costs only their queries: what they deleted is off the index.
    pub checkpoint_every: u64,
}

/// The functions' default: one checkpoint write per 20 pages of work.
pub const CHECKPOINT_EVERY: u64 = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    /// Every due bucket of this day and earlier was swept to its end.
    swept_through: Option<NaiveDate>,
    /// Where an unfinished run stopped.
    cursor: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    day: NaiveDate,
    store: Store,
    shard: u32,
    page: Option<String>,
}

/// What a run did (or, dry, would do). No personal data: counts, days and durations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub now: DateTime<Utc>,
    pub from_day: Option<NaiveDate>,
    pub to_day: Option<NaiveDate>,
    /// False if the run stopped early (time limit or crash); the next run continues.
    pub complete: bool,
    /// Items per data class and action.
    pub actions: BTreeMap<String, BTreeMap<String, u64>>,
    /// Index entries and items read to find and do the work.
    pub items_read: u64,
    pub items_changed: u64,
    pub buckets_read: u64,
    /// The longest any found item had been past its deadline.
    pub oldest_overdue_seconds: Option<i64>,
    /// The same, over items TTL should already have removed: how late TTL is running.
    pub ttl_lag_seconds: Option<i64>,
    pub exports_deleted: u64,
    pub requests_open: u64,
    pub requests_due_soon: u64,
    pub requests_overdue: u64,
    /// Items already handled (a conversation's messages are also on the index themselves).
    #[serde(skip)]
    counted: std::collections::BTreeSet<(Store, ItemKey)>,
}

impl Report {
    fn count(&mut self, class: &str, action: &str, n: u64) {
        if n > 0 {
            *self.actions.entry(class.to_owned()).or_default().entry(action.to_owned()).or_default() += n;
        }
    }
}

/// Progress for an operator's progress bar: buckets done of buckets to read.
pub trait Progress: Send + Sync {
    fn buckets(&self, done: u64, total: u64);
}

impl Progress for () {
    fn buckets(&self, _: u64, _: u64) {}
}

pub struct Sweep<'a, D, C, O, R, A> {
    pub data: &'a D,
    pub checkpoints: &'a C,
    pub exports: Option<&'a O>,
    pub requests: &'a R,
    pub audit: &'a A,
}

fn class_name(class: DataClass) -> String {
    serde_json::to_value(class).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl<D: DataStore, C: Checkpoints, O: ObjectStore, R: DataRequests, A: AuditLog> Sweep<'_, D, C, O, R, A> {
    /// One run at `now`. `clock` tells the time during the run (for the stop deadline).
    pub async fn run(
        &self, now: DateTime<Utc>, clock: &impl crate::ports::Clock, opts: &Options, progress: &impl Progress,
    ) -> Result<Report, InfraError> {
        let mut report = Report { dry_run: opts.dry_run, now, complete: true, ..Report::default() };
        let cp: Checkpoint =
            self.checkpoints.load(CHECKPOINT).await?.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        let today = now.date_naive();
        let from = match (&cp.cursor, cp.swept_through) {
            (Some(c), _) => c.day,
            (None, Some(d)) => d.succ_opt().unwrap_or(d),
            (None, None) => today - Duration::days(i64::from(opts.lookback_days)),
        }
        .min(today);
        report.from_day = Some(from);
        report.to_day = Some(today);

        let stores = self.data.stores();
        let days = (today - from).num_days() as u64 + 1;
        let total = days * stores.len() as u64 * u64::from(DUE_SHARDS);
        let mut done = 0;
        let mut pages_with_work = 0;
        let mut day = from;
        while day <= today {
            for (si, store) in stores.iter().copied().enumerate() {
                for shard in 0..DUE_SHARDS {
                    // Skip what the unfinished run already did.
                    let mut page = None;
                    if let Some(c) = cp.cursor.as_ref().filter(|c| c.day == day) {
                        let at = stores.iter().position(|s| *s == c.store).unwrap_or(0);
                        if (si, shard) < (at, c.shard) {
                            done += 1;
                            continue;
                        }
                        if (si, shard) == (at, c.shard) {
                            page = c.page.clone();
                        }
                    }
                    let bucket = format!("{}#{shard}", day.format("%Y-%m-%d"));
                    loop {
                        if clock.now() >= opts.stop_at {
                            report.complete = false;
                            self.save(
                                opts,
                                &Checkpoint {
                                    swept_through: cp.swept_through,
                                    cursor: Some(Cursor { day, store, shard, page }),
                                },
                            )
                            .await?;
                            return self.finish(report, now, opts).await;
                        }
                        let due = self.data.due(store, &bucket, now.timestamp(), page.as_deref()).await?;
                        report.items_read += due.items.len() as u64;
                        let changed = self.apply(store, &due.items, now, opts.dry_run, &mut report).await?;
                        page = due.next;
                        if changed > 0 {
                            pages_with_work += 1;
                            if opts.crash_after_pages.is_some_and(|n| pages_with_work >= n) {
                                report.complete = false;
                                return Ok(report);
                            }
                        }
                        if changed > 0 && pages_with_work % opts.checkpoint_every.max(1) == 0 {
                            let next = match &page {
                                Some(p) => Cursor { day, store, shard, page: Some(p.clone()) },
                                None => next_position(day, si, shard, &stores),
                            };
                            self.save(opts, &Checkpoint { swept_through: cp.swept_through, cursor: Some(next) })
                                .await?;
                        }
                        if page.is_none() {
                            break;
                        }
                    }
                    report.buckets_read += 1;
                    done += 1;
                    progress.buckets(done, total);
                }
            }
            day = match day.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        // Today's buckets hold deadlines later today: the next run reads today again.
        self.save(opts, &Checkpoint { swept_through: today.pred_opt(), cursor: None }).await?;
        self.finish(report, now, opts).await
    }

    async fn save(&self, opts: &Options, cp: &Checkpoint) -> Result<(), InfraError> {
        if opts.dry_run {
            return Ok(());
        }
        let json = serde_json::to_string(cp).unwrap_or_default();
        self.checkpoints.save(CHECKPOINT, &json).await
    }

    /// Exports past their window, the request deadline counts, and the report in the audit log.
    async fn finish(&self, mut report: Report, now: DateTime<Utc>, opts: &Options) -> Result<Report, InfraError> {
        if let Some(objects) = self.exports {
            let cutoff = retention::deadline(DataClass::DataExport, now).map(|d| now - (d - now)).unwrap_or(now);
            for (key, modified) in objects.list(EXPORT_PREFIX).await? {
                if modified <= cutoff {
                    if !opts.dry_run {
                        objects.delete(&key).await?;
                    }
                    report.exports_deleted += 1;
                }
            }
            report.count(&class_name(DataClass::DataExport), "delete", report.exports_deleted);
        }
        let open = self.requests.open_requests().await?;
        report.requests_open = open.len() as u64;
        report.requests_overdue = open.iter().filter(|(_, by)| *by <= now).count() as u64;
        report.requests_due_soon =
            open.iter().filter(|(_, by)| *by > now && *by <= now + Duration::days(REQUEST_WARNING_DAYS)).count() as u64;
        let action = if opts.dry_run { "sweep.dry_run" } else { "sweep.run" };
        let detail = serde_json::to_value(&report).unwrap_or_default();
        self.audit.append(NewEntry::new("retention-sweep", action, None, &detail), now).await?;
        Ok(report)
    }

    /// Does (or counts) what the due items need. Returns how many items changed.
    async fn apply(
        &self, store: Store, items: &[DueEntry], now: DateTime<Utc>, dry: bool, report: &mut Report,
    ) -> Result<u64, InfraError> {
        let t = now.timestamp();
        let mut batch: Vec<(ItemKey, String)> = Vec::new();
        let mut changed = 0;
        if !dry {
            // Deleted items leave the index, so only this page can show one twice.
            report.counted.clear();
        }
        for e in items {
            if !report.counted.insert((store, e.key.clone())) {
                continue;
            }
            let kind = data_inventory::kind_of(store, &e.key.pk, e.key.sk.as_deref());
            let class = kind.map_or_else(|| "unclassified".to_owned(), |k| class_name(k.class));
            // The audit log is append-only for every function (IAM denies deleting in its partition, in
            // batches too): its entries age out through DynamoDB TTL alone, and are only reported here.
            if kind.is_some_and(|k| k.name == "audit_entry") {
                report.count(&class, "left_to_ttl", 1);
                continue;
            }
            let overdue = t - e.expires_at;
            report.oldest_overdue_seconds = Some(report.oldest_overdue_seconds.unwrap_or(0).max(overdue));
            let ttl_enforced = kind.is_none_or(|k| retention::rule(k.class).mechanism == Mechanism::DynamoTtlAndSweep);
            if e.action == "delete" && ttl_enforced {
                report.ttl_lag_seconds = Some(report.ttl_lag_seconds.unwrap_or(0).max(overdue));
            }
            match (kind.map(|k| k.name), e.action.as_str()) {
                (Some("conversation"), _) => {
                    let n = self.conversation(&e.key, t, dry, report).await?;
                    report.count(&class, "delete", n);
                    changed += n;
                }
                (Some("merchant_contract"), _) => {
                    let n = self.contract_end(&e.key, t, dry, report).await?;
                    report.count(&class, "delete", n);
                    changed += n;
                }
                (_, "anonymise") => {
                    let fields = kind.map_or(&[][..], |k| k.personal);
                    let done = dry || self.data.remove_fields(store, &e.key, fields, Some(t)).await?;
                    report.count(&class, "anonymise", u64::from(done));
                    changed += u64::from(done);
                }
                (_, "delete") => batch.push((e.key.clone(), class)),
                // A deadline that is not a deletion (answer-by) is reported, never acted on.
                _ => report.count(&class, &e.action, 1),
            }
        }
        if !batch.is_empty() {
            if !dry {
                let keys: Vec<ItemKey> = batch.iter().map(|(k, _)| k.clone()).collect();
                self.data.delete(store, &keys).await?;
            }
            for (_, class) in &batch {
                report.count(class, "delete", 1);
            }
            changed += batch.len() as u64;
        }
        report.items_changed += changed;
        Ok(changed)
    }

    /// A conversation past its deadline: the conversation, if still due, then every message and refusal
    /// it held up to its last interaction (later ones belong to a new conversation).
    async fn conversation(&self, key: &ItemKey, now: i64, dry: bool, report: &mut Report) -> Result<u64, InfraError> {
        let last = if dry {
            Some(i64::MAX)
        } else {
            self.data
                .delete_if_due(Store::Messaging, key, now)
                .await?
                .map(|old| old.get("last_interaction_at").and_then(|v| v.as_i64()).unwrap_or(i64::MAX))
        };
        let Some(last) = last else { return Ok(0) };
        let held = self.data.partition(Store::Messaging, &key.pk, "").await?;
        report.items_read += held.len() as u64;
        let keys: Vec<ItemKey> = held
            .into_iter()
            .filter(|(k, _)| k.sk.as_deref() != Some("meta"))
            .filter(|(_, a)| {
                a.get("at")
                    .and_then(|v| v.as_str())
                    .and_then(|at| at.parse::<DateTime<Utc>>().ok())
                    .is_none_or(|at| at.timestamp() <= last)
            })
            .map(|(k, _)| k)
            .filter(|k| report.counted.insert((Store::Messaging, k.clone())))
            .collect();
        if !dry {
            self.data.delete(Store::Messaging, &keys).await?;
        }
        Ok(1 + keys.len() as u64)
    }

    /// A merchant whose contract ended: its order metadata goes, then the contract marker.
    async fn contract_end(&self, key: &ItemKey, now: i64, dry: bool, report: &mut Report) -> Result<u64, InfraError> {
        let mut n = 0;
        if self.data.stores().contains(&Store::Orders) {
            let orders = self.data.partition(Store::Orders, &key.pk, "order#").await?;
            report.items_read += orders.len() as u64;
            let keys: Vec<ItemKey> = orders.into_iter().map(|(k, _)| k).collect();
            if !dry {
                self.data.delete(Store::Orders, &keys).await?;
            }
            n += keys.len() as u64;
        }
        let gone = dry || self.data.delete_if_due(Store::Messaging, key, now).await?.is_some();
        Ok(n + u64::from(gone))
    }
}

/// The position after bucket (`day`, store index `si`, `shard`).
fn next_position(day: NaiveDate, si: usize, shard: u32, stores: &[Store]) -> Cursor {
    if shard + 1 < DUE_SHARDS {
        return Cursor { day, store: stores[si], shard: shard + 1, page: None };
    }
    if si + 1 < stores.len() {
        return Cursor { day, store: stores[si + 1], shard: 0, page: None };
    }
    Cursor { day: day.succ_opt().unwrap_or(day), store: stores[0], shard: 0, page: None }
}

/// Time a run keeps back from its deadline to save the position and queue its continuation.
pub const MARGIN: Duration = Duration::seconds(20);

/// One run as the function and the operator CLI start it: it stops by `deadline` (minus [`MARGIN`]);
/// one that did not finish (and was not dry) queues a [`Continue`] on `queue`, whose delivery runs it on
/// from its checkpoint. Its report goes out as metrics.
#[allow(clippy::too_many_arguments)]
pub async fn run_and_continue<D, C, O, R, A>(
    sweep: &Sweep<'_, D, C, O, R, A>, clock: &impl crate::ports::Clock, queue: &impl crate::ports::Queue,
    metrics: &impl crate::ports::Metrics, dry_run: bool, lookback_days: u32, deadline: DateTime<Utc>,
    progress: &impl Progress,
) -> Result<Report, InfraError>
where
    D: DataStore,
    C: Checkpoints,
    O: ObjectStore,
    R: DataRequests,
    A: AuditLog,
{
    let now = clock.now();
    let opts = Options {
        dry_run,
        lookback_days,
        stop_at: deadline - MARGIN,
        crash_after_pages: None,
        checkpoint_every: CHECKPOINT_EVERY,
    };
    let report = sweep.run(now, clock, &opts, progress).await?;
    publish(&report, metrics);
    if !report.complete && !dry_run {
        let id = format!("sweep-{}", now.timestamp());
        let msg = crate::domain::envelope::Envelope::new(id.clone(), now, id, Continue { started_at: now });
        queue.send(&msg.encode()).await?;
    }
    Ok(report)
}

/// The report as metrics (`sweep_oldest_overdue_seconds` is alarmed above 24 hours; `data_requests_due_soon`
/// and `data_requests_overdue` alarm before a request's deadline is missed) and one log line.
pub fn publish(r: &Report, m: &impl crate::ports::Metrics) {
    let sum = |action: &str| -> u64 { r.actions.values().filter_map(|a| a.get(action)).sum() };
    let secs = |s: Option<i64>| s.unwrap_or(0).max(0) as u64;
    m.count("sweep_items_deleted", sum("delete"), None);
    m.count("sweep_items_anonymised", sum("anonymise"), None);
    m.count("sweep_items_read", r.items_read, None);
    m.count("sweep_oldest_overdue_seconds", secs(r.oldest_overdue_seconds), None);
    m.count("sweep_ttl_lag_seconds", secs(r.ttl_lag_seconds), None);
    m.count("sweep_incomplete", u64::from(!r.complete), None);
    m.count("data_requests_overdue", r.requests_overdue, None);
    m.count("data_requests_due_soon", r.requests_due_soon, None);
    tracing::info!(
        dry_run = r.dry_run,
        complete = r.complete,
        changed = r.items_changed,
        read = r.items_read,
        buckets = r.buckets_read,
        oldest_overdue_seconds = r.oldest_overdue_seconds,
        requests_overdue = r.requests_overdue,
        "retention sweep run"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{
        FixedClock, MemoryAudit, MemoryCheckpoints, MemoryData, MemoryObjects, MemoryRequests,
    };
    use crate::domain::audit;
    use crate::ports::{Attrs, AuditLog};
    use chrono::TimeZone;
    use proptest::prelude::*;

    const DAY: i64 = 86_400;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap()
    }

    /// One generated item: where it is, its stamp, and the deadline that governs it (a message goes with
    /// its conversation, an order with its merchant's contract).
    #[derive(Debug, Clone)]
    struct Seeded {
        store: Store,
        key: ItemKey,
        governing: i64,
        anonymise: bool,
    }

    fn attrs(pairs: &[(&str, serde_json::Value)]) -> Attrs {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    fn stamped(key: &str, due: i64, action: &str, extra: &[(&str, serde_json::Value)]) -> Attrs {
        let bucket = retention::due_bucket(DateTime::from_timestamp(due, 0).unwrap(), key);
        let mut a = attrs(&[
            ("expires_at", due.into()),
            ("due_bucket", bucket.into()),
            ("due_action", action.into()),
            ("subject", "ab12".into()),
        ]);
        a.extend(attrs(extra));
        a
    }

    /// Seeds item `i` of shape `shape` due `offset` seconds after t0.
    fn seed(data: &MemoryData, i: usize, shape: u8, offset: i64) -> Vec<Seeded> {
        let due = t0().timestamp() + offset;
        let k = |pk: String, sk: Option<&str>| ItemKey { pk, sk: sk.map(str::to_owned) };
        let mut out = Vec::new();
        let mut put = |store, key: ItemKey, a: Attrs, governing, anonymise| {
            data.put(store, key.clone(), a);
            out.push(Seeded { store, key, governing, anonymise });
        };
        match shape % 6 {
            0 => put(
                Store::Payments,
                k(format!("pi_{i}"), None),
                stamped(&format!("pi_{i}"), due, "delete", &[("amount", 100.into())]),
                due,
                false,
            ),
            1 => {
                let pk = format!("conv#m#{i}");
                let last = due - 90 * DAY;
                put(
                    Store::Messaging,
                    k(pk.clone(), Some("meta")),
                    stamped(&pk, due, "delete", &[("last_interaction_at", last.into())]),
                    due,
                    false,
                );
                for j in 0..2 {
                    let at = DateTime::from_timestamp(last - j * DAY, 0).unwrap().to_rfc3339();
                    let day_end = (due.div_euclid(DAY) + 1) * DAY - 1;
                    put(
                        Store::Messaging,
                        k(pk.clone(), Some(&format!("msg#{at}#w{j}"))),
                        stamped(&pk, day_end, "delete", &[("at", at.clone().into()), ("text", "hi".into())]),
                        due,
                        false,
                    );
                }
            }
            2 => put(
                Store::Messaging,
                k(format!("subject#{i}"), Some("consent#2026#e")),
                stamped(&format!("subject#{i}"), due, "delete", &[]),
                due,
                false,
            ),
            3 => put(
                Store::Orders,
                k("merchant#live".into(), Some(&format!("order#bol#{i}"))),
                stamped(&format!("o{i}"), due, "anonymise", &[("buyer_name", "Ann".into()), ("total", 5.into())]),
                due,
                true,
            ),
            4 => {
                let pk = format!("merchant#gone{i}");
                put(Store::Messaging, k(pk.clone(), Some("contract")), stamped(&pk, due, "delete", &[]), due, false);
                let later = due + 200 * DAY;
                put(
                    Store::Orders,
                    k(pk.clone(), Some(&format!("order#amazon#{i}"))),
                    stamped(&format!("o{i}"), later, "anonymise", &[("buyer_email", "a@b".into())]),
                    due,
                    false,
                );
            }
            _ => put(
                Store::DataRequests,
                k(format!("dsr#{i}"), Some("request")),
                stamped(&format!("dsr#{i}"), due, "delete", &[]),
                due,
                false,
            ),
        }
        out
    }

    struct World {
        data: MemoryData,
        checkpoints: MemoryCheckpoints,
        objects: MemoryObjects,
        requests: MemoryRequests,
        audit: MemoryAudit,
    }

    impl World {
        fn new(page_size: usize) -> Self {
            Self {
                data: MemoryData::new(Store::ALL.to_vec(), page_size),
                checkpoints: MemoryCheckpoints::default(),
                objects: MemoryObjects::default(),
                requests: MemoryRequests::default(),
                audit: MemoryAudit::default(),
            }
        }

        async fn run(&self, now: DateTime<Utc>, dry: bool, crash: Option<u64>) -> Report {
            self.run_saving(now, dry, crash, 1).await
        }

        async fn run_saving(&self, now: DateTime<Utc>, dry: bool, crash: Option<u64>, every: u64) -> Report {
            let sweep = Sweep {
                data: &self.data,
                checkpoints: &self.checkpoints,
                exports: Some(&self.objects),
                requests: &self.requests,
                audit: &self.audit,
            };
            let opts = Options {
                dry_run: dry,
                lookback_days: 45,
                stop_at: now + Duration::hours(1),
                crash_after_pages: crash,
                checkpoint_every: every,
            };
            sweep.run(now, &FixedClock::at(now), &opts, &()).await.unwrap()
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Daily sweeps (some crashing midway, then resumed) over random items of every class: nothing is
        /// removed or anonymised before the deadline that governs it, and after each day's sweep nothing
        /// due by then is left (so nothing outlives its deadline by more than the sweep interval).
        #[test]
        fn nothing_outlives_its_deadline_by_more_than_a_sweep_interval_and_nothing_goes_early(
            items in proptest::collection::vec((0u8..6, -40 * DAY..40 * DAY), 1..40),
            crashes in proptest::collection::vec(proptest::option::of(1u64..4), 45),
            page_size in 1usize..5,
            hour in 0i64..24,
            every in 1u64..4,
        ) {
            let w = World::new(page_size);
            let seeded: Vec<Seeded> = items
                .iter()
                .enumerate()
                .flat_map(|(i, (shape, offset))| seed(&w.data, i, *shape, *offset))
                .collect();
            block_on(async {
                for (day, crash) in crashes.iter().enumerate() {
                    let now = t0() + Duration::days(day as i64) + Duration::hours(hour);
                    let mut report = w.run_saving(now, false, *crash, every).await;
                    let mut resumes = 0;
                    while !report.complete {
                        report = w.run(now, false, None).await;
                        resumes += 1;
                        prop_assert!(resumes < 3, "a resumed run finishes");
                    }
                    for s in &seeded {
                        let item = w.data.get(s.store, &s.key);
                        let due = s.governing <= now.timestamp();
                        if !due {
                            prop_assert!(item.is_some(), "{:?} removed before its deadline", s.key);
                            let kept = item.unwrap();
                            prop_assert!(kept.contains_key("subject"), "{:?} anonymised early", s.key);
                        } else if s.anonymise {
                            let kept = item.expect("anonymised, not deleted");
                            prop_assert!(!kept.contains_key("subject") && !kept.contains_key("buyer_name"));
                            prop_assert!(!kept.contains_key("expires_at"), "nothing left to delete");
                        } else {
                            prop_assert!(item.is_none(), "{:?} still kept a sweep after its deadline", s.key);
                        }
                    }
                }
                Ok(())
            })?;
        }
    }

    #[test]
    fn a_dry_run_changes_nothing_and_a_second_run_finds_nothing() {
        let w = World::new(2);
        for i in 0..12 {
            seed(&w.data, i, i as u8, -(i as i64) * DAY / 2);
        }
        let before = w.data.items.lock().unwrap().clone();
        let now = t0() + Duration::hours(1);
        block_on(async {
            let dry = w.run(now, true, None).await;
            assert_eq!(*w.data.items.lock().unwrap(), before, "dry run wrote nothing");
            assert!(w.checkpoints.0.lock().unwrap().is_empty(), "not even the checkpoint");
            let real = w.run(now, false, None).await;
            assert_eq!(dry.actions, real.actions, "the dry run reported what the run did");
            assert!(real.items_changed > 0);
            let again = w.run(now, false, None).await;
            assert_eq!(again.items_changed, 0, "running twice changes nothing the second time");
            assert!(again.actions.is_empty());
            // Every run is in the audit log, and the chain holds.
            let entries = w.audit.entries(0, 100).await.unwrap();
            assert_eq!(entries.len(), 3);
            assert_eq!(entries[0].action, "sweep.dry_run");
            assert!(audit::verify(&entries, w.audit.head().await.unwrap().as_ref().map(|(n, h)| (*n, h.as_str()))).ok());
        });
    }

    #[test]
    fn the_report_shows_how_overdue_the_oldest_item_was_and_open_requests_near_their_deadline() {
        let w = World::new(10);
        seed(&w.data, 1, 0, -3 * DAY);
        seed(&w.data, 2, 0, -DAY);
        let now = t0();
        block_on(async {
            use crate::ports::DataRequests;
            for (id, by) in [
                ("late", now - Duration::days(1)),
                ("soon", now + Duration::days(2)),
                ("later", now + Duration::days(20)),
            ] {
                let r = crate::ports::DataRequest {
                    id: id.into(),
                    subjects: vec![],
                    kind: "access".into(),
                    source: "test".into(),
                    merchant: None,
                    received_at: by - Duration::days(30),
                    answer_by: by,
                    reply_to: None,
                };
                w.requests.open(&r).await.unwrap();
            }
            let r = w.run(now, false, None).await;
            assert_eq!(r.oldest_overdue_seconds, Some(3 * DAY));
            assert_eq!(r.ttl_lag_seconds, Some(3 * DAY));
            assert_eq!((r.requests_open, r.requests_overdue, r.requests_due_soon), (3, 1, 1));
            assert_eq!(r.actions["invoice_tax_record"]["delete"], 2);
        });
    }
}
