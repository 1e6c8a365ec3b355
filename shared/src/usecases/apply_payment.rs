//! Apply one queued payment event to its order, exactly once in effect.
//!
//! Idempotency follows Powertools: claim `payments-worker#<event id>` with an in-progress lock that lapses
//! when the invocation would have timed out, do the work, mark it completed; on failure release the
//! claim so the redelivery can run. The order write itself is an optimistic-concurrency merge of facts,
//! so even a replay that slipped past the claim cannot regress a state.

use chrono::{DateTime, Duration, TimeZone, Utc};
use tracing::info;

use crate::domain::payment::PaymentFacts;
use crate::domain::retention::{self, DataClass};
use crate::domain::stripe::event::PaymentEvent;
use crate::ports::{Claim, Clock, IdempotencyStore, InfraError, PaymentRecord, PaymentStore, Written};

pub const SOURCE: &str = "payments-worker";

/// How often a conflicting concurrent write is retried before the record is handed back to SQS.
const MAX_CONFLICTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Another invocation is applying the same event now; retry after its lock lapses.
    #[error("event is being applied by another invocation")]
    InProgress,
    #[error("order kept changing under concurrent writes")]
    Contended,
    #[error("no retention deadline can be computed for this event")]
    NoDeadline,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl ApplyError {
    /// A stable name for logs, metrics and the runtime's `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Contended => "Contended",
            Self::NoDeadline => "NoDeadline",
            Self::Infra(_) => "Infrastructure",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The order changed; its new status.
    Updated { status: String },
    /// The event added nothing the order did not already know.
    Unchanged { status: String },
    /// This event was applied before.
    AlreadyDone,
}

pub struct ApplyPayment<'a, C, I, P> {
    pub clock: &'a C,
    pub idempotency: &'a I,
    pub payments: &'a P,
}

impl<C: Clock, I: IdempotencyStore, P: PaymentStore> ApplyPayment<'_, C, I, P> {
    /// `lock_until`: when this invocation would be cut off (Lambda deadline).
    pub async fn handle(&self, event: &PaymentEvent, lock_until: DateTime<Utc>) -> Result<Applied, ApplyError> {
        let now = self.clock.now();
        let key = format!("{SOURCE}#{}", event.event_id);
        let expires_at = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(8));
        match self.idempotency.claim(&key, now, lock_until, expires_at).await? {
            Claim::Completed(_) => return Ok(Applied::AlreadyDone),
            Claim::InProgress => return Err(ApplyError::InProgress),
            Claim::Acquired => {}
        }
        match self.apply(event).await {
            Ok(applied) => {
                let status = match &applied {
                    Applied::Updated { status } | Applied::Unchanged { status } => Some(status.as_str()),
                    Applied::AlreadyDone => None,
                };
                self.idempotency.complete(&key, status).await?;
                Ok(applied)
            }
            Err(e) => {
                // If the release fails too, the lock lapses at `lock_until` and the redelivery runs then.
                if let Err(release) = self.idempotency.release(&key).await {
                    tracing::warn!(error = %release, "could not release the idempotency claim; it lapses with its lock");
                }
                Err(e)
            }
        }
    }

    async fn apply(&self, event: &PaymentEvent) -> Result<Applied, ApplyError> {
        for _ in 0..MAX_CONFLICTS {
            let now = self.clock.now();
            let loaded = self.payments.get(&event.payment_key, now).await?;
            let next = merge(loaded.value.as_ref(), event, now, loaded.version).ok_or(ApplyError::NoDeadline)?;
            if let Some(current) = &loaded.value {
                if same_content(current, &next) {
                    return Ok(Applied::Unchanged { status: current.status.clone() });
                }
            }
            match self.payments.put(&next, loaded.version).await? {
                Written::Ok => {
                    info!(payment_key = %event.payment_key, status = %next.status, "order payment updated");
                    return Ok(Applied::Updated { status: next.status });
                }
                Written::Conflict => continue,
            }
        }
        Err(ApplyError::Contended)
    }
}

/// The record after applying `event` to `current` (absent: a new record).
pub fn merge(
    current: Option<&PaymentRecord>,
    event: &PaymentEvent,
    now: DateTime<Utc>,
    stored_version: Option<u64>,
) -> Option<PaymentRecord> {
    let mut facts = current.map(|c| c.facts.clone()).unwrap_or_else(PaymentFacts::default);
    facts.record(&event.fact, event.created);
    let amount = max_opt(current.and_then(|c| c.amount), event.amount);
    let last_event_at = current.map_or(event.created, |c| c.last_event_at.max(event.created));
    let anchor = Utc.timestamp_opt(last_event_at, 0).single()?;
    Some(PaymentRecord {
        payment_key: event.payment_key.clone(),
        order_ref: min_opt(current.and_then(|c| c.order_ref.clone()), event.order_ref.clone()),
        status: facts.status(amount).as_str().to_owned(),
        facts,
        amount,
        currency: min_opt(current.and_then(|c| c.currency.clone()), event.currency.clone()),
        card: min_opt(current.and_then(|c| c.card.clone()), event.card.clone()),
        subject: min_opt(current.and_then(|c| c.subject.clone()), event.subject.clone()),
        last_event_at,
        updated_at: now,
        retention: retention::stamp(DataClass::InvoiceTaxRecord, anchor, &event.payment_key)?,
        version: stored_version.map_or(1, |v| v + 1),
    })
}

/// Equal but for bookkeeping (`updated_at`, `version`).
fn same_content(a: &PaymentRecord, b: &PaymentRecord) -> bool {
    PaymentRecord { updated_at: b.updated_at, version: b.version, ..a.clone() } == *b
}

// Deterministic picks, so that the order in which events arrive never changes the stored record.
fn max_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.max(b)
}
fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
