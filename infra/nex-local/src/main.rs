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
//!   read-side expiry filters are what keeps expired data from being served;
//! - stand-ins for the WhatsApp Cloud API (`/_local/graph`) and the marketplaces (`/_local/amazon`,
//!   `/_local/ebay`, `/_local/bol`), where the template's base-URL parameters point locally.

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
use nex_shared::adapters::aws::Aws;
use nex_shared::function::{Invocation, Kind};
use nex_shared::ports::SystemClock;
use nex_shared::registry::{self, Handler};
use tracing::{error, info, warn};

/// A function of the suite, built once like a Lambda container (from the registry, by its binary).
struct Function {
    handler: Box<dyn Handler>,
    trigger: Kind,
    timeout: u64,
}

impl Function {
    /// Invokes it with `event` as Lambda would, with its time limit.
    async fn invoke(&self, event: serde_json::Value, request_id: &str) -> Result<serde_json::Value, String> {
        let deadline = chrono::Utc::now() + chrono::Duration::seconds(self.timeout as i64);
        self.handler.invoke(event, &Invocation::new(request_id, deadline)).await.map_err(|e| e.to_string())
    }

    /// [`Function::invoke`] with a typed event and answer (an API Gateway or SQS event, say).
    async fn call<E: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self, event: E, request_id: &str,
    ) -> Result<R, String> {
        let event = serde_json::to_value(event).map_err(|e| e.to_string())?;
        serde_json::from_value(self.invoke(event, request_id).await?).map_err(|e| e.to_string())
    }
}

struct Options {
    manifest: String,
    port: u16,
    reap_every: Duration,
    ttl_lag: i64,
}

fn options() -> Result<Options, String> {
    let mut o = Options { manifest: String::new(), port: 3000, reap_every: Duration::from_secs(30), ttl_lag: 60 };
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

    let aws = Aws::new(sdk.clone());
    let mut functions = HashMap::new();
    for (logical, spec) in &manifest.functions {
        let entry =
            registry::find(&spec.binary).ok_or(format!("{logical}: the registry has no function {}", spec.binary))?;
        let handler =
            entry.build(&aws, &spec.env, Arc::new(SystemClock)).await.map_err(|e| format!("{logical}: {e}"))?;
        functions.insert(logical.clone(), Function { handler, trigger: entry.trigger, timeout: spec.timeout });
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
    tokio::spawn(reap(state.clone(), aws_sdk_dynamodb::Client::new(&sdk), opts.reap_every, opts.ttl_lag));

    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
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
    let headers: Vec<(String, String)> =
        req.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(text(400, r#"{"message":"unreadable body"}"#)),
    };

    if let Some(a) = nex_local::marketplaces::answer(&method, &path, &query, &headers, chrono::Utc::now()) {
        let out = Response::builder().status(a.status).header("content-type", a.content_type);
        return Ok(out.body(Full::new(Bytes::from(a.body))).unwrap_or_else(|_| text(500, "{}")));
    }
    if let Some(a) = nex_local::meta_insights::answer(&method, &path, &query, &headers, &body) {
        let mut out = Response::builder().status(a.status).header("content-type", a.content_type);
        for (k, v) in nex_local::meta_insights::USAGE_HEADERS {
            out = out.header(k, v);
        }
        return Ok(out.body(Full::new(Bytes::from(a.body))).unwrap_or_else(|_| text(500, "{}")));
    }
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
    let response: aws_lambda_events::apigw::ApiGatewayV2httpResponse = match function.call(event, &request_id).await {
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
    let queue_arn = state.manifest.queues.get(&source.queue).map(|q| q.arn.clone()).unwrap_or_default();
    let Some(function) = state.functions.get(&source.function) else {
        error!(function = %source.function, "event source names an unknown function");
        return;
    };
    if function.trigger == Kind::Http {
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
            let ids: Vec<String> = event.records.iter().filter_map(|r| r.message_id.clone()).collect();
            // A failed invocation leaves the whole batch for redelivery, as in Lambda.
            function.call(event, &request_id).await.unwrap_or_else(|e| {
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
    let answer = function.invoke(event, &uuid::Uuid::new_v4().to_string()).await?;
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
