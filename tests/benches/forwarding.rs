//! Forwarding: what a delivery costs. Prints tables; asserts nothing.
//!
//! 1. Deliveries per second of one sender instance (batches of 10, one after another, as one Lambda
//!    instance takes them) against a local receiver (a Rust stand-in answering 204 at once, so the number
//!    is the forwarder's and the emulator's, not the receiver's).
//! 2. AWS requests per delivery: the dispatcher's, a first attempt's, a failed attempt's, and a retry's
//!    after a short wait (a delayed message). Waits held by the due index are driven by the integration
//!    tests with an injected clock; their cost is an attempt's plus the scheduler's share.
//! 3. Order stored -> delivered at p50/p99, with the local stack's own loops running (nex-local's pipe
//!    replay every 100 ms, the dispatcher and the sender polling their queues as the local runner does).
//!
//! Signing time per KB is criterion's: `cargo bench -p shared --bench webhook_sign`.
//!
//!   infra/bench.sh forwarding     (or: NEX_STACK_MANIFEST=... cargo bench -p tests --bench forwarding)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use nex_shared::adapters::aws::Aws;
use nex_shared::adapters::dynamo_orders::DynamoOrders;
use nex_shared::apps::webhooks::{WebhookDispatcher, WebhookSender};
use nex_shared::domain::orders::amazon;
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::function::Function;
use nex_shared::ports::SharedClock;
use nex_shared::usecases::orders_ingest::store_page;
use nex_tests::*;
use secrecy::SecretString;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers 204 (or 500 while `failing`), noting when each `webhook-id` first arrived.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Respond for Recorder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return ResponseTemplate::new(500);
        }
        if let Some(id) = req.headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
            self.seen.lock().unwrap().entry(id.to_owned()).or_insert_with(Instant::now);
        }
        ResponseTemplate::new(204)
    }
}

fn order(id: &str) -> nex_shared::domain::orders::Normalised {
    let t = (Utc::now() - Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let json = format!(
        r#"{{"orderId":"{id}","createdTime":"{t}","lastUpdatedTime":"{t}",
        "proceeds":{{"grandTotal":{{"amount":"10.00","currencyCode":"EUR"}}}},
        "fulfillment":{{"fulfillmentStatus":"UNSHIPPED","fulfilledBy":"MERCHANT"}},
        "buyer":{{"buyerName":"Bench Buyer","buyerEmail":"b@marketplace.amazon.de"}}}}"#
    );
    amazon::normalise(&serde_json::from_str(&json).unwrap()).unwrap()
}

/// A function built like Lambda's init, on clients that count its own requests.
async fn build<F: Function>(
    h: &Harness, f: &ForwardingStack, logical: &str, extra: &[(&str, &str)], clock: SharedClock,
) -> (F, RequestCounter) {
    let counter = RequestCounter::default();
    let aws = Aws::new(h.sdk.clone()).with_interceptor(counter.clone());
    let mut env = env_of(logical);
    env.extend(f.overrides().into_iter().map(|(k, v)| (k.to_owned(), v)));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let app = F::build(&aws, F::config(&env).unwrap(), clock).await.unwrap();
    (app, counter)
}

async fn store(h: &Harness, f: &ForwardingStack, ids: &[String]) {
    let orders = DynamoOrders::new(h.ddb.clone(), &f.orders.table);
    let hasher = SubjectHasher::new(&SecretString::from("pepper".to_owned()));
    for chunk in ids.chunks(50) {
        store_page(&orders, &hasher, "merchant-demo-1", chunk.iter().map(|i| order(i)).collect(), Utc::now())
            .await
            .unwrap();
    }
}

/// Replays the orders pipe and runs the dispatcher until `expected` events were dispatched (the emulator's
/// stream can hand a fresh write over on a later read).
async fn dispatch_all(h: &Harness, f: &ForwardingStack, d: &WebhookDispatcher, expected: usize) {
    let mut seen = 0;
    for _ in 0..20 {
        f.orders.pipe.pump().await.unwrap();
        seen += h
            .drain_queue(&f.orders.events_url, "arn:aws:sqs:us-east-1:123456789012:ev", 1, |e| d.handle(e, "b"))
            .await
            .received;
        if seen >= expected {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    eprintln!("only {seen} of {expected} events reached the dispatcher");
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("NEX_BENCH_DELIVERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let recorder = Recorder::default();
    let receiver = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST")).respond_with(recorder.clone()).mount(&receiver).await;
    let api = f.merchant_api(&h, system()).await;
    let body =
        serde_json::json!({"url": format!("{}/hook", receiver.uri()), "event_types": ["order.created"]}).to_string();
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("authorization".to_owned(), format!("Bearer {MERCHANT_KEY}")),
    ];
    let resp =
        api.handle(nex_local::events::http_v2("POST", "/endpoints", "", &headers, body.as_bytes(), "b"), "b").await;
    assert_eq!(resp.status_code, 201);

    // 1 and 2: one sender instance, batch after batch.
    let (dispatcher, dispatch_count) =
        build::<WebhookDispatcher>(&h, &f, "WebhookDispatcherFunction", &[], system()).await;
    let (sender, send_count) = build::<WebhookSender>(&h, &f, "WebhookSenderFunction", &[], system()).await;
    let ids: Vec<String> = (0..n).map(|i| format!("B1-{i:06}")).collect();
    store(&h, &f, &ids).await;
    dispatch_all(&h, &f, &dispatcher, n).await;
    let dispatch_requests = dispatch_count.get();
    let started = Instant::now();
    h.drain_queue(&f.deliveries_url, &f.deliveries_arn, 30, |e| sender.handle(e, "b")).await;
    let took = started.elapsed().as_secs_f64();
    let delivered = recorder.seen.lock().unwrap().len();
    let first_attempt = send_count.get();

    // A failed attempt, then its retry 5 s later as a delayed message (the production path for waits up to
    // 15 minutes).
    let m = 50;
    let short_ids: Vec<String> = (0..m).map(|i| format!("B4-{i:06}")).collect();
    store(&h, &f, &short_ids).await;
    dispatch_all(&h, &f, &dispatcher, m).await;
    recorder.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let before = send_count.get();
    h.drain_queue(&f.deliveries_url, &f.deliveries_arn, 30, |e| sender.handle(e, "b")).await;
    let failed_attempt = send_count.get() - before;
    recorder.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(StdDuration::from_secs(6)).await;
    let before = send_count.get();
    h.drain_queue(&f.deliveries_url, &f.deliveries_arn, 30, |e| sender.handle(e, "b")).await;
    let short_retry = send_count.get() - before;

    // 3: the local stack's loops running on a fresh stack (nothing queued before), orders stored one at a time.
    let f = h.forwarding().await;
    let api = f.merchant_api(&h, system()).await;
    let resp =
        api.handle(nex_local::events::http_v2("POST", "/endpoints", "", &headers, body.as_bytes(), "b"), "b").await;
    assert_eq!(resp.status_code, 201);
    let (dispatcher, _) = build::<WebhookDispatcher>(&h, &f, "WebhookDispatcherFunction", &[], system()).await;
    let (sender, _) = build::<WebhookSender>(&h, &f, "WebhookSenderFunction", &[], system()).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pipe_loop = {
        let stop = stop.clone();
        let pipe = nex_local::pipes::Pipes::new(&h.sdk, aws_sdk_sqs::Client::new(&h.sdk), {
            let pipes: Vec<nex_local::manifest::PipeSpec> =
                serde_json::from_value(manifest()["pipes"].clone()).unwrap();
            let stream = h
                .ddb
                .describe_table()
                .table_name(&f.orders.table)
                .send()
                .await
                .unwrap()
                .table
                .and_then(|t| t.latest_stream_arn)
                .unwrap();
            pipes
                .into_iter()
                .filter(|p| p.message == "order_event")
                .map(|p| nex_local::manifest::PipeSpec {
                    stream_arn: stream.clone(),
                    target_url: f.orders.events_url.clone(),
                    ..p
                })
                .collect()
        });
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = pipe.pump().await;
                tokio::time::sleep(StdDuration::from_millis(100)).await;
            }
        })
    };
    let dispatcher = Arc::new(dispatcher);
    let sender = Arc::new(sender);
    let region = manifest()["region"].as_str().unwrap().to_owned();
    let poll = |url: String, arn: String, which: u8| {
        let (stop, sqs, region, dispatcher, sender) =
            (stop.clone(), h.sqs.clone(), region.clone(), dispatcher.clone(), sender.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let target = nex_local::sqs::Target {
                    queue_url: &url,
                    queue_arn: &arn,
                    region: &region,
                    batch_size: 10,
                    report_batch_item_failures: true,
                    visibility_timeout: Some(30),
                };
                let _ = if which == 0 {
                    nex_local::sqs::deliver_once(&sqs, &target, |e| dispatcher.handle(e, "b")).await
                } else {
                    nex_local::sqs::deliver_once(&sqs, &target, |e| sender.handle(e, "b")).await
                };
            }
        })
    };
    let loops = [
        poll(f.orders.events_url.clone(), "arn:aws:sqs:us-east-1:123456789012:ev".into(), 0),
        poll(f.deliveries_url.clone(), f.deliveries_arn.clone(), 1),
    ];
    let k = 100;
    let orders = DynamoOrders::new(h.ddb.clone(), &f.orders.table);
    let hasher = SubjectHasher::new(&SecretString::from("pepper".to_owned()));
    let mut stored = HashMap::new();
    for i in 0..k {
        let o = order(&format!("B3-{i:06}"));
        let event_id = nex_shared::usecases::orders_ingest::event_id(&o);
        store_page(&orders, &hasher, "merchant-demo-1", vec![o], Utc::now()).await.unwrap();
        stored.insert(event_id, Instant::now());
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let until = Instant::now() + StdDuration::from_secs(120);
    while Instant::now() < until {
        let all = {
            let seen = recorder.seen.lock().unwrap();
            stored.keys().all(|id| seen.contains_key(id))
        };
        if all {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = recorder.seen.lock().unwrap().clone();
    let mut lat: Vec<f64> = stored
        .iter()
        .filter_map(|(id, at)| seen.get(id).map(|s| s.duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    pipe_loop.abort();
    for l in loops {
        l.abort();
    }

    println!("\nforwarding bench ({n} deliveries to one endpoint; emulator: moto on loopback)\n");
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| deliveries per second, one sender instance (batches of 10) | {:.0} ({delivered} in {took:.1} s) |",
        delivered as f64 / took
    );
    println!(
        "| AWS requests per event, dispatcher (endpoints query, delivery put, job send) | {:.2} |",
        dispatch_requests as f64 / n as f64
    );
    println!("| AWS requests per delivery, first attempt that succeeds | {:.2} |", first_attempt as f64 / n as f64);
    println!(
        "| AWS requests per delivery, first attempt that fails (and schedules its retry) | {:.2} |",
        failed_attempt as f64 / m as f64
    );
    println!(
        "| AWS requests per delivery, retry after a short wait (a delayed message) | {:.2} |",
        short_retry as f64 / m as f64
    );
    println!(
        "| order stored -> delivered, p50 / p99 ({} of {k}, local stack loops) | {:.0} ms / {:.0} ms |",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}
