//! Forwarding: an event becomes one delivery per subscribed endpoint; each delivery is attempted on the
//! Standard Webhooks schedule until a 2xx, the end of the schedule, a 410 or an abort; failed deliveries
//! stay, and a replay starts a new round from the data as it is then.
//!
//! Holding the waits. SQS delays end at 15 minutes, the schedule's waits reach 10 hours. Every pending
//! delivery carries `due_at` in a sparse index (`next_due`) that the delivery scheduler reads every
//! minute; waits of up to 15 minutes also travel as a delayed message, so the first retries (immediately,
//! 5 s, 5 min) do not wait for the minute. The index is the record: a delayed message is an optimisation,
//! and its `due_at` is set 15 minutes past it, so a message lost in a crash is sent again by the index.
//! A chain of delayed messages would hold a 10-hour wait in 40 hops (40 chances to lose it or double
//! it); EventBridge Scheduler would mean one schedule per delivery, created and deleted with it. The
//! index costs one write per attempt and a query per minute, and a test drives it with an injected clock.
//!
//! Exactly once in effect: every queued job names the delivery's `step`, a fencing token each transition
//! bumps. A claim is a conditional write on the step, so duplicated, stale or reordered jobs do nothing,
//! and two senders never attempt the same step.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::domain::retention::{self, DataClass};
use crate::domain::webhooks::{self, Verdict};
use crate::ports::{
    Attempt, Clock, Delivery, DeliveryQueue, DeliveryRef, DeliveryState, Endpoint, EventData, InfraError, Metrics,
    Outgoing, Sender, SigningSecrets, Source, Transition, WebhookStore,
};

/// Claims in a row without an outcome after which a delivery is kept as failed (`internal_error`).
pub const MAX_STUCK: u32 = 5;

/// How the forwarder holds its waits.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The longest wait sent as a delayed message (SQS: 900 s); longer ones wait in the due index only.
    pub max_queue_delay: i64,
    /// How long after a job was queued the due index offers it again if it was lost.
    pub backstop: i64,
    /// How long a claim holds a delivery (more than the attempt's 15 s and the records around it).
    pub lease: i64,
    /// How long an endpoint is left alone after it did not answer, or took over 10 s to.
    pub pause_after_no_answer: i64,
}

impl Default for Timing {
    fn default() -> Self {
        Self { max_queue_delay: 900, backstop: 900, lease: 60, pause_after_no_answer: 30 }
    }
}

impl Timing {
    /// The default with another backstop, kept between twice the lease and SQS's longest delay (the soak
    /// shortens it, as it shortens the functions' time limits, so that a lost job comes round in minutes).
    pub fn with_backstop(backstop: i64) -> Self {
        let d = Self::default();
        Self { backstop: backstop.clamp(2 * d.lease, 900), ..d }
    }
}

/// A new event about a merchant's order or payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub merchant: String,
    pub event_id: String,
    pub event_type: String,
    pub source: Source,
    pub created_ms: i64,
}

fn delivery_expiry(now: DateTime<Utc>) -> i64 {
    retention::deadline(DataClass::WebhookDeliveryRecord, now).unwrap_or(now).timestamp()
}

/// Creates the event's deliveries (one per endpoint that wants its type) and queues the pending ones.
/// Safe to run again: existing deliveries are not recreated, and a first job is queued again only for a
/// delivery still waiting for its first attempt.
pub async fn dispatch<S: WebhookStore, Q: DeliveryQueue>(
    store: &S, queue: &Q, timing: &Timing, event: &NewEvent, now: DateTime<Utc>,
) -> Result<usize, InfraError> {
    let endpoints = store.endpoints(&event.merchant).await?;
    let mut jobs = Vec::new();
    for e in endpoints.iter().filter(|e| e.wants(&event.event_type)) {
        let d = Delivery {
            merchant: event.merchant.clone(),
            endpoint: e.id.clone(),
            event_id: event.event_id.clone(),
            event_type: event.event_type.clone(),
            source: event.source.clone(),
            created_ms: event.created_ms,
            // Kept as failed for a disabled endpoint, so a replay can send it once the endpoint is fixed.
            state: if e.enabled { DeliveryState::Pending } else { DeliveryState::Failed },
            round: 0,
            attempts: 0,
            step: 0,
            next_at: now.timestamp(),
            stuck: 0,
            last_status: None,
            last_error: (!e.enabled).then(|| "endpoint_disabled".to_owned()),
            expires_at: delivery_expiry(now),
        };
        let pending = d.state == DeliveryState::Pending;
        let created = store.create(&d, pending.then_some(now.timestamp() + timing.backstop)).await?;
        if created {
            if pending {
                jobs.push(DeliveryRef::of(&d));
            }
        } else if let Some(existing) = store.delivery(&d.merchant, &d.endpoint, &d.event_id).await? {
            // A redelivered event: its first job may never have been queued.
            if existing.state == DeliveryState::Pending && existing.step == 0 {
                jobs.push(DeliveryRef::of(&existing));
            }
        }
    }
    queue.enqueue(&jobs, 0).await?;
    Ok(jobs.len())
}

/// What one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The job's step is not the delivery's (done already, a duplicate, replaced by a replay).
    Stale,
    Delivered,
    /// Failed this time; the next attempt in `wait` seconds.
    Retrying {
        wait: i64,
    },
    /// The delivery is kept as failed (schedule spent, 410, abort, endpoint disabled, source gone).
    Failed {
        reason: String,
    },
    /// The endpoint is paused; the delivery waits until then without spending an attempt.
    Deferred {
        until: i64,
    },
}

/// The sender's use case.
pub struct Deliver<'a, C, S, K, D, H, Q, M> {
    pub clock: &'a C,
    pub store: &'a S,
    pub secrets: &'a K,
    pub data: &'a D,
    pub http: &'a H,
    pub queue: &'a Q,
    pub metrics: &'a M,
    pub timing: Timing,
}

impl<C, S, K, D, H, Q, M> Deliver<'_, C, S, K, D, H, Q, M>
where
    C: Clock,
    S: WebhookStore,
    K: SigningSecrets,
    D: EventData,
    H: Sender,
    Q: DeliveryQueue,
    M: Metrics,
{
    pub async fn handle(&self, job: &DeliveryRef) -> Result<Done, InfraError> {
        let Some(d) = self.store.delivery(&job.merchant, &job.endpoint, &job.event_id).await? else {
            return Ok(Done::Stale);
        };
        if d.state != DeliveryState::Pending || d.step != job.step {
            return Ok(Done::Stale);
        }
        let now = self.clock.now();
        let t = now.timestamp();
        if d.next_at > t + 2 {
            // Early (clocks, or a wait that grew): queue it for its time if the queue can hold the wait;
            // otherwise the due index offers it then.
            let wait = d.next_at - t;
            if wait <= self.timing.max_queue_delay {
                self.queue.enqueue(&[DeliveryRef::of(&d)], wait).await?;
            }
            return Ok(Done::Deferred { until: d.next_at });
        }
        if !self.store.claim(&d, t + self.timing.lease + self.timing.backstop).await? {
            return Ok(Done::Stale);
        }
        let d = Delivery { step: d.step + 1, stuck: d.stuck + 1, ..d };
        if d.stuck > MAX_STUCK {
            // Claimed again and again with nothing recorded: kept as failed (replayable), and counted.
            self.metrics.count("WebhookDeliveriesExhausted", 1, None);
            return self.fail(&d, d.attempts, d.last_status, "internal_error").await;
        }
        let endpoint = self.store.endpoint(&d.merchant, &d.endpoint).await?;
        let Some(mut endpoint) = endpoint.filter(|e| e.enabled) else {
            return self.fail(&d, d.attempts, None, "endpoint_disabled").await;
        };
        if let Some(until) = endpoint.paused_until.filter(|u| *u > t) {
            return self
                .wait(&d, d.attempts, until - t, d.last_status, d.last_error.clone(), Done::Deferred { until })
                .await;
        }
        let Some(data) = self.data.render(&d.merchant, &d.source, now).await? else {
            return self.fail(&d, d.attempts, None, "source_gone").await;
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "type": d.event_type,
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "data": data,
        }))
        .unwrap_or_default();
        let keys = match self.secrets.keys(&endpoint, t).await {
            Ok(k) => k,
            // No key can sign (the secret is gone or unreadable as it is): kept as failed, not retried blind.
            Err(e) if !e.retryable => return self.fail(&d, d.attempts, None, "no_signing_key").await,
            Err(e) => return Err(e),
        };
        let answer = self.http.send(&Outgoing { url: &endpoint.url, id: &d.event_id, body: &body, keys: &keys }).await;
        let n = d.attempts + 1;
        self.store
            .record_attempt(&Attempt {
                merchant: d.merchant.clone(),
                endpoint: d.endpoint.clone(),
                event_id: d.event_id.clone(),
                round: d.round,
                n,
                at_ms: now.timestamp_millis(),
                status: answer.status,
                latency_ms: answer.latency_ms,
                error: answer.error.map(str::to_owned),
                expires_at: delivery_expiry(now),
            })
            .await?;
        let verdict = webhooks::verdict(answer.status, answer.retry_after.as_deref(), answer.abort);
        let outcome = match &verdict {
            Verdict::Delivered => {
                self.advance(
                    &d,
                    Transition {
                        state: DeliveryState::Succeeded,
                        attempts: n,
                        next_at: t,
                        due_at: None,
                        last_status: answer.status,
                        last_error: None,
                    },
                )
                .await?;
                Done::Delivered
            }
            Verdict::Gone => self.fail(&d, n, answer.status, "gone_410").await?,
            Verdict::Abort => self.fail(&d, n, answer.status, "aborted_by_receiver").await?,
            Verdict::Retry { retry_after } => match webhooks::next_wait(n, *retry_after) {
                None => {
                    self.metrics.count("WebhookDeliveriesExhausted", 1, None);
                    self.fail(&d, n, answer.status, "attempts_exhausted").await?
                }
                Some(wait) => {
                    let error = answer.error.map(str::to_owned);
                    self.wait(&d, n, wait, answer.status, error, Done::Retrying { wait }).await?
                }
            },
        };
        self.health(&mut endpoint, &verdict, &answer, t).await?;
        Ok(outcome)
    }

    /// Records the next attempt `wait` seconds from now and queues it if the queue can hold the wait.
    async fn wait(
        &self, d: &Delivery, attempts: u32, wait: i64, last_status: Option<u16>, last_error: Option<String>, done: Done,
    ) -> Result<Done, InfraError> {
        let t = self.clock.now().timestamp();
        let queued = wait <= self.timing.max_queue_delay;
        let next_at = t + wait;
        let due_at = if queued { next_at + self.timing.backstop } else { next_at };
        let moved = self
            .store
            .advance(
                d,
                &Transition {
                    state: DeliveryState::Pending,
                    attempts,
                    next_at,
                    due_at: Some(due_at),
                    last_status,
                    last_error,
                },
            )
            .await?;
        if moved && queued {
            self.queue.enqueue(&[DeliveryRef { step: d.step + 1, ..DeliveryRef::of(d) }], wait).await?;
        }
        Ok(done)
    }

    async fn fail(&self, d: &Delivery, attempts: u32, status: Option<u16>, reason: &str) -> Result<Done, InfraError> {
        self.advance(
            d,
            Transition {
                state: DeliveryState::Failed,
                attempts,
                next_at: self.clock.now().timestamp(),
                due_at: None,
                last_status: status,
                last_error: Some(reason.to_owned()),
            },
        )
        .await?;
        Ok(Done::Failed { reason: reason.to_owned() })
    }

    async fn advance(&self, d: &Delivery, t: Transition) -> Result<(), InfraError> {
        if !self.store.advance(d, &t).await? {
            warn!(event_id = %d.event_id, endpoint = %d.endpoint, "delivery moved on under its claim; outcome not recorded");
        }
        Ok(())
    }

    /// The endpoint's health after an attempt: failing since when, paused until when, disabled (410, or
    /// failing for 5 days). Written only when it changes.
    async fn health(
        &self, e: &mut Endpoint, verdict: &Verdict, answer: &crate::ports::Answer, t: i64,
    ) -> Result<(), InfraError> {
        let before = e.clone();
        match verdict {
            Verdict::Delivered => {
                e.failing_since = None;
                // A receiver that answers, but only after 10 s, is given a breather all the same.
                e.paused_until = (answer.latency_ms > 10_000).then_some(t + self.timing.pause_after_no_answer);
                // At most one write a minute for a healthy endpoint.
                if e.last_success_at.is_none_or(|s| t - s >= 60) {
                    e.last_success_at = Some(t);
                }
            }
            _ => {
                e.failing_since = Some(e.failing_since.unwrap_or(t));
                e.last_failure_at = Some(t);
                // Its `Retry-After`; else a pause when it did not answer or took over 10 s to, so a dead or
                // tarpitting endpoint takes one attempt per pause, not one per waiting delivery, and holds no
                // sender capacity meanwhile. A fast failure keeps the schedule (its 5 s retry is the next).
                let slow = answer.status.is_none() || answer.latency_ms > 10_000;
                let pause = match verdict {
                    Verdict::Retry { retry_after: Some(r) } => Some(*r),
                    _ if slow => Some(self.timing.pause_after_no_answer),
                    _ => None,
                };
                e.paused_until = pause.map(|p| t + p);
                if *verdict == Verdict::Gone {
                    e.enabled = false;
                    e.disabled_reason = Some("gone_410".into());
                } else if e.failing_since.is_some_and(|f| t - f >= webhooks::DISABLE_AFTER_SECS) {
                    e.enabled = false;
                    e.disabled_reason = Some("failing_5_days".into());
                }
                if before.enabled && !e.enabled {
                    self.metrics.count("WebhookEndpointsDisabled", 1, None);
                    warn!(endpoint = %e.id, merchant = %e.merchant, reason = ?e.disabled_reason, "webhook endpoint disabled");
                }
            }
        }
        if *e != before {
            self.store.save_health(e).await?;
        }
        Ok(())
    }
}

/// A stable spread of `0..secs` seconds for `key`, so deliveries waiting on the same moment fan out.
pub fn spread(key: &str, secs: i64) -> i64 {
    i64::from(webhooks::stable_hash(key)) % secs.max(1)
}

/// The delivery scheduler: queues every pending delivery whose time has come in the due index, then moves
/// its `due_at` a backstop later (if the job is lost, it comes round again). Returns how many it queued.
pub async fn queue_due<S: WebhookStore, Q: DeliveryQueue>(
    store: &S, queue: &Q, timing: &Timing, now: DateTime<Utc>, limit: usize,
) -> Result<usize, InfraError> {
    let t = now.timestamp();
    let due = store.due(t, limit).await?;
    queue.enqueue(&due, 0).await?;
    use futures_util::stream::{self, TryStreamExt};
    stream::iter(due.iter().map(Ok)).try_for_each_concurrent(16, |job| store.defer(job, t + timing.backstop)).await?;
    if !due.is_empty() {
        info!(queued = due.len(), "due deliveries queued");
    }
    Ok(due.len())
}

/// Starts a new round for each of `deliveries` (failed or succeeded; pending ones are left as they are)
/// and queues them ten a second, so a large replay reaches the endpoint as a stream, not a burst. Returns
/// how many it started.
pub async fn replay<S: WebhookStore, Q: DeliveryQueue>(
    store: &S, queue: &Q, timing: &Timing, deliveries: &[&Delivery], now: DateTime<Utc>,
) -> Result<usize, InfraError> {
    let t = now.timestamp();
    let mut jobs = Vec::new();
    for d in deliveries.iter().filter(|d| d.state != DeliveryState::Pending) {
        let delay = (jobs.len() / 10) as i64;
        if let Some(reopened) = store.reopen(d, t + delay, t + delay + timing.backstop, delivery_expiry(now)).await? {
            jobs.push(DeliveryRef::of(&reopened));
        }
    }
    for (i, chunk) in jobs.chunks(10).enumerate() {
        queue.enqueue(chunk, (i as i64).min(900)).await?;
    }
    Ok(jobs.len())
}
