//! Ingest one Stripe webhook delivery: verify, parse, then de-duplicate and hand off in one write.
//!
//! Order of work is the contract: nothing is parsed before the signature over the exact raw body is
//! verified, and nothing is stored for a request that is refused. The event is then written once to the
//! [`Inbox`], which is both the de-duplication record and the hand-off to the payments worker (the
//! table's stream feeds its queue), so there is no step between "seen" and "handed on" where a cut-off
//! invocation could lose it. A new event costs one AWS request, a duplicate one.

use chrono::Duration;
use tracing::{info, warn};

use crate::domain::envelope::Envelope;
use crate::domain::retention::{self, DataClass};
use crate::domain::stripe::event::{self, Classified, ParseError, PaymentEvent};
use crate::domain::stripe::signature::{SignatureError, Verifier};
use crate::domain::subject::{IdentifierKind, SubjectHasher};
use crate::ports::{Clock, Inbox, InfraError, Metrics, Owner, Recorded};

/// Idempotency source prefix of Stripe deliveries.
pub const SOURCE: &str = "stripe-webhook";

/// Settings read once at init.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Largest accepted body; Stripe events are far smaller.
    pub max_body_bytes: usize,
    /// Freshness window of the signed timestamp, seconds.
    pub tolerance_secs: u64,
    /// The API version the endpoint is pinned to; others are accepted but counted.
    pub pinned_api_version: Option<String>,
}

/// Everything the use case needs, lent by the function's `main`.
pub struct Ingest<'a, C, I, M> {
    pub verifier: &'a Verifier,
    pub hasher: &'a SubjectHasher,
    pub clock: &'a C,
    pub inbox: &'a I,
    pub metrics: &'a M,
    pub settings: &'a IngestSettings,
}

/// A delivery that was handled (every one of these answers 2xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Queued {
        event_id: String,
    },
    Duplicate {
        event_id: String,
    },
    /// Verified, but of a type the suite does not act on (or naming no payment): acknowledged only.
    Ignored {
        event_id: String,
    },
}

/// A delivery that was refused or could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("body too large")]
    TooLarge,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The hand-off failed: the platform must retry.
    #[error(transparent)]
    Unavailable(#[from] InfraError),
}

impl<C: Clock, I: Inbox, M: Metrics> Ingest<'_, C, I, M> {
    pub async fn handle(&self, signature: Option<&str>, body: &[u8], trace_id: &str) -> Result<Accepted, IngestError> {
        if body.len() > self.settings.max_body_bytes {
            return Err(IngestError::TooLarge);
        }
        let now = self.clock.now();
        self.verifier.verify(signature, body, now.timestamp(), Some(self.settings.tolerance_secs))?;
        let (mut event, email) = match event::parse(body)? {
            Classified::Handled { event, email } => (*event, email),
            Classified::Ignored { event_id, event_type, api_version } => {
                self.note_api_version(api_version.as_deref());
                self.metrics.count("stripe_events_ignored", 1, None);
                info!(event_id = %event_id, event_type = %event_type, "stripe event type not handled; acknowledged");
                return Ok(Accepted::Ignored { event_id });
            }
            Classified::Unroutable { event_id, event_type } => {
                self.metrics.count("stripe_events_unroutable", 1, None);
                warn!(event_id = %event_id, event_type = %event_type, "stripe event names no payment; acknowledged");
                return Ok(Accepted::Ignored { event_id });
            }
        };
        self.note_api_version(event.api_version.as_deref());
        event.subject = email.and_then(|e| self.hasher.hash(IdentifierKind::Email, &e));
        let event_id = event.event_id.clone();
        let api_version = event.api_version.clone();

        let key = format!("{SOURCE}#{event_id}");
        let expires_at = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(19));
        let (merchant, subject) = (event.merchant.clone(), event.subject.clone());
        let owner = Owner { merchant: merchant.as_deref(), subject: subject.as_deref() };
        let body = envelope(event, now, trace_id).encode();
        if self.inbox.hand_off(&key, &body, &owner, now, expires_at).await? == Recorded::Duplicate {
            self.metrics.count("stripe_events_duplicate", 1, None);
            info!(event_id = %event_id, "duplicate stripe delivery; nothing handed on");
            return Ok(Accepted::Duplicate { event_id });
        }
        self.metrics.count("stripe_events_queued", 1, None);
        info!(event_id = %event_id, api_version = api_version.as_deref().unwrap_or("none"), "stripe event queued");
        Ok(Accepted::Queued { event_id })
    }

    fn note_api_version(&self, seen: Option<&str>) {
        let pinned = self.settings.pinned_api_version.as_deref();
        if pinned.is_some() && seen != pinned {
            self.metrics.count("stripe_api_version_mismatch", 1, Some(("ApiVersion", seen.unwrap_or("none"))));
            warn!(
                api_version = seen.unwrap_or("none"),
                pinned = pinned.unwrap_or(""),
                "stripe event api_version differs from the pinned one"
            );
        }
    }
}

fn envelope(event: PaymentEvent, now: chrono::DateTime<chrono::Utc>, trace_id: &str) -> Envelope<PaymentEvent> {
    Envelope::new(event.event_id.clone(), now, trace_id.to_owned(), event)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use chrono::TimeZone;
    use secrecy::SecretString;

    use super::*;
    use crate::adapters::memory::{FixedClock, MemoryInbox, MemoryMetrics};
    use crate::domain::stripe::event::PaymentEvent;
    use crate::domain::stripe::signature::sign_header;

    struct World {
        verifier: Verifier,
        hasher: SubjectHasher,
        clock: FixedClock,
        inbox: MemoryInbox,
        metrics: MemoryMetrics,
        settings: IngestSettings,
    }

    impl World {
        fn new() -> Self {
            Self {
                verifier: Verifier::new(&[SecretString::from("whsec_t")]).unwrap(),
                hasher: SubjectHasher::new(&SecretString::from("pepper")),
                clock: FixedClock::at(chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap()),
                inbox: MemoryInbox::default(),
                metrics: MemoryMetrics::default(),
                settings: IngestSettings {
                    max_body_bytes: 4096,
                    tolerance_secs: 300,
                    pinned_api_version: Some("2026-04-22.dahlia".into()),
                },
            }
        }

        async fn send(&self, body: &str, secret: &str) -> Result<Accepted, IngestError> {
            let header = sign_header(&[secret], 1_800_000_000, body.as_bytes());
            let ingest = Ingest {
                verifier: &self.verifier,
                hasher: &self.hasher,
                clock: &self.clock,
                inbox: &self.inbox,
                metrics: &self.metrics,
                settings: &self.settings,
            };
            ingest.handle(Some(&header), body.as_bytes(), "trace").await
        }
    }

    const BODY: &str = r#"{"id":"evt_9","type":"checkout.session.completed","api_version":"2020-08-27","created":1,
        "data":{"object":{"id":"cs_1","object":"checkout.session","payment_intent":"pi_9","payment_status":"paid",
        "amount_total":500,"currency":"eur","customer_details":{"email":"Jo@Example.com","name":"Jo Doe"}}}}"#;

    #[tokio::test]
    async fn a_new_event_is_queued_in_an_envelope_carrying_the_subject_hash_not_the_email() {
        let w = World::new();
        assert_eq!(w.send(BODY, "whsec_t").await.unwrap(), Accepted::Queued { event_id: "evt_9".into() });
        let sent = w.inbox.bodies();
        assert_eq!(sent.len(), 1);
        assert!(!sent[0].to_lowercase().contains("jo@example.com") && !sent[0].contains("Jo Doe"));
        let env = Envelope::<PaymentEvent>::decode(&sent[0]).unwrap();
        assert_eq!(env.payload.subject, w.hasher.hash(IdentifierKind::Email, "jo@example.com"));
        assert_eq!(env.id, "evt_9");
        assert_eq!(w.metrics.get("stripe_api_version_mismatch"), 1);
    }

    #[tokio::test]
    async fn a_forged_event_leaves_nothing_and_a_duplicate_queues_nothing() {
        let w = World::new();
        assert!(matches!(w.send(BODY, "whsec_other").await, Err(IngestError::Signature(SignatureError::NoMatch))));
        assert!(w.inbox.records.lock().unwrap().is_empty());
        w.send(BODY, "whsec_t").await.unwrap();
        assert_eq!(w.send(BODY, "whsec_t").await.unwrap(), Accepted::Duplicate { event_id: "evt_9".into() });
        assert_eq!(w.inbox.bodies().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_hand_off_is_retryable_and_leaves_nothing_behind() {
        let w = World::new();
        w.inbox.fail.store(true, Ordering::SeqCst);
        assert!(matches!(w.send(BODY, "whsec_t").await, Err(IngestError::Unavailable(_))));
        assert!(w.inbox.records.lock().unwrap().is_empty());
        w.inbox.fail.store(false, Ordering::SeqCst);
        assert!(matches!(w.send(BODY, "whsec_t").await, Ok(Accepted::Queued { .. })));
    }

    /// Lambda cuts an invocation off at any point: before the one write, or after it with the answer
    /// lost. Either way Stripe gets no 2xx and redelivers, and the event is handed on exactly once.
    #[tokio::test]
    async fn an_invocation_cut_off_at_any_point_is_redelivered_and_handed_on_exactly_once() {
        for after in [false, true] {
            let w = World::new();
            w.inbox.cut.arm(1, after);
            let cut = tokio::time::timeout(std::time::Duration::from_millis(50), w.send(BODY, "whsec_t")).await;
            assert!(cut.is_err(), "the invocation never answered");
            w.inbox.cut.arm(0, false);
            let redelivered = w.send(BODY, "whsec_t").await.unwrap();
            assert_eq!(
                matches!(redelivered, Accepted::Queued { .. }),
                !after,
                "after the write took effect, the redelivery is a duplicate: {redelivered:?}"
            );
            assert_eq!(w.inbox.bodies().len(), 1, "handed on exactly once (after: {after})");
        }
    }
}
