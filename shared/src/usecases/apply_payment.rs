//! Apply one queued payment event to its order, exactly once in effect.
//!
//! Idempotency follows Powertools: claim `payments-worker#<event id>` with an in-progress lock that lapses
//! when the invocation would have timed out, do the work, mark it completed; on failure release the
//! claim so the redelivery can run. The order write itself is an optimistic-concurrency merge of facts,
//! so even a replay that slipped past the claim cannot regress a state.

use chrono::{DateTime, Duration, TimeZone, Utc};
use tracing::info;

use crate::domain::envelope::Envelope;
use crate::domain::retention::{self, DataClass};
use crate::domain::stripe::event::PaymentEvent;
use crate::ports::{Claim, Clock, IdempotencyStore, InfraError, PaymentRecord, PaymentStore, Queue, Written};
use crate::usecases::send_notification::{Content, SendRequest};

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

impl crate::adapters::sqs_batch::RecordError for ApplyError {
    /// A stable name for logs, metrics and the runtime's `errorType`.
    fn error_type(&self) -> &'static str {
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
    /// The order's retention deadline has already passed: nothing may be kept, so nothing is written
    /// (an item whose TTL is over five years in the past would never be expired by DynamoDB either).
    PastDeadline,
}

pub struct ApplyPayment<'a, C, I, P, N> {
    pub clock: &'a C,
    pub idempotency: &'a I,
    pub payments: &'a P,
    /// Where order notifications (paid, payment failed, refunded) are queued for the sender.
    pub notifications: &'a N,
    /// Where the order's payment changes are queued for forwarding to the merchant's endpoints
    /// (`{"payment_event": {"payment_key": ..}}`; the forwarder reads the record as it is then).
    pub forward: Option<&'a N>,
}

/// The WhatsApp notification an order in `status` gets, if the event names a merchant and a phone.
/// Its id is stable per order and status: however often the event is applied, the sender sends it once.
pub fn notification(event: &PaymentEvent, status: &str) -> Option<SendRequest> {
    let template = match status {
        "paid" => "payment_paid",
        "payment_failed" => "payment_failed",
        "refunded" | "partially_refunded" => "payment_refunded",
        _ => return None,
    };
    Some(SendRequest {
        id: format!("payment#{}#{template}", event.payment_key),
        merchant: event.merchant.clone()?,
        phone_number_id: None,
        to: event.notify_to.clone()?,
        content: Content::Template {
            name: template.into(),
            language: "en".into(),
            components: serde_json::Value::Null,
        },
        own_order: true,
        order_open: status != "refunded",
        private: false,
    })
}

impl<C: Clock, I: IdempotencyStore, P: PaymentStore, N: Queue> ApplyPayment<'_, C, I, P, N> {
    /// `lock_until`: when this invocation would be cut off (Lambda deadline).
    pub async fn handle(&self, event: &PaymentEvent, lock_until: DateTime<Utc>) -> Result<Applied, ApplyError> {
        let now = self.clock.now();
        let key = format!("{SOURCE}#{}", event.event_id);
        let expires_at = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(19));
        match self.idempotency.claim(&key, now, lock_until, expires_at).await? {
            Claim::Completed(_) => return Ok(Applied::AlreadyDone),
            Claim::InProgress => return Err(ApplyError::InProgress),
            Claim::Acquired => {}
        }
        let result = match self.apply(event).await {
            Ok(applied) => self.notify(event, &applied).await.map(|()| applied),
            Err(e) => Err(e),
        };
        match result {
            Ok(applied) => {
                let status = match &applied {
                    Applied::Updated { status } | Applied::Unchanged { status } => Some(status.as_str()),
                    Applied::AlreadyDone | Applied::PastDeadline => None,
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

    /// Queues the order's notification before the claim completes, so a failure here retries the record
    /// (an `Unchanged` re-application still notifies; the sender de-duplicates by id).
    async fn notify(&self, event: &PaymentEvent, applied: &Applied) -> Result<(), ApplyError> {
        let (Applied::Updated { status } | Applied::Unchanged { status }) = applied else {
            return Ok(());
        };
        // An unchanged re-application forwards again too: the forwarder's deliveries are keyed by the
        // record's version, so a second reference to the same version creates nothing.
        // Only the platform's own payments: a connected account's event names whatever merchant its own
        // metadata says, which is no ground to send a signed event to that merchant.
        if let (Some(forward), true) = (self.forward, event.merchant.is_some() && event.connected_account.is_none()) {
            let body = serde_json::json!({ "payment_event": { "payment_key": event.payment_key } }).to_string();
            forward.send(&body).await?;
        }
        let Some(request) = notification(event, status) else {
            return Ok(());
        };
        let body = Envelope::new(request.id.clone(), self.clock.now(), event.event_id.clone(), request).encode();
        self.notifications.send(&body).await?;
        info!(payment_key = %event.payment_key, status = %status, "order notification queued");
        Ok(())
    }

    async fn apply(&self, event: &PaymentEvent) -> Result<Applied, ApplyError> {
        for _ in 0..MAX_CONFLICTS {
            let now = self.clock.now();
            let loaded = self.payments.get(&event.payment_key, now).await?;
            let next = merge(loaded.value.as_ref(), event, now, loaded.version).ok_or(ApplyError::NoDeadline)?;
            if retention::is_past(next.retention.expires_at, now) {
                return Ok(Applied::PastDeadline);
            }
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
    current: Option<&PaymentRecord>, event: &PaymentEvent, now: DateTime<Utc>, stored_version: Option<u64>,
) -> Option<PaymentRecord> {
    let mut facts = current.map(|c| c.facts.clone()).unwrap_or_default();
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
        api_version: max_opt(current.and_then(|c| c.api_version.clone()), event.api_version.clone()),
        subject: min_opt(current.and_then(|c| c.subject.clone()), event.subject.clone()),
        merchant: merchant_of(current.and_then(|c| c.merchant.clone()), event.merchant.clone()),
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
/// Whom the record is held for: the storefront's `metadata.merchant_id` wins over a Connect account id
/// (`acct_...`, the fallback when an event carries no metadata), whatever order the events arrive in.
fn merchant_of(a: Option<String>, b: Option<String>) -> Option<String> {
    let rank = |m: &String| (m.starts_with("acct_"), m.clone());
    match (a, b) {
        (Some(a), Some(b)) => Some(if rank(&a) <= rank(&b) { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use chrono::TimeZone;

    use super::*;
    use crate::adapters::memory::{FixedClock, MemoryIdempotency, MemoryPayments, MemoryQueue};
    use crate::domain::payment::PaymentFact;

    fn event(id: &str, fact: PaymentFact, created: i64) -> PaymentEvent {
        PaymentEvent {
            event_id: id.into(),
            event_type: "t".into(),
            api_version: None,
            created,
            payment_key: "pi_1".into(),
            order_ref: None,
            fact,
            amount: Some(2000),
            currency: Some("eur".into()),
            card: None,
            subject: None,
            merchant: None,
            notify_to: None,
            connected_account: None,
        }
    }

    fn fakes() -> (FixedClock, MemoryIdempotency, MemoryPayments, MemoryQueue) {
        (FixedClock::at(now()), MemoryIdempotency::default(), MemoryPayments::default(), MemoryQueue::default())
    }

    type Fakes<'a> = ApplyPayment<'a, FixedClock, MemoryIdempotency, MemoryPayments, MemoryQueue>;

    fn use_case<'a>(
        clock: &'a FixedClock, idempotency: &'a MemoryIdempotency, payments: &'a MemoryPayments,
        notifications: &'a MemoryQueue,
    ) -> Fakes<'a> {
        ApplyPayment { clock, idempotency, payments, notifications, forward: None }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn a_failed_write_releases_the_claim_so_the_redelivery_applies_the_event() {
        let (clock, idem, pay, queue) = fakes();
        let uc = use_case(&clock, &idem, &pay, &queue);
        let ev = event("evt_1", PaymentFact::Succeeded, now().timestamp());
        let lock = now() + Duration::seconds(30);
        pay.fail_writes.store(true, Ordering::SeqCst);
        assert!(matches!(uc.handle(&ev, lock).await, Err(ApplyError::Infra(_))));
        assert!(!idem.contains("payments-worker#evt_1"));
        pay.fail_writes.store(false, Ordering::SeqCst);
        assert_eq!(uc.handle(&ev, lock).await.unwrap(), Applied::Updated { status: "paid".into() });
        assert_eq!(uc.handle(&ev, lock).await.unwrap(), Applied::AlreadyDone);
    }

    #[tokio::test]
    async fn a_merchants_payment_change_is_queued_for_forwarding_before_the_claim_completes() {
        let (clock, idem, pay, queue) = fakes();
        let forward = MemoryQueue::default();
        let uc = ApplyPayment { forward: Some(&forward), ..use_case(&clock, &idem, &pay, &queue) };
        let mut ev = event("evt_f", PaymentFact::Succeeded, now().timestamp());
        ev.merchant = Some("m-1".into());
        let lock = now() + Duration::seconds(30);
        forward.fail.store(true, Ordering::SeqCst);
        assert!(uc.handle(&ev, lock).await.is_err(), "not completed without its forwarding reference");
        forward.fail.store(false, Ordering::SeqCst);
        assert!(matches!(uc.handle(&ev, lock).await.unwrap(), Applied::Unchanged { .. }));
        assert_eq!(*forward.sent.lock().unwrap(), [r#"{"payment_event":{"payment_key":"pi_1"}}"#]);
        // Without a merchant there is no one to forward to.
        let uc = ApplyPayment { forward: Some(&forward), ..use_case(&clock, &idem, &pay, &queue) };
        let ev = event("evt_g", PaymentFact::Refunded { amount_refunded: 100 }, now().timestamp());
        uc.handle(&ev, lock).await.unwrap();
        assert_eq!(forward.sent.lock().unwrap().len(), 1);
        // Nor for a connected account's event, whatever merchant its metadata names.
        let mut ev = event("evt_h", PaymentFact::Succeeded, now().timestamp());
        ev.merchant = Some("m-1".into());
        ev.connected_account = Some("acct_1".into());
        uc.handle(&ev, lock).await.unwrap();
        assert_eq!(forward.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_paid_order_with_a_merchant_and_a_phone_queues_one_notification_and_a_failed_enqueue_retries() {
        let (clock, idem, pay, queue) = fakes();
        let uc = use_case(&clock, &idem, &pay, &queue);
        let mut ev = event("evt_n", PaymentFact::Succeeded, now().timestamp());
        ev.merchant = Some("m-1".into());
        ev.notify_to = Some("+31612345678".into());
        let lock = now() + Duration::seconds(30);
        queue.fail.store(true, Ordering::SeqCst);
        assert!(uc.handle(&ev, lock).await.is_err(), "not completed without its notification");
        queue.fail.store(false, Ordering::SeqCst);
        assert!(matches!(uc.handle(&ev, lock).await.unwrap(), Applied::Unchanged { .. }));
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        let req = Envelope::<SendRequest>::decode(&sent[0]).unwrap().payload;
        assert_eq!((req.id.as_str(), req.to.as_str()), ("payment#pi_1#payment_paid", "+31612345678"));
        assert!(pay.raw("pi_1").is_some_and(|r| !format!("{r:?}").contains("+316")), "the phone is not stored");
    }

    #[tokio::test]
    async fn a_live_lock_held_by_another_invocation_defers_the_record_until_it_lapses() {
        let (clock, idem, pay, queue) = fakes();
        let uc = use_case(&clock, &idem, &pay, &queue);
        let lock = now() + Duration::seconds(30);
        let claim = idem.claim("payments-worker#evt_2", now(), lock, now() + Duration::days(8)).await.unwrap();
        assert_eq!(claim, Claim::Acquired);
        let ev = event("evt_2", PaymentFact::Succeeded, now().timestamp());
        assert!(matches!(uc.handle(&ev, lock).await, Err(ApplyError::InProgress)));
        clock.set(lock + Duration::seconds(1));
        assert!(matches!(uc.handle(&ev, lock + Duration::seconds(60)).await, Ok(Applied::Updated { .. })));
    }

    #[tokio::test]
    async fn an_order_past_its_retention_deadline_is_not_stored_and_an_expired_one_is_replaced() {
        let (clock, idem, pay, queue) = fakes();
        let uc = use_case(&clock, &idem, &pay, &queue);
        let lock = now() + Duration::seconds(30);
        let old = Utc.with_ymd_and_hms(2012, 1, 15, 0, 0, 0).unwrap().timestamp();
        assert_eq!(
            uc.handle(&event("evt_old", PaymentFact::Succeeded, old), lock).await.unwrap(),
            Applied::PastDeadline
        );
        assert!(pay.raw("pi_1").is_none());

        let created = now().timestamp();
        uc.handle(&event("evt_a", PaymentFact::Succeeded, created), lock).await.unwrap();
        // Six years and a day later the record is past its deadline but not yet removed by TTL.
        clock.set(now() + Duration::days(6 * 366));
        let later = now() + Duration::days(6 * 366);
        assert_eq!(pay.get("pi_1", later).await.unwrap().value, None);
        let ev = event("evt_b", PaymentFact::Failed, later.timestamp());
        let applied = uc.handle(&ev, later + Duration::seconds(30)).await.unwrap();
        assert_eq!(applied, Applied::Updated { status: "payment_failed".into() });
        assert_eq!(pay.raw("pi_1").unwrap().version, 2, "the expired item was replaced, not merged into");
    }

    #[test]
    fn the_storefronts_merchant_id_wins_over_a_connect_account_in_any_order() {
        let m = |s: &str| Some(s.to_owned());
        assert_eq!(merchant_of(m("m-1"), m("acct_1")), m("m-1"));
        assert_eq!(merchant_of(m("acct_1"), m("m-1")), m("m-1"));
        assert_eq!(merchant_of(None, m("acct_1")), m("acct_1"));
    }
}
