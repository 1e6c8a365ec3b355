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
    InfraError {
        service,
        operation,
        retryable: true,
        source: Some("injected failure".into()),
    }
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
    async fn record_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Recorded, InfraError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("memory", "record_once"));
        }
        let mut r = self.records.lock().unwrap();
        if r.get(key).is_some_and(|old| old.expires_at > now) {
            return Ok(Recorded::Duplicate);
        }
        r.insert(
            key.to_owned(),
            IdemRecord {
                status: "RECORDED",
                lock_until: None,
                expires_at,
                result: None,
            },
        );
        Ok(Recorded::New)
    }

    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lock_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
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
            IdemRecord {
                status: "INPROGRESS",
                lock_until: Some(lock_until),
                expires_at,
                result: None,
            },
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
            None => Loaded {
                value: None,
                version: None,
            },
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

#[derive(Debug, Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<String>>,
    pub fail: AtomicBool,
}

impl Queue for MemoryQueue {
    async fn send(&self, body: &str) -> Result<(), InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected("memory", "send"));
        }
        self.sent.lock().unwrap().push(body.to_owned());
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
}

impl crate::ports::TemplateCatalog for MemoryLedger {
    async fn set_category(
        &self,
        merchant: &str,
        template: &str,
        category: crate::domain::whatsapp::consent::Category,
    ) -> Result<(), InfraError> {
        self.categories
            .lock()
            .unwrap()
            .insert((merchant.to_owned(), template.to_owned()), category);
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
        self.entries
            .lock()
            .unwrap()
            .entry((entry.subject.clone(), entry.id.clone()))
            .or_insert_with(|| entry.clone());
        Ok(())
    }
}
