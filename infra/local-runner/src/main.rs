//! `nex-local`: runs the whole suite on this machine against the AWS emulator.
//!
//! moto stores resources but never invokes functions (that needs Docker), never fires schedules and never
//! expires TTL items. This runner supplies those, with the functions' own handlers linked in-process:
//! - HTTP: every `HttpApi` route of `template.yaml` on `--port`, passed as API Gateway HTTP API v2 events;
//! - SQS: every event source mapping polled and fed as SQS events; records listed in `batchItemFailures`
//!   are left on the queue (visible again after the visibility timeout; moto's redrive moves them to the
//!   DLQ after `maxReceiveCount`), the rest deleted;
//! - schedules: `rate(...)` schedules fired on their cadence, any schedule on demand with
//!   `POST /_local/schedules/<name>`;
//! - TTL: a reaper that deletes items some time after their TTL passed, lazily as DynamoDB does, so the
//!   read-side expiry filters are what keeps expired data from being served.

#![recursion_limit = "256"]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use nex_local::manifest::{self, Manifest, SqsSource};
use nex_local::{events, ttl};
use nex_shared::ports::SystemClock;
use tracing::{error, info, warn};

/// A function of the suite, built once like a Lambda container.
enum Function {
    StripeWebhook(Box<stripe_webhook::App>),
    PaymentsWorker(payments_worker::App),
    WhatsAppWebhook(Box<whatsapp_webhook::App>),
    MessagingWorker(Box<messaging_worker::App>),
    NotificationsSender(Box<notifications_sender::App>),
    ConsentApi(Box<consent_api::App>),
    RetentionSweep(Box<retention_sweep::App>),
    DataRequestsWorker(Box<data_requests_worker::App>),
    AuditAppender(Box<audit_appender::App>),
}

impl Function {
    fn is_sqs_consumer(&self) -> bool {
        matches!(
            self,
            Function::PaymentsWorker(_)
                | Function::MessagingWorker(_)
                | Function::NotificationsSender(_)
                | Function::RetentionSweep(_)
                | Function::DataRequestsWorker(_)
                | Function::AuditAppender(_)
        )
    }

    /// Invokes an SQS consumer; `None` for a function that is not one.
    async fn sqs(
        &self,
        event: aws_lambda_events::sqs::SqsEvent,
        request_id: &str,
        deadline: chrono::DateTime<chrono::Utc>,
    ) -> Option<aws_lambda_events::sqs::SqsBatchResponse> {
        match self {
            Function::PaymentsWorker(app) => Some(app.handle(event, request_id, deadline).await),
            Function::MessagingWorker(app) => Some(app.handle(event, request_id).await),
            Function::NotificationsSender(app) => Some(app.handle(event, request_id, deadline).await),
            Function::RetentionSweep(app) => Some(app.continued(event, request_id, deadline).await),
            Function::DataRequestsWorker(app) => Some(app.handle(event, request_id).await),
            Function::AuditAppender(app) => Some(app.handle(event, request_id).await),
            _ => None,
        }
    }
}

struct Options {
    manifest: String,
    port: u16,
    reap_every: Duration,
    ttl_lag: i64,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        manifest: String::new(),
        port: 3000,
        reap_every: Duration::from_secs(30),
        ttl_lag: 60,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--manifest" => o.manifest = val("--manifest")?,
            "--port" => o.port = val("--port")?.parse().map_err(|_| "--port takes a number")?,
            "--reap-every-secs" => {
                o.reap_every =
                    Duration::from_secs(val("--reap-every-secs")?.parse().map_err(|_| "bad --reap-every-secs")?)
            }
            "--ttl-lag-secs" => o.ttl_lag = val("--ttl-lag-secs")?.parse().map_err(|_| "bad --ttl-lag-secs")?,
            "-h" | "--help" => {
                println!("usage: nex-local --manifest FILE [--port 3000] [--reap-every-secs 30] [--ttl-lag-secs 60]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.manifest.is_empty() {
        return Err("--manifest is required".into());
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    nex_shared::telemetry::init();
    if let Err(e) = run().await {
        eprintln!("nex-local: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let opts = options()?;
    let manifest = Manifest::load(&opts.manifest)?;
    let sdk = nex_shared::adapters::aws::load_config().await;

    let mut functions = HashMap::new();
    for (logical, spec) in &manifest.functions {
        let f = match spec.binary.as_str() {
            "stripe-webhook" => {
                let config = stripe_webhook::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::StripeWebhook(Box::new(
                    stripe_webhook::App::build(&sdk, config, SystemClock)
                        .await
                        .map_err(|e| format!("{logical}: {e}"))?,
                ))
            }
            "whatsapp-webhook" => {
                let config = whatsapp_webhook::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::WhatsAppWebhook(Box::new(
                    whatsapp_webhook::App::build(&sdk, config, SystemClock)
                        .await
                        .map_err(|e| format!("{logical}: {e}"))?,
                ))
            }
            "consent-api" => {
                let config = consent_api::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::ConsentApi(Box::new(
                    consent_api::App::build(&sdk, config, SystemClock)
                        .await
                        .map_err(|e| format!("{logical}: {e}"))?,
                ))
            }
            "notifications-sender" => {
                let config =
                    notifications_sender::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::NotificationsSender(Box::new(
                    notifications_sender::App::build(&sdk, config, SystemClock)
                        .await
                        .map_err(|e| format!("{logical}: {e}"))?,
                ))
            }
            "messaging-worker" => {
                let config = messaging_worker::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::MessagingWorker(Box::new(
                    messaging_worker::App::build(&sdk, config)
                        .await
                        .map_err(|e| format!("{logical}: {e}"))?,
                ))
            }
            "payments-worker" => {
                let config = payments_worker::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::PaymentsWorker(payments_worker::App::build(&sdk, config, SystemClock))
            }
            "retention-sweep" => {
                let config = retention_sweep::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::RetentionSweep(Box::new(retention_sweep::App::build(&sdk, config, SystemClock)))
            }
            "data-requests-worker" => {
                let config =
                    data_requests_worker::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::DataRequestsWorker(Box::new(data_requests_worker::App::build(&sdk, config, SystemClock)))
            }
            "audit-appender" => {
                let config = audit_appender::Config::from_vars(&spec.env).map_err(|e| format!("{logical}: {e}"))?;
                Function::AuditAppender(Box::new(audit_appender::App::build(&sdk, config, SystemClock)))
            }
            other => return Err(format!("{logical}: no handler is linked for binary {other}")),
        };
        functions.insert(logical.clone(), f);
    }
    let state = Arc::new(State { manifest, functions });

    for source in state.manifest.sqs_sources.clone() {
        tokio::spawn(poll(state.clone(), aws_sdk_sqs::Client::new(&sdk), source));
    }
    for schedule in state.manifest.schedules.clone() {
        match manifest::rate_seconds(&schedule.expression) {
            Some(secs) => {
                tokio::spawn(every(state.clone(), schedule.name.clone(), secs));
            }
            None => info!(schedule = %schedule.name, "not a rate() expression: fire it on demand"),
        }
    }
    let pipes = nex_local::pipes::Pipes::new(&sdk, aws_sdk_sqs::Client::new(&sdk), state.manifest.pipes.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if let Err(e) = pipes.pump().await {
                warn!(error = %e, "inbox pipe failed; retrying");
            }
        }
    });
    tokio::spawn(reap(
        state.clone(),
        aws_sdk_dynamodb::Client::new(&sdk),
        opts.reap_every,
        opts.ttl_lag,
    ));

    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    info!(%addr, routes = state.manifest.routes.len(), "local stack ready");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(state.clone(), req));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                        warn!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => {
                info!("stopping");
                return Ok(());
            }
        }
    }
}

struct State {
    manifest: Manifest,
    functions: HashMap<String, Function>,
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
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(text(400, r#"{"message":"unreadable body"}"#)),
    };

    if method == "POST" {
        if path.starts_with("/_local/graph/") {
            return Ok(fake_cloud_api(&body));
        }
        if let Some(name) = path.strip_prefix("/_local/schedules/") {
            return Ok(match fire(&state, name).await {
                Ok(()) => text(200, r#"{"status":"fired"}"#),
                Err(e) => text(404, &serde_json::json!({ "message": e }).to_string()),
            });
        }
    }
    let Some(route) = state
        .manifest
        .routes
        .iter()
        .find(|r| r.method == method && manifest::path_matches(&r.path, &path))
    else {
        return Ok(text(404, r#"{"message":"Not Found"}"#));
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let event = events::http_v2(&method, &path, &query, &headers, &body, &request_id);
    let response = match state.functions.get(&route.function) {
        Some(Function::StripeWebhook(app)) => app.handle(event, &request_id).await,
        Some(Function::WhatsAppWebhook(app)) => app.handle(event, &request_id).await,
        Some(Function::ConsentApi(app)) => app.handle(event, &request_id).await,
        _ => return Ok(text(502, r#"{"message":"route has no HTTP handler"}"#)),
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
    Ok(out
        .body(Full::new(bytes))
        .unwrap_or_else(|_| text(502, r#"{"message":"bad handler response"}"#)))
}

/// Stands in for the WhatsApp Cloud API's send endpoints in the local stack (no network here): accepts
/// any message and answers as Meta documents, with a fresh wamid.
fn fake_cloud_api(body: &[u8]) -> Response<Full<Bytes>> {
    let to = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("to").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let answer = serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to.trim_start_matches('+') }],
        "messages": [{ "id": format!("wamid.local{}", uuid::Uuid::new_v4().simple()) }],
    });
    text(200, &answer.to_string())
}

/// Polls one event source mapping's queue and invokes its consumer, as Lambda's poller does.
async fn poll(state: Arc<State>, sqs: aws_sdk_sqs::Client, source: SqsSource) {
    let queue_arn = state
        .manifest
        .queues
        .get(&source.queue)
        .map(|q| q.arn.clone())
        .unwrap_or_default();
    let timeout = state.manifest.functions.get(&source.function).map_or(3, |f| f.timeout);
    let Some(function) = state.functions.get(&source.function) else {
        error!(function = %source.function, "event source names an unknown function");
        return;
    };
    if !function.is_sqs_consumer() {
        error!(function = %source.function, "event source names a function with no SQS handler; not polled");
        return;
    }
    let target = nex_local::sqs::Target {
        queue_url: &source.queue_url,
        queue_arn: &queue_arn,
        region: &state.manifest.region,
        batch_size: source.batch_size,
        report_batch_item_failures: source.report_batch_item_failures,
        visibility_timeout: None,
    };
    loop {
        let delivered = nex_local::sqs::deliver_once(&sqs, &target, |event| async {
            let request_id = uuid::Uuid::new_v4().to_string();
            let deadline = chrono::Utc::now() + chrono::Duration::seconds(timeout as i64);
            // Checked above: every function polled here is an SQS consumer.
            function.sqs(event, &request_id, deadline).await.unwrap_or_default()
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
    let schedule = state
        .manifest
        .schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or(format!("no schedule named {name}"))?;
    let timeout = state
        .manifest
        .functions
        .get(&schedule.function)
        .map_or(3, |f| f.timeout);
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(timeout as i64);
    let request_id = uuid::Uuid::new_v4().to_string();
    match state.functions.get(&schedule.function) {
        Some(Function::RetentionSweep(app)) => app
            .scheduled(&request_id, deadline)
            .await
            .map(|r| info!(schedule = %name, complete = r.complete, changed = r.items_changed, "schedule fired"))
            .map_err(|e| e.to_string()),
        _ => Err(format!(
            "function {} has no schedule handler linked in nex-local",
            schedule.function
        )),
    }
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
