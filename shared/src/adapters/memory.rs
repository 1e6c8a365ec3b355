//! In-memory port implementations for use-case tests. Same contracts as the AWS adapters, including
//! expiry checks inside every condition; failures can be injected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::domain::retention;
use crate::ports::{
    Claim, Clock, IdempotencyStore, InfraError, Loaded, Metrics, PaymentRecord, PaymentStore, Queue, Recorded, Written,
};

fn injected(service: &'static str, operation: &'static str) -> InfraError {
    InfraError { service, operation, retryable: true, source: Some("injected failure".into()) }
}

/// A clock that says what it is told.
#[derive(Debug)]
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn at(t: DateTime<Utc>) -> Self {
        Self(Mutex::new(t))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

#[derive(Debug, Clone)]
struct IdemRecord {
    status: &'static str,
    lock_until: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    result: Option<String>,
}

#[derive(Debug, Default)]
pub struct MemoryIdempotency {
    records: Mutex<HashMap<String, IdemRecord>>,
    pub fail_writes: AtomicBool,
}

impl MemoryIdempotency {
    pub fn contains(&self, key: &str) -> bool {
        self.records.lock().unwrap().contains_key(key)
    }
}

impl IdempotencyStore for MemoryIdempotency {
    async fn claim(
        &self, key: &str, now: DateTime<Utc>, lock_until: DateTime<Utc>, expires_at: DateTime<Utc>,
    ) -> Result<Claim, InfraError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("memory", "claim"));
        }
        let mut r = self.records.lock().unwrap();
        if let Some(old) = r.get(key).filter(|old| old.expires_at > now) {
            if old.status == "COMPLETED" {
                return Ok(Claim::Completed(old.result.clone()));
            }
            if old.lock_until.is_some_and(|l| l > now) {
                return Ok(Claim::InProgress);
            }
        }
        r.insert(
            key.to_owned(),
            IdemRecord { status: "INPROGRESS", lock_until: Some(lock_until), expires_at, result: None },
        );
        Ok(Claim::Acquired)
    }

    async fn complete(&self, key: &str, result: Option<&str>) -> Result<(), InfraError> {
        let mut r = self.records.lock().unwrap();
        if let Some(rec) = r.get_mut(key) {
            rec.status = "COMPLETED";
            rec.lock_until = None;
            rec.result = result.map(str::to_owned);
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), InfraError> {
        let mut r = self.records.lock().unwrap();
        if r.get(key).is_some_and(|rec| rec.status != "COMPLETED") {
            r.remove(key);
        }
        Ok(())
    }

    async fn confirm(&self, key: &str, result: &str) -> Result<bool, InfraError> {
        let mut r = self.records.lock().unwrap();
        match r.get_mut(key).filter(|rec| rec.status != "COMPLETED") {
            Some(rec) => {
                rec.status = "COMPLETED";
                rec.lock_until = None;
                rec.result = Some(result.to_owned());
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryPayments {
    records: Mutex<HashMap<String, PaymentRecord>>,
    pub fail_writes: AtomicBool,
}

impl MemoryPayments {
    /// The stored record, expired or not (what a scan of the table would see).
    pub fn raw(&self, key: &str) -> Option<PaymentRecord> {
        self.records.lock().unwrap().get(key).cloned()
    }
}

impl PaymentStore for MemoryPayments {
    async fn get(&self, payment_key: &str, now: DateTime<Utc>) -> Result<Loaded<PaymentRecord>, InfraError> {
        let r = self.records.lock().unwrap();
        Ok(match r.get(payment_key) {
            None => Loaded { value: None, version: None },
            Some(rec) => Loaded {
                version: Some(rec.version),
                value: (!retention::is_past(rec.retention.expires_at, now)).then(|| rec.clone()),
            },
        })
    }

    async fn put(&self, record: &PaymentRecord, expected: Option<u64>) -> Result<Written, InfraError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("memory", "put"));
        }
        let mut r = self.records.lock().unwrap();
        if r.get(&record.payment_key).map(|old| old.version) != expected {
            return Ok(Written::Conflict);
        }
        r.insert(record.payment_key.clone(), record.clone());
        Ok(Written::Ok)
    }
}

/// Where an invocation is cut off, as Lambda does at its timeout: the fakes sharing one plan count their
/// writes, and the one numbered `at` (from 1) never returns, either before it takes effect or after (the
/// write is done, the answer lost). A test drops the stalled future and redelivers.
#[derive(Debug, Default)]
pub struct CutPlan {
    calls: std::sync::atomic::AtomicUsize,
    at: std::sync::atomic::AtomicUsize,
    after: AtomicBool,
}

impl CutPlan {
    /// Cuts at write number `at` (0: never), `after` it took effect or before.
    pub fn arm(&self, at: usize, after: bool) {
        self.calls.store(0, Ordering::SeqCst);
        self.at.store(at, Ordering::SeqCst);
        self.after.store(after, Ordering::SeqCst);
    }

    /// How many writes were made since the plan was armed.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Runs one write under the plan.
    pub async fn step<T>(&self, write: impl FnOnce() -> T) -> T {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.at.load(Ordering::SeqCst) != n {
            return write();
        }
        if self.after.load(Ordering::SeqCst) {
            let _done = write();
        }
        std::future::pending().await
    }
}

#[derive(Debug, Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<String>>,
    pub fail: AtomicBool,
    pub cut: std::sync::Arc<CutPlan>,
}

impl Queue for MemoryQueue {
    async fn send(&self, body: &str) -> Result<(), InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected("memory", "send"));
        }
        self.cut.step(|| self.sent.lock().unwrap().push(body.to_owned())).await;
        Ok(())
    }
}

/// An inbox record: its body (until `done`) and its deadline.
type InboxRecord = (Option<String>, DateTime<Utc>);

/// The inbox in memory: records by key, with their bodies until `done`.
#[derive(Debug, Default)]
pub struct MemoryInbox {
    pub records: Mutex<std::collections::BTreeMap<String, InboxRecord>>,
    /// Every body handed off, in order: what the change stream would deliver.
    pub handed_off: Mutex<Vec<(String, String)>>,
    pub fail: AtomicBool,
    pub cut: std::sync::Arc<CutPlan>,
}

impl MemoryInbox {
    pub fn bodies(&self) -> Vec<String> {
        self.handed_off.lock().unwrap().iter().map(|(_, b)| b.clone()).collect()
    }
}

impl crate::ports::Inbox for MemoryInbox {
    async fn hand_off(
        &self, key: &str, body: &str, _owner: &crate::ports::Owner<'_>, now: DateTime<Utc>, expires_at: DateTime<Utc>,
    ) -> Result<Recorded, InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected("memory", "hand_off"));
        }
        let recorded = self
            .cut
            .step(|| {
                let mut r = self.records.lock().unwrap();
                if r.get(key).is_some_and(|(_, exp)| *exp > now) {
                    return Recorded::Duplicate;
                }
                r.insert(key.to_owned(), (Some(body.to_owned()), expires_at));
                self.handed_off.lock().unwrap().push((key.to_owned(), body.to_owned()));
                Recorded::New
            })
            .await;
        Ok(recorded)
    }

    async fn load(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, InfraError> {
        Ok(self.records.lock().unwrap().get(key).filter(|(_, exp)| *exp > now).and_then(|(b, _)| b.clone()))
    }

    async fn done(&self, key: &str) -> Result<(), InfraError> {
        if let Some(r) = self.records.lock().unwrap().get_mut(key) {
            r.0 = None;
        }
        Ok(())
    }
}

/// Counts metrics by name, for assertions.
#[derive(Debug, Default)]
pub struct MemoryMetrics(pub Mutex<HashMap<&'static str, u64>>);

impl MemoryMetrics {
    pub fn get(&self, name: &str) -> u64 {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Metrics for MemoryMetrics {
    fn count(&self, name: &'static str, value: u64, _dimension: Option<(&'static str, &str)>) {
        *self.0.lock().unwrap().entry(name).or_default() += value;
    }
}

/// A merchant directory from a fixed map.
#[derive(Debug, Default)]
pub struct MemoryMerchants(pub HashMap<String, String>);

impl crate::ports::MerchantDirectory for MemoryMerchants {
    async fn merchant_for_phone_number(&self, phone_number_id: &str) -> Result<Option<String>, InfraError> {
        Ok(self.0.get(phone_number_id).cloned())
    }

    async fn merchant_for_account(&self, waba_id: &str) -> Result<Option<String>, InfraError> {
        Ok(self.0.get(waba_id).cloned())
    }
}

/// A consent ledger in memory: entries by `(subject, id)`.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    pub entries: Mutex<HashMap<(String, String), crate::ports::ConsentEntry>>,
    /// Template categories by (merchant, template).
    pub categories: Mutex<HashMap<(String, String), crate::domain::whatsapp::consent::Category>>,
    pub cut: std::sync::Arc<CutPlan>,
}

impl crate::ports::TemplateCatalog for MemoryLedger {
    async fn set_category(
        &self, merchant: &str, template: &str, category: crate::domain::whatsapp::consent::Category,
    ) -> Result<(), InfraError> {
        self.categories.lock().unwrap().insert((merchant.to_owned(), template.to_owned()), category);
        Ok(())
    }
}

impl MemoryLedger {
    pub fn opted_out(&self, subject: &str) -> bool {
        self.entries
            .lock()
            .unwrap()
            .values()
            .any(|e| e.subject == subject && e.action == crate::ports::ConsentAction::OptOut)
    }
}

impl crate::ports::ConsentLedger for MemoryLedger {
    async fn record(&self, entry: &crate::ports::ConsentEntry) -> Result<(), InfraError> {
        self.cut
            .step(|| {
                self.entries
                    .lock()
                    .unwrap()
                    .entry((entry.subject.clone(), entry.id.clone()))
                    .or_insert_with(|| entry.clone());
            })
            .await;
        Ok(())
    }
}

impl crate::ports::LedgerReader for MemoryLedger {
    async fn read(
        &self, refs: &[crate::usecases::consent_audit::LedgerRef],
    ) -> Result<Vec<crate::ports::ConsentEntry>, InfraError> {
        let entries = self.entries.lock().unwrap();
        let mut keys: Vec<(String, String)> = refs
            .iter()
            .map(|r| (r.pk.trim_start_matches("subject#").to_owned(), r.sk.trim_start_matches("consent#").to_owned()))
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys.iter().filter_map(|k| entries.get(k).cloned()).collect())
    }
}

/// Every table in memory, with the `due` and `by_subject` indexes computed on read. `due` pages hold at
/// most `page_size` entries, so paging and resuming are exercised.
#[derive(Debug)]
pub struct MemoryData {
    pub items: Mutex<std::collections::BTreeMap<(crate::ports::Store, crate::ports::ItemKey), crate::ports::Attrs>>,
    pub stores: Vec<crate::ports::Store>,
    pub page_size: usize,
}

impl MemoryData {
    pub fn new(stores: Vec<crate::ports::Store>, page_size: usize) -> Self {
        Self { items: Mutex::default(), stores, page_size: page_size.max(1) }
    }

    pub fn put(&self, store: crate::ports::Store, key: crate::ports::ItemKey, attrs: crate::ports::Attrs) {
        self.items.lock().unwrap().insert((store, key), attrs);
    }

    pub fn get(&self, store: crate::ports::Store, key: &crate::ports::ItemKey) -> Option<crate::ports::Attrs> {
        self.items.lock().unwrap().get(&(store, key.clone())).cloned()
    }

    /// Every item `keep` says yes to.
    fn matching(
        &self, keep: impl Fn(crate::ports::Store, &crate::ports::ItemKey, &crate::ports::Attrs) -> bool,
    ) -> Vec<(crate::ports::ItemKey, crate::ports::Attrs)> {
        let items = self.items.lock().unwrap();
        items.iter().filter(|((s, k), a)| keep(*s, k, a)).map(|((_, k), a)| (k.clone(), a.clone())).collect()
    }
}

fn expires(a: &crate::ports::Attrs) -> Option<i64> {
    a.get("expires_at").and_then(|v| v.as_i64())
}

impl crate::ports::DataStore for MemoryData {
    fn stores(&self) -> Vec<crate::ports::Store> {
        self.stores.clone()
    }

    async fn due(
        &self, store: crate::ports::Store, bucket: &str, now: i64, cursor: Option<&str>,
    ) -> Result<crate::ports::DuePage, InfraError> {
        let mut due: Vec<(i64, crate::ports::ItemKey, String)> = self
            .items
            .lock()
            .unwrap()
            .iter()
            .filter(|((s, _), a)| *s == store && a.get("due_bucket").and_then(|v| v.as_str()) == Some(bucket))
            .filter_map(|((_, k), a)| {
                let e = expires(a)?;
                let action = a.get("due_action").and_then(|v| v.as_str()).unwrap_or("delete").to_owned();
                (e <= now).then(|| (e, k.clone(), action))
            })
            .collect();
        due.sort();
        let after: Option<(i64, crate::ports::ItemKey)> = cursor.and_then(|c| serde_json::from_str(c).ok());
        let start = after.map_or(0, |a| due.partition_point(|(e, k, _)| (*e, k.clone()) <= a));
        let page: Vec<_> = due.iter().skip(start).take(self.page_size).cloned().collect();
        let more = start + page.len() < due.len();
        let next =
            more.then(|| page.last().map(|(e, k, _)| serde_json::to_string(&(e, k)).unwrap_or_default())).flatten();
        Ok(crate::ports::DuePage {
            items: page
                .into_iter()
                .map(|(expires_at, key, action)| crate::ports::DueEntry { key, expires_at, action })
                .collect(),
            next,
        })
    }

    async fn delete(&self, store: crate::ports::Store, keys: &[crate::ports::ItemKey]) -> Result<(), InfraError> {
        let mut items = self.items.lock().unwrap();
        for k in keys {
            items.remove(&(store, k.clone()));
        }
        Ok(())
    }

    async fn delete_if_due(
        &self, store: crate::ports::Store, key: &crate::ports::ItemKey, now: i64,
    ) -> Result<Option<crate::ports::Attrs>, InfraError> {
        let mut items = self.items.lock().unwrap();
        let id = (store, key.clone());
        match items.get(&id).and_then(expires) {
            Some(e) if e <= now => Ok(items.remove(&id)),
            _ => Ok(None),
        }
    }

    async fn remove_fields(
        &self, store: crate::ports::Store, key: &crate::ports::ItemKey, fields: &[&str], due_at: Option<i64>,
    ) -> Result<bool, InfraError> {
        let mut items = self.items.lock().unwrap();
        let Some(a) = items.get_mut(&(store, key.clone())) else {
            return Ok(false);
        };
        if let Some(now) = due_at {
            if expires(a).is_none_or(|e| e > now) {
                return Ok(false);
            }
            for f in ["expires_at", "due_bucket", "due_action"] {
                a.remove(f);
            }
        }
        for f in fields {
            a.remove(*f);
        }
        Ok(true)
    }

    async fn partition(
        &self, store: crate::ports::Store, pk: &str, sk_prefix: &str,
    ) -> Result<Vec<(crate::ports::ItemKey, crate::ports::Attrs)>, InfraError> {
        Ok(self.matching(|s, k, _| s == store && k.pk == pk && k.sk.as_deref().unwrap_or("").starts_with(sk_prefix)))
    }

    async fn about(
        &self, store: crate::ports::Store, subject: &str,
    ) -> Result<Vec<(crate::ports::ItemKey, crate::ports::Attrs)>, InfraError> {
        Ok(self.matching(|s, _, a| s == store && a.get("subject").and_then(|v| v.as_str()) == Some(subject)))
    }
}

#[derive(Debug, Default)]
pub struct MemoryCheckpoints(pub Mutex<HashMap<String, String>>);

impl crate::ports::Checkpoints for MemoryCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<String>, InfraError> {
        Ok(self.0.lock().unwrap().get(name).cloned())
    }
    async fn save(&self, name: &str, value: &str) -> Result<(), InfraError> {
        self.0.lock().unwrap().insert(name.to_owned(), value.to_owned());
        Ok(())
    }
}

/// The audit log as a vector, chained like the real one.
#[derive(Debug, Default)]
pub struct MemoryAudit(pub Mutex<Vec<crate::domain::audit::Entry>>, pub Mutex<std::collections::BTreeSet<String>>);

impl crate::ports::AuditLog for MemoryAudit {
    async fn append(
        &self, entry: crate::domain::audit::NewEntry, at: DateTime<Utc>,
    ) -> Result<Option<crate::domain::audit::Entry>, InfraError> {
        if let Some(k) = &entry.key {
            if !self.1.lock().unwrap().insert(k.clone()) {
                return Ok(None);
            }
        }
        let mut log = self.0.lock().unwrap();
        let prev = log.last().map_or(crate::domain::audit::GENESIS.to_owned(), |e| e.hash.clone());
        let e = crate::domain::audit::Entry::chain(entry, log.len() as u64 + 1, at, &prev);
        log.push(e.clone());
        Ok(Some(e))
    }
    async fn append_many(
        &self, entries: Vec<crate::domain::audit::NewEntry>, at: DateTime<Utc>,
    ) -> Result<Vec<crate::domain::audit::Entry>, InfraError> {
        let mut out = Vec::new();
        for e in entries {
            out.extend(crate::ports::AuditLog::append(self, e, at).await?);
        }
        Ok(out)
    }
    async fn entries(&self, after_seq: u64, limit: usize) -> Result<Vec<crate::domain::audit::Entry>, InfraError> {
        Ok(self.0.lock().unwrap().iter().filter(|e| e.seq > after_seq).take(limit).cloned().collect())
    }
    async fn head(&self) -> Result<Option<(u64, String)>, InfraError> {
        Ok(self.0.lock().unwrap().last().map(|e| (e.seq, e.hash.clone())))
    }
}

/// Data-subject requests in memory.
#[derive(Debug, Default)]
pub struct MemoryRequests(pub Mutex<std::collections::BTreeMap<String, crate::ports::RequestRecord>>);

impl crate::ports::DataRequests for MemoryRequests {
    async fn open(&self, request: &crate::ports::DataRequest) -> Result<bool, InfraError> {
        let mut all = self.0.lock().unwrap();
        if all.contains_key(&request.id) {
            return Ok(false);
        }
        all.insert(
            request.id.clone(),
            crate::ports::RequestRecord {
                request: request.clone(),
                status: "received".into(),
                result: None,
                export_key: None,
                completed_at: None,
                answered_at: None,
            },
        );
        Ok(true)
    }
    async fn get(&self, id: &str) -> Result<Option<crate::ports::RequestRecord>, InfraError> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }
    async fn update(
        &self, id: &str, status: &str, result: Option<&str>, export_key: Option<&str>, at: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        if let Some(r) = self.0.lock().unwrap().get_mut(id) {
            r.status = status.to_owned();
            if let Some(x) = result {
                r.result = Some(x.to_owned());
            }
            if let Some(k) = export_key {
                r.export_key = Some(k.to_owned());
            }
            if matches!(status, "completed" | "closed") {
                r.completed_at = Some(at);
            }
        }
        Ok(())
    }
    async fn note_answered(&self, id: &str, at: DateTime<Utc>) -> Result<(), InfraError> {
        if let Some(r) = self.0.lock().unwrap().get_mut(id) {
            r.answered_at.get_or_insert(at);
        }
        Ok(())
    }
    async fn open_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>, InfraError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.completed_at.is_none())
            .map(|r| (r.request.id.clone(), r.request.answer_by))
            .collect())
    }
}

/// Objects in memory, with the time each was written.
#[derive(Debug, Default)]
pub struct MemoryObjects(pub Mutex<std::collections::BTreeMap<String, StoredObject>>);

/// An object's body and when it was written.
pub type StoredObject = (Vec<u8>, DateTime<Utc>);

impl crate::ports::ObjectStore for MemoryObjects {
    async fn put_private(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<(), InfraError> {
        self.0.lock().unwrap().insert(key.to_owned(), (body, Utc::now()));
        Ok(())
    }
    async fn presigned_get(&self, key: &str, _valid_for: std::time::Duration) -> Result<String, InfraError> {
        Ok(format!("memory://{key}"))
    }
    async fn delete(&self, key: &str) -> Result<(), InfraError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, DateTime<Utc>)>, InfraError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, t))| (k.clone(), *t))
            .collect())
    }
}

/// One stored order, its buyer and its events, as [`MemoryOrders`] keeps them.
#[derive(Debug, Clone)]
pub struct StoredOrder {
    pub order: crate::domain::orders::Order,
    pub stamp: Option<retention::Stamp>,
    pub subject: Option<String>,
    pub buyer: Option<(crate::domain::orders::Buyer, retention::Stamp)>,
    pub buyer_held: bool,
}

/// The orders table in memory: `(merchant, sort key)` -> order; events in the order they were written.
#[derive(Debug, Default)]
pub struct MemoryOrders {
    pub orders: Mutex<std::collections::BTreeMap<(String, String), StoredOrder>>,
    pub events: Mutex<Vec<String>>,
    pub writes: std::sync::atomic::AtomicU64,
    pub fail: AtomicBool,
}

impl crate::ports::OrderStore for MemoryOrders {
    async fn versions(
        &self, merchant: &str, sort_keys: &[String],
    ) -> Result<HashMap<String, crate::ports::StoredVersion>, InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected("dynamodb", "BatchGetItem(orders)"));
        }
        let orders = self.orders.lock().unwrap();
        Ok(sort_keys
            .iter()
            .filter_map(|sk| {
                let o = orders.get(&(merchant.to_owned(), sk.clone()))?;
                Some((
                    sk.clone(),
                    crate::ports::StoredVersion {
                        updated_at: o.order.updated_at,
                        shipped_at: o.order.shipped_at,
                        buyer: o.buyer.is_some(),
                        buyer_removed: o.buyer_held && o.buyer.is_none(),
                    },
                ))
            })
            .collect())
    }

    async fn write(&self, w: &crate::ports::OrderWrite<'_>) -> Result<bool, InfraError> {
        use crate::ports::BuyerWrite;
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected("dynamodb", "TransactWriteItems(order)"));
        }
        let mut orders = self.orders.lock().unwrap();
        let key = (w.merchant.to_owned(), w.order.sort_key());
        let old = orders.get(&key);
        if old.is_some_and(|o| o.order.updated_at.timestamp_millis() >= w.order.updated_at.timestamp_millis()) {
            return Ok(false);
        }
        let buyer = match (&w.buyer, old.and_then(|o| o.buyer.clone())) {
            (BuyerWrite::Put(b, st), _) => Some(((*b).clone(), st.clone())),
            (BuyerWrite::Restamp(st), Some((b, _))) => Some((b, st.clone())),
            (BuyerWrite::Restamp(_) | BuyerWrite::Delete, None) | (BuyerWrite::Delete, Some(_)) => None,
            (BuyerWrite::Keep, old) => old,
        };
        let subject = w.stamp.as_ref().and(w.subject.clone());
        orders.insert(
            key,
            StoredOrder { order: w.order.clone(), stamp: w.stamp.clone(), subject, buyer, buyer_held: w.buyer_held },
        );
        self.events.lock().unwrap().push(w.event_id.clone());
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    async fn get(
        &self, merchant: &str, sort_key: &str, now: DateTime<Utc>,
    ) -> Result<Option<(crate::domain::orders::Order, Option<crate::domain::orders::Buyer>)>, InfraError> {
        let orders = self.orders.lock().unwrap();
        Ok(orders.get(&(merchant.to_owned(), sort_key.to_owned())).map(|o| {
            let buyer =
                o.buyer.as_ref().filter(|(_, st)| !retention::is_past(st.expires_at, now)).map(|(b, _)| b.clone());
            (o.order.clone(), buyer)
        }))
    }
}

/// A connection and its lease (holder, until).
type Leased = (crate::domain::orders::connection::Connection, Option<(String, DateTime<Utc>)>);

/// The connections table in memory, with leases.
#[derive(Debug, Default)]
pub struct MemoryConnections {
    pub connections: Mutex<HashMap<String, Leased>>,
    /// The next save that gives the lease back fails, as a job cut off right before it would.
    pub fail_release: AtomicBool,
}

impl MemoryConnections {
    pub fn with(c: crate::domain::orders::connection::Connection) -> Self {
        let m = Self::default();
        m.connections.lock().unwrap().insert(c.id.clone(), (c, None));
        m
    }
    pub fn get_now(&self, id: &str) -> crate::domain::orders::connection::Connection {
        self.connections.lock().unwrap()[id].0.clone()
    }
}

impl crate::ports::ConnectionStore for MemoryConnections {
    async fn get(&self, id: &str) -> Result<Option<crate::domain::orders::connection::Connection>, InfraError> {
        Ok(self.connections.lock().unwrap().get(id).map(|(c, _)| c.clone()))
    }

    async fn lease(
        &self, id: &str, lease: &str, now: DateTime<Utc>, until: DateTime<Utc>,
    ) -> Result<Option<crate::domain::orders::connection::Connection>, InfraError> {
        let mut all = self.connections.lock().unwrap();
        let Some((c, held)) = all.get_mut(id) else { return Ok(None) };
        if held.as_ref().is_some_and(|(_, t)| *t > now) {
            return Ok(None);
        }
        *held = Some((lease.to_owned(), until));
        Ok(Some(c.clone()))
    }

    async fn save(
        &self, connection: &crate::domain::orders::connection::Connection, lease: &str, release: bool,
    ) -> Result<bool, InfraError> {
        if release && self.fail_release.swap(false, Ordering::SeqCst) {
            return Err(injected("dynamodb", "UpdateItem(connection)"));
        }
        let mut all = self.connections.lock().unwrap();
        let Some((c, held)) = all.get_mut(&connection.id) else { return Ok(false) };
        if held.as_ref().map(|(l, _)| l.as_str()) != Some(lease) {
            return Ok(false);
        }
        *c = connection.clone();
        if release {
            *held = None;
        }
        Ok(true)
    }

    async fn pollable(&self, _shard: u32, _cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), InfraError> {
        let all = self.connections.lock().unwrap();
        let mut ids: Vec<String> = all
            .values()
            .filter(|(c, _)| c.status == crate::domain::orders::connection::ConnectionStatus::Active)
            .map(|(c, _)| c.id.clone())
            .collect();
        ids.sort();
        Ok((ids, None))
    }
}

/// Secrets in memory, counting saves.
#[derive(Debug, Default)]
pub struct MemoryCredentials {
    pub secrets: Mutex<HashMap<String, crate::ports::Credentials>>,
    pub saves: std::sync::atomic::AtomicU64,
    /// Written over the secret after its first read: a merchant connecting again while a job runs.
    pub reconnect_after_first_load: Mutex<Option<crate::ports::Credentials>>,
    loads: std::sync::atomic::AtomicU64,
}

impl crate::ports::CredentialStore for MemoryCredentials {
    async fn load(&self, secret_id: &str) -> Result<crate::ports::Credentials, InfraError> {
        if self.loads.fetch_add(1, Ordering::SeqCst) >= 1 {
            if let Some(c) = self.reconnect_after_first_load.lock().unwrap().take() {
                self.secrets.lock().unwrap().insert(secret_id.to_owned(), c);
            }
        }
        self.secrets.lock().unwrap().get(secret_id).cloned().ok_or_else(|| InfraError {
            service: "secretsmanager",
            operation: "GetSecretValue",
            retryable: false,
            source: Some("no such secret".into()),
        })
    }

    async fn save(&self, secret_id: &str, credentials: &crate::ports::Credentials) -> Result<(), InfraError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.secrets.lock().unwrap().insert(secret_id.to_owned(), credentials.clone());
        Ok(())
    }
}
