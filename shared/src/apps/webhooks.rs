//! Forwarding to merchants' systems: the dispatcher (order events and payment changes become deliveries),
//! the sender (one signed attempt per job), the delivery scheduler (what waits in the due index), and the
//! merchant API's endpoint routes.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tracing::{info, Instrument};

use crate::adapters::aws::Aws;
use crate::adapters::dynamo_orders::DynamoOrders;
use crate::adapters::dynamo_payments::DynamoPayments;
use crate::adapters::dynamo_webhooks::DynamoWebhooks;
use crate::adapters::emf::EmfMetrics;
use crate::adapters::sqs_batch::{self, Failure};
use crate::adapters::sqs_queue::SqsQueue;
use crate::adapters::webhook_delivery::{ForwardData, HttpSender, SecretsSigning};
use crate::config;
use crate::config::InitError;
use crate::domain::messages::OrderEventRef;
use crate::domain::webhooks::AddressPolicy;
use crate::function::{Function, Invocation, ScheduleFunction, SqsFunction};
use crate::ports::{Clock, DeliveryRef, InfraError, Metrics, PaymentStore, SharedClock, Source};
use crate::usecases::forwarding::{self, Deliver, Done, NewEvent, Timing};

/// A queued payment change of a storefront order: `{"payment_event": {"payment_key": ..}}`.
#[derive(serde::Deserialize)]
struct QueuedPayment {
    payment_event: PaymentRef,
}

#[derive(serde::Deserialize)]
struct PaymentRef {
    payment_key: String,
}

/// The order events queue: each new marketplace order version and each payment change of a storefront
/// order becomes one delivery per subscribed endpoint.
pub struct WebhookDispatcher {
    pub clock: SharedClock,
    pub orders: DynamoOrders,
    pub payments: DynamoPayments,
    pub webhooks: DynamoWebhooks,
    pub deliveries: SqsQueue,
    pub metrics: EmfMetrics,
    pub timing: Timing,
}

config! {
    WebhookDispatcherConfig {
        orders_table: String = "ORDERS_TABLE",
        payments_table: String = "PAYMENTS_TABLE",
        webhooks_table: String = "WEBHOOKS_TABLE",
        deliveries_queue_url: String = "DELIVERIES_QUEUE_URL",
        /// How long after a job was queued the due index offers it again if it was lost (120..=900 s).
        backstop: i64 = "WEBHOOK_BACKSTOP_SECS" or 900,
    }
}

impl Function for WebhookDispatcher {
    const NAME: &'static str = "webhook-dispatcher";
    type Config = WebhookDispatcherConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let ddb = aws.dynamodb();
        Ok(Self {
            clock,
            orders: DynamoOrders::new(ddb.clone(), config.orders_table),
            payments: DynamoPayments::new(ddb.clone(), config.payments_table),
            webhooks: DynamoWebhooks::new(ddb, config.webhooks_table),
            deliveries: SqsQueue::new(aws.sqs(), config.deliveries_queue_url),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            timing: Timing::with_backstop(config.backstop),
        })
    }
}

impl WebhookDispatcher {
    /// The event a queued body names, as it is now (`None`: nothing to forward).
    pub async fn event(&self, body: &str) -> Result<Option<NewEvent>, Failure> {
        if let Some(r) = OrderEventRef::parse(body) {
            let Some(e) = self.orders.event(&r.pk, &r.sk).await? else {
                info!("order event expired before forwarding; nothing to do");
                return Ok(None);
            };
            return Ok(Some(NewEvent {
                merchant: e.merchant,
                event_id: e.event_id,
                event_type: e.event_type,
                source: Source::Order { order_sk: e.order_sk },
                created_ms: e.version,
            }));
        }
        if let Ok(q) = serde_json::from_str::<QueuedPayment>(body) {
            let now = self.clock.now();
            let loaded = self.payments.get(&q.payment_event.payment_key, now).await?;
            let Some(p) = loaded.value else { return Ok(None) };
            let Some(merchant) = p.merchant else { return Ok(None) };
            return Ok(Some(NewEvent {
                merchant,
                event_id: format!("payment:{}:{}", p.payment_key, p.version),
                event_type: "payment.updated".into(),
                source: Source::Payment { payment_key: p.payment_key },
                created_ms: p.updated_at.timestamp_millis(),
            }));
        }
        Err(Failure::new("MalformedEvent", "not an order event or a payment change"))
    }
}

impl SqsFunction for WebhookDispatcher {
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span = tracing::info_span!("webhook_dispatcher", request_id = %invocation.request_id, records = event.records.len());
        let response = sqs_batch::process(event, invocation.deadline, |record| async move {
            let Some(ev) = self.event(record.body.as_deref().unwrap_or("")).await? else {
                return Ok(());
            };
            let queued =
                forwarding::dispatch(&self.webhooks, &self.deliveries, &self.timing, &ev, self.clock.now()).await?;
            info!(event_id = %ev.event_id, event_type = %ev.event_type, queued, "event dispatched to endpoints");
            Ok::<_, Failure>(())
        })
        .instrument(span)
        .await;
        sqs_batch::count_failed(&self.metrics, "webhook_dispatch_records_failed", &response);
        response
    }
}

/// The deliveries queue: one signed attempt per job, the jobs of a batch side by side (each bounded by
/// the 15 s attempt timeout), so a slow endpoint holds up no other.
pub struct WebhookSender {
    pub clock: SharedClock,
    pub webhooks: DynamoWebhooks,
    pub secrets: SecretsSigning,
    pub data: ForwardData,
    pub http: HttpSender,
    pub deliveries: SqsQueue,
    pub metrics: EmfMetrics,
    pub timing: Timing,
}

config! {
    WebhookSenderConfig {
        orders_table: String = "ORDERS_TABLE",
        payments_table: String = "PAYMENTS_TABLE",
        webhooks_table: String = "WEBHOOKS_TABLE",
        deliveries_queue_url: String = "DELIVERIES_QUEUE_URL",
        /// Loopback endpoints (the local stack only).
        allow_loopback: bool = "WEBHOOK_ALLOW_LOOPBACK" or false,
        /// The longest wait held as a delayed message; 0 holds every wait in the due index.
        max_queue_delay: i64 = "WEBHOOK_MAX_QUEUE_DELAY_SECS" or 900,
        /// How long after a job was queued the due index offers it again if it was lost (120..=900 s).
        backstop: i64 = "WEBHOOK_BACKSTOP_SECS" or 900,
    }
}

impl Function for WebhookSender {
    const NAME: &'static str = "webhook-sender";
    type Config = WebhookSenderConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let ddb = aws.dynamodb();
        Ok(Self {
            clock,
            webhooks: DynamoWebhooks::new(ddb.clone(), config.webhooks_table),
            secrets: SecretsSigning::new(aws.secrets_manager()),
            data: ForwardData {
                orders: DynamoOrders::new(ddb.clone(), config.orders_table),
                payments: DynamoPayments::new(ddb, config.payments_table),
            },
            http: HttpSender::new(AddressPolicy { allow_loopback: config.allow_loopback }),
            deliveries: SqsQueue::new(aws.sqs(), config.deliveries_queue_url),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            timing: Timing {
                max_queue_delay: config.max_queue_delay.clamp(0, 900),
                ..Timing::with_backstop(config.backstop)
            },
        })
    }
}

impl WebhookSender {
    /// One job.
    pub async fn deliver(&self, job: &DeliveryRef) -> Result<Done, InfraError> {
        let uc = Deliver {
            clock: &self.clock,
            store: &self.webhooks,
            secrets: &self.secrets,
            data: &self.data,
            http: &self.http,
            queue: &self.deliveries,
            metrics: &self.metrics,
            timing: self.timing,
        };
        uc.handle(job).await
    }
}

impl SqsFunction for WebhookSender {
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span =
            tracing::info_span!("webhook_sender", request_id = %invocation.request_id, records = event.records.len());
        let response = sqs_batch::process_concurrently(event, |record| async move {
            let Some(job) = DeliveryRef::parse(record.body.as_deref().unwrap_or("")) else {
                return Err(Failure::new("MalformedJob", "not a delivery job"));
            };
            let done = self.deliver(&job).await?;
            let (outcome, detail) = match &done {
                Done::Stale => ("stale", String::new()),
                Done::Delivered => ("delivered", String::new()),
                Done::Retrying { wait } => ("retrying", format!("in {wait}s")),
                Done::Failed { reason } => ("failed", reason.clone()),
                Done::Deferred { until } => ("deferred", until.to_string()),
            };
            if !matches!(done, Done::Stale) {
                self.metrics.count("webhook_attempts", 1, Some(("outcome", outcome)));
            }
            info!(event_id = %job.event_id, endpoint = %job.endpoint, outcome, detail = %detail, "delivery job done");
            Ok::<_, Failure>(())
        })
        .instrument(span)
        .await;
        sqs_batch::count_failed(&self.metrics, "webhook_jobs_failed", &response);
        response
    }
}

/// Every minute: the deliveries whose wait has ended (and any job lost on the way) back onto the queue.
pub struct WebhookScheduler {
    pub clock: SharedClock,
    pub webhooks: DynamoWebhooks,
    pub deliveries: SqsQueue,
    pub timing: Timing,
}

config! {
    WebhookSchedulerConfig {
        webhooks_table: String = "WEBHOOKS_TABLE",
        deliveries_queue_url: String = "DELIVERIES_QUEUE_URL",
        /// How long after a job was queued the due index offers it again if it was lost (120..=900 s).
        backstop: i64 = "WEBHOOK_BACKSTOP_SECS" or 900,
    }
}

impl Function for WebhookScheduler {
    const NAME: &'static str = "webhook-scheduler";
    type Config = WebhookSchedulerConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        Ok(Self {
            clock,
            webhooks: DynamoWebhooks::new(aws.dynamodb(), config.webhooks_table),
            deliveries: SqsQueue::new(aws.sqs(), config.deliveries_queue_url),
            timing: Timing::with_backstop(config.backstop),
        })
    }
}

impl ScheduleFunction for WebhookScheduler {
    async fn schedule(
        &self, _event: serde_json::Value, invocation: &Invocation,
    ) -> Result<serde_json::Value, InfraError> {
        let span = tracing::info_span!("webhook_scheduler", request_id = %invocation.request_id);
        async {
            let queued =
                forwarding::queue_due(&self.webhooks, &self.deliveries, &self.timing, self.clock.now(), 2000).await?;
            Ok(serde_json::json!({ "queued": queued }))
        }
        .instrument(span)
        .await
    }
}

/// The merchant API's endpoint routes (the merchant comes from the key; another merchant's endpoints and
/// events are as absent as unknown ones):
/// - `POST /endpoints` (`{"url", "event_types": [..], "description"}`): 201 with the signing secret, shown
///   this once;
/// - `GET /endpoints`, `GET /endpoints/{id}` (with its health and recent attempts);
/// - `PATCH /endpoints/{id}` (`url`, `event_types`, `description`, `enabled`);
/// - `DELETE /endpoints/{id}` (its secret goes at once);
/// - `POST /endpoints/{id}/rotate-secret`: a new secret; the old one keeps signing for 24 hours;
/// - `GET /endpoints/{id}/deliveries[?state=failed]`, `GET /endpoints/{id}/attempts`;
/// - `POST /endpoints/{id}/replay` (`{"since", "until"}`, RFC 3339; `"include_succeeded": true` to send
///   those too): a new round for the endpoint's failed deliveries of events created in the range;
/// - `POST /events/{event id}/replay`: a new round of that event for each of the merchant's endpoints.
pub struct EndpointRoutes {
    pub clock: SharedClock,
    pub webhooks: DynamoWebhooks,
    pub signing: SecretsSigning,
    pub deliveries: SqsQueue,
    pub policy: AddressPolicy,
    pub secret_prefix: String,
    pub timing: Timing,
}

/// At most this many endpoints per merchant.
pub const MAX_ENDPOINTS: usize = 20;
/// At most this many deliveries replayed by one call (the answer says if more are left).
pub const MAX_REPLAY: usize = 500;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    include_succeeded: bool,
}

fn shown(e: &crate::ports::Endpoint) -> serde_json::Value {
    let at = |t: Option<i64>| t.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| t.to_rfc3339());
    serde_json::json!({
        "id": e.id,
        "url": e.url,
        "event_types": e.event_types,
        "description": e.description,
        "status": if e.enabled { "enabled" } else { "disabled" },
        "disabled_reason": e.disabled_reason,
        "failing_since": at(e.failing_since),
        "last_success_at": at(e.last_success_at),
        "last_failure_at": at(e.last_failure_at),
        "paused_until": at(e.paused_until),
        "created_at": at(Some(e.created_at)),
    })
}

fn shown_delivery(d: &crate::ports::Delivery) -> serde_json::Value {
    serde_json::json!({
        "event_id": d.event_id,
        "event_type": d.event_type,
        "state": d.state.as_str(),
        "round": d.round,
        "attempts": d.attempts,
        "next_attempt_at": (d.state == crate::ports::DeliveryState::Pending)
            .then(|| chrono::DateTime::from_timestamp(d.next_at, 0).map(|t| t.to_rfc3339())),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": chrono::DateTime::from_timestamp_millis(d.created_ms).map(|t| t.to_rfc3339()),
    })
}

fn shown_attempt(a: &crate::ports::Attempt) -> serde_json::Value {
    serde_json::json!({
        "event_id": a.event_id,
        "round": a.round,
        "attempt": a.n,
        "at": chrono::DateTime::from_timestamp_millis(a.at_ms).map(|t| t.to_rfc3339()),
        "status": a.status,
        "latency_ms": a.latency_ms,
        "error": a.error,
    })
}

fn valid_types(types: &[String]) -> bool {
    !types.is_empty() && types.len() <= 16 && types.iter().all(|t| crate::domain::webhooks::is_event_type(t))
}

impl EndpointRoutes {
    /// Whether `path` is one of these routes.
    pub fn owns(path: &str) -> bool {
        path == "/endpoints" || path.starts_with("/endpoints/") || path.starts_with("/events/")
    }

    pub async fn handle(
        &self, merchant: &str, method: &::http::Method, path: &str,
        query: &lambda_http::aws_lambda_events::query_map::QueryMap, body: &[u8],
    ) -> crate::function::Response {
        use crate::http;
        use ::http::Method;
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let id_ok =
            |id: &str| id.len() == 27 && id.starts_with("ep_") && id[3..].bytes().all(|b| b.is_ascii_hexdigit());
        match (method, parts.as_slice()) {
            (&Method::POST, ["endpoints"]) => self.create(merchant, body).await,
            (&Method::GET, ["endpoints"]) => {
                match crate::ports::WebhookStore::endpoints(&self.webhooks, merchant).await {
                    Ok(list) => {
                        http::json(200, serde_json::json!({ "endpoints": list.iter().map(shown).collect::<Vec<_>>() }))
                    }
                    Err(e) => http::unavailable(&e),
                }
            }
            (_, ["endpoints"]) => http::refuse(405, "method_not_allowed"),
            (_, ["endpoints", id, ..]) if !id_ok(id) => http::refuse(404, "no_such_endpoint"),
            (&Method::GET, ["endpoints", id]) => self.show(merchant, id).await,
            (&Method::PATCH, ["endpoints", id]) => self.update(merchant, id, body).await,
            (&Method::DELETE, ["endpoints", id]) => self.delete(merchant, id).await,
            (&Method::POST, ["endpoints", id, "rotate-secret"]) => self.rotate(merchant, id).await,
            (&Method::POST, ["endpoints", id, "replay"]) => self.replay_range(merchant, id, body).await,
            (&Method::GET, ["endpoints", id, "deliveries" | "attempts"]) if self.owned(merchant, id).await.is_err() => {
                http::refuse(404, "no_such_endpoint")
            }
            (&Method::GET, ["endpoints", id, "deliveries"]) => {
                use crate::ports::DeliveryState;
                let states: &[DeliveryState] = match query.first("state") {
                    None => &[],
                    Some("failed") => &[DeliveryState::Failed],
                    Some("pending") => &[DeliveryState::Pending],
                    Some("succeeded") => &[DeliveryState::Succeeded],
                    Some(_) => return http::refuse(400, "state_must_be_failed_pending_or_succeeded"),
                };
                match self.webhooks.deliveries_where(merchant, id, states, None, 500).await {
                    Ok((list, more)) => http::json(
                        200,
                        serde_json::json!({ "deliveries": list.iter().map(shown_delivery).collect::<Vec<_>>(), "more": more }),
                    ),
                    Err(e) => http::unavailable(&e),
                }
            }
            (&Method::GET, ["endpoints", id, "attempts"]) => match self.webhooks.attempts(merchant, id, 100).await {
                Ok(list) => http::json(
                    200,
                    serde_json::json!({ "attempts": list.iter().map(shown_attempt).collect::<Vec<_>>() }),
                ),
                Err(e) => http::unavailable(&e),
            },
            (&Method::POST, ["events", event_id, "replay"]) if !event_id.is_empty() && event_id.len() <= 256 => {
                self.replay_event(merchant, event_id).await
            }
            (_, ["endpoints", _, ..]) | (_, ["events", _, "replay"]) => http::refuse(405, "method_not_allowed"),
            _ => http::refuse(404, "not_found"),
        }
    }

    async fn checked_url(&self, raw: &str) -> Result<String, crate::function::Response> {
        let url = self.policy.check_url(raw).map_err(|e| crate::http::refuse(422, e.code()))?;
        crate::adapters::webhook_delivery::resolves_allowed(self.policy, &url)
            .await
            .map_err(|e| crate::http::refuse(422, e.code()))?;
        Ok(url.to_string())
    }

    async fn create(&self, merchant: &str, body: &[u8]) -> crate::function::Response {
        use crate::http;
        let Ok(b) = serde_json::from_slice::<EndpointBody>(body) else {
            return http::refuse(400, "body_must_be_an_endpoint");
        };
        let (Some(url), Some(types)) = (b.url, b.event_types) else {
            return http::refuse(400, "url_and_event_types_required");
        };
        if !valid_types(&types) {
            return http::refuse(422, "unknown_event_type");
        }
        let description = b.description.unwrap_or_default();
        if description.chars().count() > 200 {
            return http::refuse(422, "description_too_long");
        }
        let url = match self.checked_url(&url).await {
            Ok(u) => u,
            Err(r) => return r,
        };
        match crate::ports::WebhookStore::endpoints(&self.webhooks, merchant).await {
            Ok(list) if list.len() >= MAX_ENDPOINTS => return http::refuse(409, "too_many_endpoints"),
            Ok(_) => {}
            Err(e) => return http::unavailable(&e),
        }
        let id = format!("ep_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let secret = crate::domain::webhooks::new_secret();
        let secret_id = match self.signing.create(&format!("{}{id}", self.secret_prefix), &secret).await {
            Ok(s) => s,
            Err(e) => return http::unavailable(&e),
        };
        let endpoint = crate::ports::Endpoint {
            merchant: merchant.to_owned(),
            id: id.clone(),
            url,
            event_types: types,
            description,
            enabled: true,
            disabled_reason: None,
            secret_id: secret_id.clone(),
            secret_version: 0,
            created_at: self.clock.now().timestamp(),
            failing_since: None,
            last_success_at: None,
            last_failure_at: None,
            paused_until: None,
        };
        match self.webhooks.put_endpoint(&endpoint).await {
            Ok(true) => {
                info!(endpoint = %id, merchant = %merchant, "webhook endpoint registered");
                let mut v = shown(&endpoint);
                v["secret"] = secret.into();
                http::json(201, v)
            }
            Ok(false) => http::refuse(409, "endpoint_id_taken"),
            Err(e) => {
                // The write may have been applied with only its answer lost: the secret goes only if no
                // endpoint names it.
                if let Ok(None) = crate::ports::WebhookStore::endpoint(&self.webhooks, merchant, &id).await {
                    let _ = self.signing.delete(&secret_id).await;
                }
                http::unavailable(&e)
            }
        }
    }

    async fn owned(&self, merchant: &str, id: &str) -> Result<crate::ports::Endpoint, crate::function::Response> {
        match crate::ports::WebhookStore::endpoint(&self.webhooks, merchant, id).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(crate::http::refuse(404, "no_such_endpoint")),
            Err(e) => Err(crate::http::unavailable(&e)),
        }
    }

    async fn show(&self, merchant: &str, id: &str) -> crate::function::Response {
        let e = match self.owned(merchant, id).await {
            Ok(e) => e,
            Err(r) => return r,
        };
        match self.webhooks.attempts(merchant, id, 20).await {
            Ok(attempts) => {
                let mut v = shown(&e);
                v["recent_attempts"] = attempts.iter().map(shown_attempt).collect::<Vec<_>>().into();
                crate::http::json(200, v)
            }
            Err(err) => crate::http::unavailable(&err),
        }
    }

    async fn update(&self, merchant: &str, id: &str, body: &[u8]) -> crate::function::Response {
        use crate::http;
        let Ok(b) = serde_json::from_slice::<EndpointBody>(body) else {
            return http::refuse(400, "body_must_be_an_endpoint");
        };
        let mut e = match self.owned(merchant, id).await {
            Ok(e) => e,
            Err(r) => return r,
        };
        let was_enabled = e.enabled;
        if let Some(url) = b.url {
            e.url = match self.checked_url(&url).await {
                Ok(u) => u,
                Err(r) => return r,
            };
        }
        if let Some(types) = b.event_types {
            if !valid_types(&types) {
                return http::refuse(422, "unknown_event_type");
            }
            e.event_types = types;
        }
        if let Some(d) = b.description {
            if d.chars().count() > 200 {
                return http::refuse(422, "description_too_long");
            }
            e.description = d;
        }
        if let Some(enabled) = b.enabled {
            if enabled != e.enabled {
                e.enabled = enabled;
                e.disabled_reason = (!enabled).then(|| "merchant".to_owned());
                if enabled {
                    e.failing_since = None;
                    e.paused_until = None;
                }
            }
        }
        match self.webhooks.update_endpoint(&e, was_enabled).await {
            Ok(true) => http::json(200, shown(&e)),
            // Gone, or disabled (410, 5 days of failure) since it was read: the merchant reads it again.
            Ok(false) => http::refuse(409, "endpoint_changed_read_it_again"),
            Err(err) => http::unavailable(&err),
        }
    }

    async fn delete(&self, merchant: &str, id: &str) -> crate::function::Response {
        let e = match self.owned(merchant, id).await {
            Ok(e) => e,
            Err(r) => return r,
        };
        if let Err(err) = self.webhooks.delete_endpoint(merchant, id).await {
            return crate::http::unavailable(&err);
        }
        if let Err(err) = self.signing.delete(&e.secret_id).await {
            return crate::http::unavailable(&err);
        }
        crate::http::json(200, serde_json::json!({ "id": id, "status": "deleted" }))
    }

    async fn rotate(&self, merchant: &str, id: &str) -> crate::function::Response {
        let e = match self.owned(merchant, id).await {
            Ok(e) => e,
            Err(r) => return r,
        };
        let secret = crate::domain::webhooks::new_secret();
        let now = self.clock.now().timestamp();
        let until = now + crate::domain::webhooks::ROTATION_OVERLAP_SECS;
        if let Err(err) = self.signing.rotate(&e.secret_id, &secret, now, until).await {
            return crate::http::unavailable(&err);
        }
        match self.webhooks.bump_secret_version(merchant, id).await {
            Ok(true) => crate::http::json(
                200,
                serde_json::json!({
                    "id": id,
                    "secret": secret,
                    "previous_secret_valid_until": chrono::DateTime::from_timestamp(until, 0).map(|t| t.to_rfc3339()),
                }),
            ),
            Ok(false) => crate::http::refuse(404, "no_such_endpoint"),
            Err(err) => crate::http::unavailable(&err),
        }
    }

    async fn replay_range(&self, merchant: &str, id: &str, body: &[u8]) -> crate::function::Response {
        use crate::http;
        let Ok(b) = serde_json::from_slice::<ReplayBody>(body) else {
            return http::refuse(400, "body_must_name_since_and_until");
        };
        if b.until < b.since {
            return http::refuse(422, "until_before_since");
        }
        let e = match self.owned(merchant, id).await {
            Ok(e) => e,
            Err(r) => return r,
        };
        if !e.enabled {
            return http::refuse(409, "endpoint_disabled");
        }
        use crate::ports::DeliveryState;
        let states: &[DeliveryState] = if b.include_succeeded {
            &[DeliveryState::Failed, DeliveryState::Succeeded]
        } else {
            &[DeliveryState::Failed]
        };
        let range = Some((b.since.timestamp_millis(), b.until.timestamp_millis()));
        let (chosen, more) = match self.webhooks.deliveries_where(merchant, id, states, range, MAX_REPLAY).await {
            Ok(l) => l,
            Err(err) => return http::unavailable(&err),
        };
        let batch: Vec<_> = chosen.iter().collect();
        // `more`: call again for the rest (the ones replayed now are pending, so not chosen again).
        match forwarding::replay(&self.webhooks, &self.deliveries, &self.timing, &batch, self.clock.now()).await {
            Ok(replayed) => http::json(202, serde_json::json!({ "replayed": replayed, "more": more })),
            Err(err) => http::unavailable(&err),
        }
    }

    async fn replay_event(&self, merchant: &str, event_id: &str) -> crate::function::Response {
        use crate::http;
        let endpoints = match crate::ports::WebhookStore::endpoints(&self.webhooks, merchant).await {
            Ok(l) => l,
            Err(e) => return http::unavailable(&e),
        };
        let mut replayed = Vec::new();
        let mut found = false;
        for e in endpoints {
            let d = match crate::ports::WebhookStore::delivery(&self.webhooks, merchant, &e.id, event_id).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(err) => return http::unavailable(&err),
            };
            found = true;
            if !e.enabled {
                continue;
            }
            match forwarding::replay(&self.webhooks, &self.deliveries, &self.timing, &[&d], self.clock.now()).await {
                Ok(1) => replayed.push(e.id.clone()),
                Ok(_) => {}
                Err(err) => return http::unavailable(&err),
            }
        }
        if !found {
            return http::refuse(404, "no_such_event");
        }
        http::json(202, serde_json::json!({ "event_id": event_id, "replayed_to": replayed }))
    }
}
