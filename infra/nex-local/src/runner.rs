//! The local stack's runner, as a library: the `nex-local` binary and the soak benchmark start the same
//! one. moto stores resources but never invokes functions (that needs Docker), never fires schedules and
//! never expires TTL items. The runner supplies those, with the functions' own handlers linked in:
//! - HTTP: every `HttpApi` route of `template.yaml`, passed as API Gateway HTTP API v2 events;
//! - SQS: every event source mapping polled and fed as SQS events; records listed in `batchItemFailures`
//!   are left on the queue (visible again after the visibility timeout; moto's redrive moves them to the
//!   DLQ after `maxReceiveCount`), the rest deleted; a failed or cut-off invocation leaves the whole batch;
//! - schedules: `rate(...)` schedules fired on their cadence, any schedule on demand with
//!   `POST /_local/schedules/<name>`;
//! - TTL: a reaper that deletes items some time after their TTL passed, lazily as DynamoDB does;
//! - time limits: an invocation still running at its function's `Timeout` is stopped there and answers
//!   nothing, as Lambda stops it (so a slow batch is never running while its messages are visible again);
//! - stand-ins for the WhatsApp Cloud API (`/_local/graph`), the marketplaces (`/_local/amazon`,
//!   `/_local/ebay`, `/_local/bol`) and the Marketing API (`/_local/meta`).
//!
//! Two kinds of fault, set per run ([`Options`]):
//! - `faults`: the functions reach AWS through the fault layer ([`crate::faults`]), which fails a seeded
//!   share of their calls as AWS does (the runner's own parts, which stand in for AWS itself, do not);
//! - `cuts`: a seeded share of invocations is cut off at a random point before it ends and answers
//!   nothing, as Lambda does at a timeout (an HTTP caller gets API Gateway's 502, an SQS batch stays on
//!   its queue). The point is drawn within the function's usual running time, so that it falls mid-work.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use nex_shared::adapters::aws::Aws;
use nex_shared::function::{Invocation, Kind};
use nex_shared::ports::SystemClock;
use nex_shared::registry::{self, Handler};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::faults::{self, Rng};
use crate::manifest::{self, Manifest, SqsSource};
use crate::{events, ttl};

/// Cut-offs: `share` of invocations (each function alike), drawn from `seed`.
#[derive(Debug, Clone, Copy)]
pub struct Cuts {
    pub share: f64,
    pub seed: u64,
}

pub struct Options {
    /// 0: any free port.
    pub port: u16,
    pub reap_every: Duration,
    pub ttl_lag: i64,
    pub faults: Option<faults::Plan>,
    pub cuts: Option<Cuts>,
    /// Overrides the queues' visibility timeout for what the pollers receive (the soak: redelivery in
    /// seconds rather than the template's minutes).
    pub visibility_timeout: Option<i32>,
    /// Pollers per event source mapping, each invoking its own batches, as Lambda runs several
    /// concurrent invocations per queue (it starts with five).
    pub pollers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 3000,
            reap_every: Duration::from_secs(30),
            ttl_lag: 60,
            faults: None,
            cuts: None,
            visibility_timeout: None,
            pollers: 2,
        }
    }
}

/// What the runner's invocations did, per function (logical id).
#[derive(Debug, Default)]
pub struct Invocations {
    by_function: Mutex<BTreeMap<String, Counts>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub invoked: u64,
    /// Cut off before they ended.
    pub cut: u64,
    /// Stopped at their time limit, as Lambda stops an invocation at its timeout.
    pub timed_out: u64,
    /// Ended with an error (a failed invocation, not a failed record).
    pub failed: u64,
    /// Time spent in the invocations that ended (microseconds).
    pub micros: u64,
}

impl Invocations {
    fn add(&self, function: &str, f: impl FnOnce(&mut Counts)) {
        f(self.by_function.lock().unwrap().entry(function.to_owned()).or_default());
    }

    pub fn snapshot(&self) -> BTreeMap<String, Counts> {
        self.by_function.lock().unwrap().clone()
    }

    pub fn total(&self) -> Counts {
        self.snapshot().values().fold(Counts::default(), |a, c| Counts {
            invoked: a.invoked + c.invoked,
            cut: a.cut + c.cut,
            timed_out: a.timed_out + c.timed_out,
            failed: a.failed + c.failed,
            micros: a.micros + c.micros,
        })
    }
}

/// The WhatsApp Cloud API stand-in's record: how often each distinct message was accepted for sending.
#[derive(Debug, Default)]
pub struct Sends {
    by_message: Mutex<HashMap<String, u64>>,
}

impl Sends {
    fn record(&self, to: &str, body: &serde_json::Value) {
        // The message without Meta's per-call fields: the same notification sent twice is one key.
        let key =
            format!("{to} {}", body.get("template").or_else(|| body.get("text")).unwrap_or(&serde_json::Value::Null));
        *self.by_message.lock().unwrap().entry(key).or_default() += 1;
    }

    /// (recipient and content, times accepted).
    pub fn snapshot(&self) -> HashMap<String, u64> {
        self.by_message.lock().unwrap().clone()
    }
}

/// A started runner. Dropping it stops its loops (the HTTP listener, pollers, pipes, schedules, reaper).
pub struct Running {
    pub url: String,
    pub faults: Arc<faults::Stats>,
    pub invocations: Arc<Invocations>,
    pub sends: Arc<Sends>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A function of the suite, built once like a Lambda container (from the registry, by its binary).
struct Function {
    logical: String,
    handler: Box<dyn Handler>,
    trigger: Kind,
    timeout: u64,
    /// Its mean running time so far (microseconds), where a cut-off is drawn.
    mean_micros: AtomicU64,
}

struct State {
    manifest: Manifest,
    functions: HashMap<String, Function>,
    cuts: Option<Mutex<Rng>>,
    cut_share: f64,
    invocations: Arc<Invocations>,
    sends: Arc<Sends>,
    statuses: Option<Arc<StatusHook>>,
}

/// Meta's status webhooks for what the Cloud API stand-in accepted: a `sent` status per message, signed
/// with the app's secret and posted to the stack's own WhatsApp webhook, retried until answered 2xx as
/// Meta retries (it echoes the message's `biz_opaque_callback_data`).
struct StatusHook {
    app_secret: String,
    url: OnceLock<String>,
    client: reqwest::Client,
}

impl StatusHook {
    async fn load(manifest: &Manifest, sdk: &aws_config::SdkConfig) -> Option<Self> {
        let id = manifest.functions.values().find_map(|f| f.env.get("WHATSAPP_APP_SECRET_ID"))?;
        let raw = nex_shared::adapters::secrets::fetch(&Aws::new(sdk.clone()).secrets_manager(), id).await;
        let secret = raw.ok().and_then(|s| {
            use secrecy::ExposeSecret;
            let v: serde_json::Value = serde_json::from_str(s.expose_secret()).ok()?;
            v["app_secrets"][0].as_str().map(str::to_owned)
        });
        let Some(app_secret) = secret else {
            warn!("the WhatsApp app secret could not be read; the Cloud API stand-in sends no status webhooks");
            return None;
        };
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().ok()?;
        Some(Self { app_secret, url: OnceLock::new(), client })
    }

    async fn post(&self, phone_number_id: String, wamid: String, to: String, callback: Option<String>) {
        let Some(base) = self.url.get() else { return };
        let mut status = serde_json::json!({
            "id": wamid, "status": "sent", "timestamp": chrono::Utc::now().timestamp().to_string(),
            "recipient_id": to.trim_start_matches('+'),
        });
        if let Some(c) = callback {
            status["biz_opaque_callback_data"] = c.into();
        }
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "0", "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "0", "phone_number_id": phone_number_id },
                "statuses": [status],
            }}]}],
        })
        .to_string();
        let signature = nex_shared::domain::whatsapp::signature::sign_header(&self.app_secret, body.as_bytes());
        for attempt in 0..20u32 {
            let res = self
                .client
                .post(format!("{base}/webhooks/whatsapp"))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &signature)
                .body(body.clone())
                .send()
                .await;
            if res.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis((100u64 << attempt.min(6)).min(5_000))).await;
        }
        warn!("a status webhook was not taken after 20 attempts; given up");
    }
}

impl State {
    /// Invokes `function` with `event` as Lambda would, with its time limit (or cuts it off).
    async fn invoke(
        &self, function: &Function, event: serde_json::Value, request_id: &str,
    ) -> Result<serde_json::Value, String> {
        let deadline = chrono::Utc::now() + chrono::Duration::seconds(function.timeout as i64);
        let invocation = Invocation::new(request_id, deadline);
        let cut_at = self.cuts.as_ref().and_then(|rng| {
            let mut rng = rng.lock().unwrap();
            (rng.unit() < self.cut_share).then(|| {
                let mean = function.mean_micros.load(Ordering::Relaxed).max(1_000);
                Duration::from_micros((rng.unit() * mean as f64) as u64)
            })
        });
        self.invocations.add(&function.logical, |c| c.invoked += 1);
        let started = std::time::Instant::now();
        let run = function.handler.invoke(event, &invocation);
        // Lambda stops an invocation at its time limit and returns nothing: so does the runner, so that
        // a slow batch is never still running when its messages are visible again.
        let limit = Duration::from_secs(function.timeout.max(1));
        let cut_at = cut_at.filter(|at| *at < limit);
        let answer = match tokio::time::timeout(cut_at.unwrap_or(limit), run).await {
            Ok(answer) => answer,
            Err(_) => match cut_at {
                Some(at) => {
                    self.invocations.add(&function.logical, |c| c.cut += 1);
                    warn!(function = %function.logical, after_ms = at.as_millis() as u64, "invocation cut off");
                    return Err(format!("cut off after {} ms (as at a Lambda timeout)", at.as_millis()));
                }
                None => {
                    self.invocations.add(&function.logical, |c| c.timed_out += 1);
                    warn!(function = %function.logical, limit_s = function.timeout, "invocation timed out");
                    return Err(format!("Task timed out after {} seconds", function.timeout));
                }
            },
        };
        let took = started.elapsed().as_micros() as u64;
        self.invocations.add(&function.logical, |c| c.micros += took);
        let mean = function.mean_micros.load(Ordering::Relaxed);
        function.mean_micros.store(if mean == 0 { took } else { (mean * 15 + took) / 16 }, Ordering::Relaxed);
        answer.map_err(|e| {
            self.invocations.add(&function.logical, |c| c.failed += 1);
            e.to_string()
        })
    }

    /// [`State::invoke`] with a typed event and answer (an API Gateway or SQS event, say).
    async fn call<E: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self, function: &Function, event: E, request_id: &str,
    ) -> Result<R, String> {
        let event = serde_json::to_value(event).map_err(|e| e.to_string())?;
        serde_json::from_value(self.invoke(function, event, request_id).await?).map_err(|e| e.to_string())
    }
}

/// Builds every function of `manifest` (through the fault layer when `opts.faults` is set, retrying a
/// failed init as Lambda does), binds the port and starts every loop.
pub async fn start(manifest: Manifest, sdk: &aws_config::SdkConfig, opts: Options) -> Result<Running, String> {
    let stats = Arc::new(faults::Stats::default());
    let mut aws = Aws::new(sdk.clone());
    if let Some(plan) = opts.faults.clone() {
        let upstream = sdk
            .endpoint_url()
            .map(str::to_owned)
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .ok_or("the fault layer needs the emulator's URL (AWS_ENDPOINT_URL)")?;
        let proxy = faults::spawn(&upstream, plan, stats.clone()).await.map_err(|e| format!("fault layer: {e}"))?;
        aws = aws.with_endpoint(proxy);
    }
    let mut functions = HashMap::new();
    for (logical, spec) in &manifest.functions {
        let entry =
            registry::find(&spec.binary).ok_or(format!("{logical}: the registry has no function {}", spec.binary))?;
        let mut tries = 0;
        let handler = loop {
            match entry.build(&aws, &spec.env, Arc::new(SystemClock)).await {
                Ok(h) => break h,
                Err(e) if opts.faults.is_some() && tries < 20 => {
                    tries += 1;
                    warn!(function = %logical, error = %e, "init failed; retried as Lambda does");
                }
                Err(e) => return Err(format!("{logical}: {e}")),
            }
        };
        functions.insert(
            logical.clone(),
            Function {
                logical: logical.clone(),
                handler,
                trigger: entry.trigger,
                timeout: spec.timeout,
                mean_micros: AtomicU64::new(0),
            },
        );
    }
    let invocations = Arc::new(Invocations::default());
    let sends = Arc::new(Sends::default());
    let statuses = StatusHook::load(&manifest, sdk).await.map(Arc::new);
    let state = Arc::new(State {
        manifest,
        functions,
        cuts: opts.cuts.map(|c| Mutex::new(Rng::new(c.seed))),
        cut_share: opts.cuts.map_or(0.0, |c| c.share),
        invocations: invocations.clone(),
        sends: sends.clone(),
        statuses,
    });

    let mut tasks = Vec::new();
    for source in state.manifest.sqs_sources.clone() {
        for _ in 0..opts.pollers.max(1) {
            let sqs = aws_sdk_sqs::Client::new(sdk);
            tasks.push(tokio::spawn(poll(state.clone(), sqs, source.clone(), opts.visibility_timeout)));
        }
    }
    for schedule in state.manifest.schedules.clone() {
        match manifest::rate_seconds(&schedule.expression) {
            Some(secs) => tasks.push(tokio::spawn(every(state.clone(), schedule.name.clone(), secs))),
            None => info!(schedule = %schedule.name, "not a rate() expression: fire it on demand"),
        }
    }
    let pipes = crate::pipes::Pipes::new(sdk, aws_sdk_sqs::Client::new(sdk), state.manifest.pipes.clone());
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if let Err(e) = pipes.pump().await {
                warn!(error = %e, "inbox pipe failed; retrying");
            }
        }
    }));
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    tasks.push(tokio::spawn(reap(state.clone(), ddb, opts.reap_every, opts.ttl_lag)));

    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    if let Some(h) = &state.statuses {
        let _ = h.url.set(url.clone());
    }
    let routes = state.manifest.routes.len();
    tasks.push(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| serve(state.clone(), req));
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                    warn!(error = %e, "connection ended with an error");
                }
            });
        }
    }));
    info!(%url, routes, "local stack ready");
    Ok(Running { url, faults: stats, invocations, sends, tasks })
}

fn text(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("static response parts")
}

async fn serve(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> =
        req.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(text(400, r#"{"message":"unreadable body"}"#)),
    };

    if let Some(a) = crate::marketplaces::answer(&method, &path, &query, &headers, chrono::Utc::now()) {
        let out = Response::builder().status(a.status).header("content-type", a.content_type);
        return Ok(out.body(Full::new(Bytes::from(a.body))).unwrap_or_else(|_| text(500, "{}")));
    }
    if let Some(a) = crate::meta_insights::answer(&method, &path, &query, &headers, &body) {
        let mut out = Response::builder().status(a.status).header("content-type", a.content_type);
        for (k, v) in crate::meta_insights::USAGE_HEADERS {
            out = out.header(k, v);
        }
        return Ok(out.body(Full::new(Bytes::from(a.body))).unwrap_or_else(|_| text(500, "{}")));
    }
    if method == "POST" {
        if path.starts_with("/_local/graph/") {
            return Ok(fake_cloud_api(&state, &path, &body));
        }
        if let Some(name) = path.strip_prefix("/_local/schedules/") {
            return Ok(match fire(&state, name).await {
                Ok(()) => text(200, r#"{"status":"fired"}"#),
                Err(e) => text(404, &serde_json::json!({ "message": e }).to_string()),
            });
        }
    }
    let Some(route) =
        state.manifest.routes.iter().find(|r| r.method == method && manifest::path_matches(&r.path, &path))
    else {
        return Ok(text(404, r#"{"message":"Not Found"}"#));
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let event = events::http_v2(&method, &path, &query, &headers, &body, &request_id);
    let Some(function) = state.functions.get(&route.function) else {
        return Ok(text(502, r#"{"message":"route names an unknown function"}"#));
    };
    let response: aws_lambda_events::apigw::ApiGatewayV2httpResponse =
        match state.call(function, event, &request_id).await {
            Ok(r) => r,
            Err(e) => {
                error!(function = %route.function, error = %e, "invocation failed");
                return Ok(text(502, r#"{"message":"Internal Server Error"}"#));
            }
        };
    let mut out = Response::builder().status(response.status_code as u16);
    for (k, v) in response.headers.iter() {
        out = out.header(k, v);
    }
    let bytes = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => Bytes::from(t),
        Some(aws_lambda_events::encodings::Body::Binary(b)) => Bytes::from(b),
        _ => Bytes::new(),
    };
    Ok(out.body(Full::new(bytes)).unwrap_or_else(|_| text(502, r#"{"message":"bad handler response"}"#)))
}

/// Stands in for the WhatsApp Cloud API's send endpoints (no network here): accepts any message, records
/// it, answers as Meta documents, with a fresh wamid, and then sends the message's `sent` status webhook.
fn fake_cloud_api(state: &State, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let message = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    let to = message.get("to").and_then(|t| t.as_str()).unwrap_or_default().to_owned();
    state.sends.record(&to, &message);
    let wamid = format!("wamid.local{}", uuid::Uuid::new_v4().simple());
    let answer = serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to.trim_start_matches('+') }],
        "messages": [{ "id": wamid }],
    });
    // /_local/graph/<version>/<phone number id>/messages
    let phone_number_id = path.split('/').rev().nth(1).unwrap_or_default().to_owned();
    if let Some(hook) = state.statuses.clone() {
        let callback = message.get("biz_opaque_callback_data").and_then(|c| c.as_str()).map(str::to_owned);
        tokio::spawn(async move { hook.post(phone_number_id, wamid, to, callback).await });
    }
    text(200, &answer.to_string())
}

/// Polls one event source mapping's queue and invokes its consumer, as Lambda's poller does.
async fn poll(state: Arc<State>, sqs: aws_sdk_sqs::Client, source: SqsSource, visibility_timeout: Option<i32>) {
    let queue_arn = state.manifest.queues.get(&source.queue).map(|q| q.arn.clone()).unwrap_or_default();
    let Some(function) = state.functions.get(&source.function) else {
        error!(function = %source.function, "event source names an unknown function");
        return;
    };
    if function.trigger == Kind::Http {
        error!(function = %source.function, "event source names a function with no SQS handler; not polled");
        return;
    }
    let target = crate::sqs::Target {
        queue_url: &source.queue_url,
        queue_arn: &queue_arn,
        region: &state.manifest.region,
        batch_size: source.batch_size,
        report_batch_item_failures: source.report_batch_item_failures,
        visibility_timeout,
    };
    loop {
        let delivered = crate::sqs::deliver_once(&sqs, &target, |event| async {
            let request_id = uuid::Uuid::new_v4().to_string();
            let ids: Vec<String> = event.records.iter().filter_map(|r| r.message_id.clone()).collect();
            // A failed (or cut-off) invocation leaves the whole batch for redelivery, as in Lambda.
            state.call(function, event, &request_id).await.unwrap_or_else(|e| {
                error!(function = %source.function, error = %e, "invocation failed");
                let mut all = aws_lambda_events::sqs::SqsBatchResponse::default();
                all.batch_item_failures = ids.into_iter().map(nex_shared::adapters::sqs_batch::failure).collect();
                all
            })
        })
        .await;
        if let Err(e) = delivered {
            warn!(queue = %source.queue, error = %e, "receive failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn every(state: Arc<State>, name: String, secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = fire(&state, &name).await {
            warn!(schedule = %name, error = %e, "scheduled invocation failed");
        }
    }
}

/// Fires a schedule by name, as EventBridge invokes the function: with the invocation's time limit.
async fn fire(state: &State, name: &str) -> Result<(), String> {
    let schedule =
        state.manifest.schedules.iter().find(|s| s.name == name).ok_or(format!("no schedule named {name}"))?;
    let function =
        state.functions.get(&schedule.function).ok_or(format!("schedule {name} names an unknown function"))?;
    let event = serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": chrono::Utc::now(),
        "region": state.manifest.region,
        "resources": [],
        "detail": {},
    });
    let answer = state.invoke(function, event, &uuid::Uuid::new_v4().to_string()).await?;
    info!(schedule = %name, answer = %answer, "schedule fired");
    Ok(())
}

/// Deletes items whose TTL passed more than `lag` seconds ago, like DynamoDB's background TTL process.
async fn reap(state: Arc<State>, ddb: aws_sdk_dynamodb::Client, every: Duration, lag: i64) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for spec in state.manifest.ttl.values() {
            match ttl::reap_table(&ddb, &spec.table, &spec.attribute, chrono::Utc::now().timestamp() - lag).await {
                Ok(0) => {}
                Ok(n) => {
                    info!(table = %spec.table, deleted = n, "ttl reaper deleted expired items")
                }
                Err(e) => warn!(table = %spec.table, error = %e, "ttl reaper failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nex_shared::function::BoxFuture;

    /// Runs for `secs` seconds, then answers `{}`.
    struct Slow(u64);

    impl Handler for Slow {
        fn invoke<'a>(
            &'a self, _event: serde_json::Value, _invocation: &'a Invocation,
        ) -> BoxFuture<'a, Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(self.0)).await;
                Ok(serde_json::json!({}))
            })
        }
    }

    fn state(runs_for: u64, timeout: u64) -> State {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "region": "us-east-1", "ttl": {}, "queues": {}, "functions": {}, "routes": [], "schedules": [],
            "sqs_sources": [],
        }))
        .expect("a manifest");
        let function = Function {
            logical: "SlowFunction".into(),
            handler: Box::new(Slow(runs_for)),
            trigger: Kind::Sqs,
            timeout,
            mean_micros: AtomicU64::new(0),
        };
        State {
            manifest,
            functions: HashMap::from([("SlowFunction".to_owned(), function)]),
            cuts: None,
            cut_share: 0.0,
            invocations: Arc::new(Invocations::default()),
            sends: Arc::new(Sends::default()),
            statuses: None,
        }
    }

    #[tokio::test]
    async fn an_invocation_still_running_at_its_time_limit_is_stopped_and_answers_nothing() {
        let state = state(30, 1);
        let started = std::time::Instant::now();
        let answer = state.invoke(&state.functions["SlowFunction"], serde_json::json!({}), "r-1").await;
        assert_eq!(answer, Err("Task timed out after 1 seconds".to_owned()));
        assert!(started.elapsed() < Duration::from_secs(20), "stopped at its limit, not run to its end");
        let counts = state.invocations.snapshot()["SlowFunction"];
        assert_eq!((counts.invoked, counts.timed_out, counts.cut, counts.failed), (1, 1, 0, 0));
    }

    #[tokio::test]
    async fn an_invocation_within_its_time_limit_answers() {
        let state = state(0, 1);
        let answer = state.invoke(&state.functions["SlowFunction"], serde_json::json!({}), "r-2").await;
        assert_eq!(answer, Ok(serde_json::json!({})));
        assert_eq!(state.invocations.snapshot()["SlowFunction"].timed_out, 0);
    }
}
