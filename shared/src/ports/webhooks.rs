//! Forwarding's ports: the merchants' endpoints, the deliveries and their attempts, the endpoints' signing
//! secrets, the data a delivery renders its body from, and the HTTP sender.

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::InfraError;

/// A merchant's webhook endpoint. No secret (its own Secrets Manager secret) and no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub merchant: String,
    /// `ep_` + 24 hex characters.
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: String,
    pub enabled: bool,
    /// Why it is disabled: `merchant`, `gone_410`, `failing_5_days`.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    pub secret_id: String,
    /// Bumped at each rotation, so senders reload the secret.
    #[serde(default)]
    pub secret_version: u32,
    /// Epoch seconds.
    pub created_at: i64,
    /// The first failed attempt since the last success (epoch seconds).
    #[serde(default)]
    pub failing_since: Option<i64>,
    #[serde(default)]
    pub last_success_at: Option<i64>,
    #[serde(default)]
    pub last_failure_at: Option<i64>,
    /// No attempt before this (the receiver's `Retry-After`, or a timeout): deliveries wait instead of
    /// each spending 15 s on a dead endpoint.
    #[serde(default)]
    pub paused_until: Option<i64>,
}

impl Endpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == event_type)
    }
}

/// Where a delivery's body comes from: the data as it is when the attempt is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A marketplace order (`order#<marketplace>#<id>` in the orders table).
    Order { order_sk: String },
    /// A storefront order's payment (the payments table's `payment_key`).
    Payment { payment_key: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Succeeded,
    /// Every attempt failed, the receiver aborted, or the endpoint was disabled: kept, replayable.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub merchant: String,
    pub endpoint: String,
    /// The `webhook-id`: stable across attempts and replays, the receiver's de-duplication key.
    pub event_id: String,
    pub event_type: String,
    pub source: Source,
    /// When the event was created (epoch milliseconds): replays by time range select on it.
    pub created_ms: i64,
    pub state: DeliveryState,
    /// Rounds: 0 for the first, one more for each replay.
    #[serde(default)]
    pub round: u64,
    /// Attempts made in the current round (a replay starts a new round).
    pub attempts: u32,
    /// A fencing token, bumped by every transition: a queued message names the step it is for, so a
    /// stale or duplicated message does nothing.
    pub step: u64,
    /// When the next attempt is due (epoch seconds).
    pub next_at: i64,
    /// Claims in a row that never moved the delivery on (an attempt cut off, a store or secret that keeps
    /// failing): counted so such a delivery ends as failed instead of looping unseen. Reset by every move.
    #[serde(default)]
    pub stuck: u32,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// TTL (epoch seconds): the policy's window for delivery records.
    pub expires_at: i64,
}

/// One attempt, as recorded: never the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub merchant: String,
    pub endpoint: String,
    pub event_id: String,
    pub round: u64,
    pub n: u32,
    /// Epoch milliseconds.
    pub at_ms: i64,
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// `timeout`, `connect`, `forbidden_address`, ... when no status came back.
    pub error: Option<String>,
    pub expires_at: i64,
}

/// The next state of a claimed delivery, written only if its step is still the claimed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_at: i64,
    /// When the due index next offers it (absent when it is no longer pending).
    pub due_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// Endpoints, deliveries and attempts (the webhooks table).
pub trait WebhookStore: Send + Sync {
    fn endpoints(&self, merchant: &str) -> impl Future<Output = Result<Vec<Endpoint>, InfraError>> + Send;
    fn endpoint(&self, merchant: &str, id: &str) -> impl Future<Output = Result<Option<Endpoint>, InfraError>> + Send;
    /// Creates a delivery unless one exists for the endpoint and event; `true` if created.
    fn create(&self, d: &Delivery, due_at: Option<i64>) -> impl Future<Output = Result<bool, InfraError>> + Send;
    fn delivery(
        &self, merchant: &str, endpoint: &str, event_id: &str,
    ) -> impl Future<Output = Result<Option<Delivery>, InfraError>> + Send;
    /// Takes `step` (sets `step + 1`) if the delivery is still pending at that step; `due_at` is when the
    /// due index offers it again should this attempt never record its outcome.
    fn claim(&self, d: &Delivery, due_at: i64) -> impl Future<Output = Result<bool, InfraError>> + Send;
    /// Moves a claimed delivery (at `d.step`) on; `false` if another step took it meanwhile.
    fn advance(&self, d: &Delivery, t: &Transition) -> impl Future<Output = Result<bool, InfraError>> + Send;
    fn record_attempt(&self, a: &Attempt) -> impl Future<Output = Result<(), InfraError>> + Send;
    /// A failed or succeeded delivery back to pending, a new round, due now; the delivery as it is then.
    fn reopen(
        &self, d: &Delivery, now: i64, due_at: i64, expires_at: i64,
    ) -> impl Future<Output = Result<Option<Delivery>, InfraError>> + Send;
    /// Pending deliveries whose `due_at` has come, at their current step.
    fn due(&self, now: i64, limit: usize) -> impl Future<Output = Result<Vec<DeliveryRef>, InfraError>> + Send;
    /// Moves a delivery's `due_at` (if it is still pending at the job's step).
    fn defer(&self, job: &DeliveryRef, due_at: i64) -> impl Future<Output = Result<(), InfraError>> + Send;
    /// Writes the endpoint's health fields (failing, paused, disabled).
    fn save_health(&self, e: &Endpoint) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// The keys that sign for an endpoint now: the current one first, then one in its rotation overlap.
pub trait SigningSecrets: Send + Sync {
    fn keys(&self, endpoint: &Endpoint, now: i64) -> impl Future<Output = Result<Vec<Vec<u8>>, InfraError>> + Send;
}

/// What an event's body says, rendered from the data as it is now.
pub trait EventData: Send + Sync {
    /// The `data` object of the event, or `None` when the source no longer exists.
    fn render(
        &self, merchant: &str, source: &Source, now: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, InfraError>> + Send;
}

/// One signed request to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub id: &'a str,
    pub body: &'a [u8],
    pub keys: &'a [Vec<u8>],
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub abort: bool,
    pub latency_ms: u64,
    /// Why no status came back.
    pub error: Option<&'static str>,
}

/// The HTTP sender: signs at the moment of sending (`webhook-timestamp` is the wall clock then).
pub trait Sender: Send + Sync {
    fn send(&self, out: &Outgoing<'_>) -> impl Future<Output = Answer> + Send;
}

/// A queued delivery job: which delivery, at which step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRef {
    pub merchant: String,
    pub endpoint: String,
    pub event_id: String,
    pub step: u64,
}

#[derive(Deserialize, Serialize)]
struct QueuedDelivery {
    delivery: DeliveryRef,
}

impl DeliveryRef {
    pub fn of(d: &Delivery) -> Self {
        Self { merchant: d.merchant.clone(), endpoint: d.endpoint.clone(), event_id: d.event_id.clone(), step: d.step }
    }
    pub fn encode(&self) -> String {
        serde_json::to_string(&QueuedDelivery { delivery: self.clone() }).unwrap_or_default()
    }
    /// Reads a queued job; `None` for anything else.
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str::<QueuedDelivery>(body).ok().map(|q| q.delivery)
    }
}

/// The deliveries queue.
pub trait DeliveryQueue: Send + Sync {
    /// Queues `jobs`, each visible after `delay_secs` (at most SQS's 900).
    fn enqueue(&self, jobs: &[DeliveryRef], delay_secs: i64) -> impl Future<Output = Result<(), InfraError>> + Send;
}
