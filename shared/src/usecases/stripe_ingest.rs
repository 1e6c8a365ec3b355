//! Ingest one Stripe webhook delivery: verify, parse, de-duplicate, hand off to the payments queue.
//!
//! Order of work is the contract: nothing is parsed before the signature over the exact raw body is
//! verified, and nothing is stored or queued for a request that is refused. A new event costs two AWS
//! requests (one conditional put, one SendMessage), a duplicate one.

use chrono::Duration;
use tracing::{info, warn};

use crate::domain::envelope::Envelope;
use crate::domain::retention::{self, DataClass};
use crate::domain::stripe::event::{self, Classified, ParseError, PaymentEvent};
use crate::domain::stripe::signature::{SignatureError, Verifier};
use crate::domain::subject::{IdentifierKind, SubjectHasher};
use crate::ports::{Clock, IdempotencyStore, InfraError, Metrics, Queue, Recorded};

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
pub struct Ingest<'a, C, I, Q, M> {
    pub verifier: &'a Verifier,
    pub hasher: &'a SubjectHasher,
    pub clock: &'a C,
    pub idempotency: &'a I,
    pub queue: &'a Q,
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
    /// Saving or queueing failed: the platform must retry.
    #[error(transparent)]
    Unavailable(#[from] InfraError),
}

impl<C: Clock, I: IdempotencyStore, Q: Queue, M: Metrics> Ingest<'_, C, I, Q, M> {
    pub async fn handle(&self, signature: Option<&str>, body: &[u8], trace_id: &str) -> Result<Accepted, IngestError> {
        if body.len() > self.settings.max_body_bytes {
            return Err(IngestError::TooLarge);
        }
        let now = self.clock.now();
        self.verifier
            .verify(signature, body, now.timestamp(), Some(self.settings.tolerance_secs))?;
        let (mut event, email) = match event::parse(body)? {
            Classified::Handled { event, email } => (*event, email),
            Classified::Ignored {
                event_id,
                event_type,
                api_version,
            } => {
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

        let key = format!("{SOURCE}#{event_id}");
        let expires_at = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(8));
        if self.idempotency.record_once(&key, now, expires_at).await? == Recorded::Duplicate {
            self.metrics.count("stripe_events_duplicate", 1, None);
            info!(event_id = %event_id, "duplicate stripe delivery; nothing queued");
            return Ok(Accepted::Duplicate { event_id });
        }
        let body = envelope(event, now, trace_id).encode();
        if let Err(e) = self.queue.send(&body).await {
            // The record must not outlive a hand-off that did not happen, or Stripe's retry would be
            // taken for a duplicate and the event lost.
            if let Err(release) = self.idempotency.release(&key).await {
                self.metrics.count("idempotency_release_failed", 1, None);
                tracing::error!(event_id = %event_id, error = %release, "could not release the de-duplication record after a failed enqueue");
            }
            return Err(e.into());
        }
        self.metrics.count("stripe_events_queued", 1, None);
        info!(event_id = %event_id, "stripe event queued");
        Ok(Accepted::Queued { event_id })
    }

    fn note_api_version(&self, seen: Option<&str>) {
        let pinned = self.settings.pinned_api_version.as_deref();
        if pinned.is_some() && seen != pinned {
            self.metrics.count(
                "stripe_api_version_mismatch",
                1,
                Some(("ApiVersion", seen.unwrap_or("none"))),
            );
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
