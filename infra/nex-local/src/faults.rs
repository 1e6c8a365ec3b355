//! A fault layer between the functions and the AWS emulator: an HTTP proxy that forwards every AWS call
//! and, for a seeded share of them, answers as AWS does when it fails instead:
//! - before the call reaches the emulator: a 500, `ThrottlingException`, `ProvisionedThroughputExceededException`,
//!   `RequestLimitExceeded` (what each is, per AWS's error references), a reset connection, or an answer slower
//!   than the SDK's attempt timeout;
//! - after it was applied: the answer lost (a reset connection or a 500), the case a client cannot tell from a
//!   failure, which is what idempotency is for.
//!
//! Operations are named as the SDK sends them (`x-amz-target`: `DynamoDB_20120810.PutItem`,
//! `AmazonSQS.SendMessage`, ...; S3 is `s3`), and a plan can be limited to some of them, or to whole services (`AmazonSQS`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

/// xorshift64*: deterministic per seed, so a run can be repeated (the faults, the runner's cut-offs and
/// the soak's deliveries all draw from it).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let x = &mut self.0;
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    ServerError,
    Throttling,
    ProvisionedThroughputExceeded,
    RequestLimitExceeded,
    /// The connection is closed before any answer.
    Reset,
    /// The answer comes after the SDK's attempt timeout.
    Slow,
    /// The call is applied, then the connection is closed: the answer is lost.
    LostAnswer,
    /// The call is applied, then answered 500.
    ServerErrorAfter,
}

pub const ALL: [Fault; 8] = [
    Fault::ServerError,
    Fault::Throttling,
    Fault::ProvisionedThroughputExceeded,
    Fault::RequestLimitExceeded,
    Fault::Reset,
    Fault::Slow,
    Fault::LostAnswer,
    Fault::ServerErrorAfter,
];

/// A run's faults: which share of calls fail, how, and which operations (all when empty).
#[derive(Debug, Clone)]
pub struct Plan {
    pub share: f64,
    pub seed: u64,
    pub faults: Vec<Fault>,
    pub operations: Vec<String>,
    /// How long a slow answer takes (past the SDK's 3 s attempt timeout).
    pub slow: Duration,
}

impl Plan {
    pub fn new(share: f64, seed: u64) -> Self {
        Self { share, seed, faults: ALL.to_vec(), operations: Vec::new(), slow: Duration::from_millis(3500) }
    }
}

/// What the layer did, by operation and fault.
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    pub injected: Mutex<BTreeMap<(String, Fault), u64>>,
}

impl Stats {
    pub fn injected_total(&self) -> u64 {
        self.injected.lock().unwrap().values().sum()
    }
}

struct Layer {
    upstream: String,
    plan: Plan,
    stats: Arc<Stats>,
    client: reqwest::Client,
    rng: Mutex<Rng>,
}

impl Layer {
    fn next(&self) -> f64 {
        self.rng.lock().unwrap().unit()
    }

    fn pick(&self, operation: &str) -> Option<Fault> {
        // An operation (`AmazonSQS.SendMessage`) or a whole service (`AmazonSQS`, `s3`).
        let applies = self.plan.operations.is_empty()
            || self.plan.operations.iter().any(|o| o == operation || operation.split('.').next() == Some(o.as_str()));
        if !applies || self.plan.faults.is_empty() || self.next() >= self.plan.share {
            return None;
        }
        let i = (self.next() * self.plan.faults.len() as f64) as usize;
        Some(self.plan.faults[i.min(self.plan.faults.len() - 1)])
    }
}

fn operation(req: &Request<Incoming>) -> String {
    req.headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| "s3".to_owned())
}

/// What AWS answers for `fault`.
fn refusal(op: &str, fault: Fault) -> Response<Full<Bytes>> {
    let (status, kind, message) = match fault {
        Fault::Throttling => (400, "ThrottlingException", "Rate of requests exceeds the allowed throughput."),
        Fault::ProvisionedThroughputExceeded => (
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        ),
        Fault::RequestLimitExceeded => {
            (400, "RequestLimitExceeded", "Throughput exceeds the current throughput limit for your account.")
        }
        _ => (500, "InternalServerError", "Internal server error"),
    };
    aws_error(op, status, kind, message)
}

/// The error the service answers with: AWS JSON for DynamoDB, SQS and Secrets Manager, XML for S3 (whose
/// throttling is `SlowDown`, 503).
fn aws_error(op: &str, status: u16, kind: &str, message: &str) -> Response<Full<Bytes>> {
    if op == "s3" {
        let (status, code) = if status == 500 { (500, "InternalError") } else { (503, "SlowDown") };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        );
        return reply(status, "application/xml", None, body);
    }
    let namespace = match op.split('.').next().unwrap_or("") {
        "AmazonSQS" => "com.amazonaws.sqs",
        "secretsmanager" => "com.amazonaws.secretsmanager",
        _ => "com.amazonaws.dynamodb.v20120810",
    };
    let body = serde_json::json!({ "__type": format!("{namespace}#{kind}"), "message": message });
    reply(status, "application/x-amz-json-1.0", Some(kind), body.to_string())
}

fn reply(status: u16, content_type: &str, error_type: Option<&str>, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status).header("content-type", content_type);
    if let Some(kind) = error_type {
        r = r.header("x-amzn-errortype", kind);
    }
    r.body(Full::new(Bytes::from(body))).expect("static response parts")
}

struct Closed;

impl std::fmt::Debug for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by the fault layer")
    }
}
impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
impl std::error::Error for Closed {}

async fn forward(layer: &Layer, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, String> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let url = format!("{}{}", layer.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).map_err(|e| e.to_string())?;
    let mut out = layer.client.request(method, url).body(body.to_vec());
    for (k, v) in &parts.headers {
        if k != hyper::header::CONTENT_LENGTH {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let answer = out.send().await.map_err(|e| e.to_string())?;
    let mut response = Response::builder().status(answer.status().as_u16());
    for (k, v) in answer.headers() {
        if k != reqwest::header::CONTENT_LENGTH && k != reqwest::header::TRANSFER_ENCODING {
            response = response.header(k.as_str(), v.as_bytes());
        }
    }
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    response.body(Full::new(bytes)).map_err(|e| e.to_string())
}

async fn handle(layer: Arc<Layer>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Closed> {
    layer.stats.calls.fetch_add(1, Ordering::Relaxed);
    let op = operation(&req);
    let fault = layer.pick(&op);
    if let Some(f) = fault {
        *layer.stats.injected.lock().unwrap().entry((op.clone(), f)).or_default() += 1;
    }
    match fault {
        Some(Fault::Reset) => return Err(Closed),
        Some(Fault::Slow) => {
            // The call still lands after the client gave up (and has likely retried): forwarded from a
            // task of its own, which a closed connection does not cancel.
            let (layer, slow) = (layer.clone(), layer.plan.slow);
            let late = tokio::spawn(async move {
                tokio::time::sleep(slow).await;
                forward(&layer, req).await
            });
            return late.await.map_err(|_| Closed)?.map_err(|_| Closed);
        }
        Some(
            f @ (Fault::ServerError
            | Fault::Throttling
            | Fault::ProvisionedThroughputExceeded
            | Fault::RequestLimitExceeded),
        ) => {
            return Ok(refusal(&op, f));
        }
        _ => {}
    }
    let answer = forward(&layer, req).await.map_err(|_| Closed)?;
    match fault {
        Some(Fault::LostAnswer) => Err(Closed),
        Some(Fault::ServerErrorAfter) => Ok(refusal(&op, Fault::ServerError)),
        _ => Ok(answer),
    }
}

/// Starts the layer on a free loopback port in front of `upstream` (the emulator's URL); returns its URL.
pub async fn spawn(upstream: &str, plan: Plan, stats: Arc<Stats>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let layer = Arc::new(Layer {
        upstream: upstream.trim_end_matches('/').to_owned(),
        rng: Mutex::new(Rng::new(plan.seed)),
        plan,
        stats,
        client: reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?,
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let layer = layer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(layer.clone(), req));
                let io = hyper_util::rt::TokioIo::new(stream);
                // A closed connection is one of the faults; nothing to report.
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok(url)
}
