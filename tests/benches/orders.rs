//! Marketplace orders: what a poll costs. Prints tables; asserts nothing.
//!
//! 1. Orders normalised per second per marketplace (the platforms' published bodies where there are some:
//!    Amazon's searchOrders example, bol's captured order; eBay publishes none, so this repository's sample).
//! 2. Platform requests and AWS requests per new order and per unchanged re-poll (one Amazon connection,
//!    a stand-in answering pages of 100 orders).
//! 3. A simulated schedule run over 1,000 connections (`NEX_BENCH_CONNECTIONS`): the fan-out, then 32
//!    pollers working the poll queue as Lambda's would, 1% of the connections answering 3 s late: time to
//!    fan out, how long any connection waited for its poll, and that the slow ones held up no other.
//!
//!   infra/bench.sh orders        (or: NEX_STACK_MANIFEST=... cargo bench -p tests --bench orders)

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use nex_shared::adapters::dynamo_connections::{DynamoConnections, SecretsCredentials};
use nex_shared::apps::orders::{MarketplacePoller, MarketplaceScheduler};
use nex_shared::domain::envelope::Envelope;
use nex_shared::domain::messages::PollJob;
use nex_shared::domain::orders::connection::Connection;
use nex_shared::domain::orders::{amazon, bol, ebay, Marketplace};
use nex_shared::ports::Credentials;
use nex_tests::*;
use secrecy::SecretString;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The poller with its orders in memory (part 3).
struct SimPoller {
    connections: DynamoConnections,
    credentials: SecretsCredentials,
    source: nex_shared::adapters::marketplaces::AmazonSource,
    hasher: nex_shared::domain::subject::SubjectHasher,
    orders: nex_shared::adapters::memory::MemoryOrders,
    metrics: nex_shared::adapters::memory::MemoryMetrics,
}

impl SimPoller {
    async fn poll(&self, id: &str, deadline: chrono::DateTime<Utc>) -> Result<(), nex_shared::ports::InfraError> {
        let clock = nex_shared::ports::SystemClock;
        nex_shared::usecases::poll::Poller {
            connections: &self.connections,
            credentials: &self.credentials,
            orders: &self.orders,
            source: &self.source,
            hasher: &self.hasher,
            metrics: &self.metrics,
            clock: &clock,
        }
        .poll(id, deadline, 0.5)
        .await
        .map(|_| ())
    }
}

/// Pollers working the queue at once (Lambda would run as many as the queue asks for; moto is one process).
const POLLERS: usize = 32;

fn read_fixture(rel: &str) -> Option<String> {
    std::fs::read_to_string(format!("{}/{rel}", fixtures_dir())).ok()
}

fn amazon_order(id: &str) -> serde_json::Value {
    serde_json::json!({
        "orderId": id, "createdTime": (Utc::now() - Duration::hours(5)).to_rfc3339(),
        "lastUpdatedTime": (Utc::now() - Duration::hours(4)).to_rfc3339(),
        "salesChannel": {"marketplaceId": "A1PA6795UKMFR9"},
        "buyer": {"buyerName": "Bench Buyer", "buyerEmail": format!("{id}@marketplace.amazon.de")},
        "recipient": {"deliveryAddress": {"name": "Bench Buyer", "addressLine1": "Benchstr. 1", "city": "Berlin", "countryCode": "DE"}},
        "proceeds": {"grandTotal": {"amount": "19.99", "currencyCode": "EUR"}},
        "fulfillment": {"fulfillmentStatus": "UNSHIPPED", "fulfilledBy": "MERCHANT"},
        "orderItems": [{"orderItemId": "1", "quantityOrdered": 1, "product": {"asin": "B000000001", "sellerSku": "S-1"}}]
    })
}

fn rate(n: usize, f: impl Fn()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn normalisation() {
    println!("\n== 1. orders normalised per second (parse + normalise, one core)");
    let amazon_body = read_fixture("amazon_sp_api/orders_2026-01-01/searchOrders_200_example.json");
    let (amazon_src, amazon_body) = match amazon_body {
        Some(b) => ("Amazon's searchOrders example", b),
        None => ("this repository's sample", serde_json::json!({"orders": [amazon_order("1-1-1")]}).to_string()),
    };
    let bol_body = read_fixture("bol/get_order_200_body.json");
    let (bol_src, bol_body) = match bol_body {
        Some(b) => ("bol's captured order", b),
        None => (
            "this repository's sample",
            r#"{"orderId":"A2B3C4D5E6","orderPlacedDateTime":"2026-11-20T12:00:00+01:00","shipmentDetails":{"firstName":"Piet",
            "surname":"Jansen","streetName":"Dorpsstraat","houseNumber":"7","zipCode":"1234AB","city":"UTRECHT","countryCode":"NL",
            "email":"x1@verkopen.bol.com"},"orderItems":[{"orderItemId":"9000000001","fulfilment":{"method":"FBR"},"offer":{"reference":"REF-1"},
            "product":{"ean":"8712345678906","title":"Lamp"},"quantity":2,"quantityShipped":2,"quantityCancelled":0,"unitPrice":19.99,
            "totalPrice":39.98,"latestChangedDateTime":"2026-11-21T09:00:00+01:00"}]}"#
                .to_owned(),
        ),
    };
    let ebay_body = serde_json::json!({"orders": [{
        "orderId": "05-00000-00001", "creationDate": "2026-11-30T10:00:00.000Z", "lastModifiedDate": "2026-11-30T11:00:00.000Z",
        "orderFulfillmentStatus": "FULFILLED", "orderPaymentStatus": "PAID", "buyer": {"username": "u1"},
        "pricingSummary": {"total": {"value": "12.50", "currency": "GBP"}},
        "fulfillmentStartInstructions": [{"shippingStep": {"shipTo": {"fullName": "Jo", "contactAddress": {"addressLine1": "1 High St", "city": "Leeds", "countryCode": "GB"}}}}],
        "lineItems": [{"lineItemId": "1", "legacyItemId": "110001", "quantity": 1, "total": {"value": "12.50", "currency": "GBP"}}]
    }]})
    .to_string();
    let n = 20_000;
    let a = rate(n, || {
        let p: amazon::SearchOrders = serde_json::from_str(&amazon_body).unwrap();
        for o in &p.orders {
            std::hint::black_box(amazon::normalise(o).ok());
        }
    });
    let e = rate(n, || {
        let p: ebay::OrderPage = serde_json::from_str(&ebay_body).unwrap();
        for o in &p.orders {
            std::hint::black_box(ebay::normalise(o).ok());
        }
    });
    let b = rate(n, || {
        if let Ok(o) = serde_json::from_str::<bol::ApiOrder>(&bol_body) {
            std::hint::black_box(bol::normalise(&o).ok());
        }
    });
    println!("{:<10} {:>14}  body", "marketplace", "orders/s");
    println!("{:<10} {:>14.0}  {amazon_src} ({} bytes)", "amazon", a, amazon_body.len());
    println!("{:<10} {:>14.0}  this repository's sample ({} bytes)", "ebay", e, ebay_body.len());
    println!("{:<10} {:>14.0}  {bol_src} ({} bytes)", "bol", b, bol_body.len());
}

async fn connection(connections: &DynamoConnections, secrets: &SecretsCredentials, site: &str) -> Connection {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let creds = Credentials {
        refresh_token: Some(SecretString::from("Atzr|bench".to_owned())),
        access_token: Some(SecretString::from("Atza|bench".to_owned())),
        access_expires_at: Some(Utc::now() + Duration::hours(1)),
        ..Credentials::default()
    };
    let secret_id = secrets.create(&format!("nex-local/connections/{id}"), &creds).await.unwrap();
    let c = Connection::new(
        id,
        format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        Marketplace::Amazon,
        "A3BENCH".into(),
        vec![site.to_owned()],
        secret_id,
        Utc::now() - Duration::hours(1),
    );
    connections.create(&c).await.unwrap();
    c
}

async fn costs(h: &Harness) {
    println!("\n== 2. requests per order (one Amazon connection, pages of 100 orders)");
    let server = MockServer::start().await;
    let page = |from: usize| {
        let orders: Vec<_> = (from..from + 100).map(|i| amazon_order(&format!("305-{i:07}-0000001"))).collect();
        serde_json::json!({"orders": orders, "lastUpdatedBefore": (Utc::now() - Duration::minutes(3)).to_rfc3339()})
    };
    Mock::given(method("GET"))
        .and(path("/orders/2026-01-01/orders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(0)))
        .mount(&server)
        .await;
    let connections = DynamoConnections::new(h.aws.dynamodb(), table("ConnectionsTable"));
    let secrets = SecretsCredentials::new(h.aws.secrets_manager());
    let c = connection(&connections, &secrets, "A1PA6795UKMFR9").await;
    let poller: MarketplacePoller = h
        .function(
            "MarketplacePollerFunction",
            &[("AMAZON_SP_API_URL", &server.uri()), ("AMAZON_LWA_URL", &server.uri())],
            system(),
        )
        .await;
    let aws0 = h.requests.get();
    poller.poll(&c.id, Utc::now() + Duration::minutes(2)).await.unwrap();
    let (aws1, api1) = (h.requests.get(), server.received_requests().await.unwrap().len());
    // The same window again: every order unchanged.
    let lease = uuid::Uuid::new_v4().simple().to_string();
    use nex_shared::ports::ConnectionStore;
    let mut back =
        connections.lease(&c.id, &lease, Utc::now(), Utc::now() + Duration::minutes(1)).await.unwrap().unwrap();
    back.watermark = None;
    connections.save(&back, &lease, true).await.unwrap();
    let aws2 = h.requests.get();
    poller.poll(&c.id, Utc::now() + Duration::minutes(2)).await.unwrap();
    let (aws3, api3) = (h.requests.get(), server.received_requests().await.unwrap().len());
    println!("{:<28} {:>16} {:>16}", "", "platform req/order", "AWS req/order");
    println!("{:<28} {:>16.3} {:>16.3}", "100 new orders", api1 as f64 / 100.0, (aws1 - aws0) as f64 / 100.0);
    println!(
        "{:<28} {:>16.3} {:>16.3}",
        "100 unchanged (re-poll)",
        (api3 - api1) as f64 / 100.0,
        (aws3 - aws2 - 2) as f64 / 100.0
    );
    println!("  (the re-poll's 2 requests of putting the watermark back are not counted; AWS requests per poll also");
    println!(
        "   include the lease, the secret read and the connection's saves: {} and {} in all)",
        aws1 - aws0,
        aws3 - aws2 - 2
    );
}

async fn schedule(h: &Harness) {
    let n: usize = std::env::var("NEX_BENCH_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    println!("\n== 3. a schedule run over {n} connections ({POLLERS} pollers, 1% answering 3 s late)");
    let server = MockServer::start().await;
    let body = serde_json::json!({"orders": [amazon_order("306-0000001-0000001"), amazon_order("306-0000002-0000001")],
        "lastUpdatedBefore": (Utc::now() - Duration::minutes(3)).to_rfc3339()});
    Mock::given(method("GET"))
        .and(path("/orders/2026-01-01/orders"))
        .and(query_param("marketplaceIds", "SLOW0000000"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()).set_delay(StdDuration::from_secs(3)))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/orders/2026-01-01/orders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .with_priority(2)
        .mount(&server)
        .await;
    let connections = DynamoConnections::new(h.ddb.clone(), table("ConnectionsTable"));
    let secrets = SecretsCredentials::new(h.aws.secrets_manager());
    let t = Instant::now();
    let mut slow = std::collections::HashSet::new();
    let mut made = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let batch = futures_util::future::join_all(chunk.iter().map(|i| {
            let site = if i % 100 == 7 { "SLOW0000000" } else { "A1PA6795UKMFR9" };
            let (connections, secrets) = (&connections, &secrets);
            async move { (site == "SLOW0000000", connection(connections, secrets, site).await.id) }
        }))
        .await;
        for (is_slow, id) in batch {
            if is_slow {
                slow.insert(id.clone());
            }
            made.push(id);
        }
    }
    println!("  {n} connections created in {:.1} s", t.elapsed().as_secs_f64());
    let queue = h.data_requests_url.clone();
    let scheduler: MarketplaceScheduler =
        h.function("MarketplaceSchedulerFunction", &[("POLL_QUEUE_URL", &queue)], system()).await;
    let t0 = Instant::now();
    let queued = scheduler.fan_out().await.unwrap();
    let fan_out = t0.elapsed();
    // The poller's own use case, with the connections and their secrets on the emulator and the orders in
    // memory: moto copies its tables on every transaction, so 1,000 connections' order writes would measure
    // moto (the orders table's costs are measured in part 2).
    let built: MarketplacePoller = h
        .function(
            "MarketplacePollerFunction",
            &[("AMAZON_SP_API_URL", &server.uri()), ("AMAZON_LWA_URL", &server.uri())],
            system(),
        )
        .await;
    let poller = Arc::new(SimPoller {
        connections: built.connections.clone(),
        credentials: built.credentials.clone(),
        source: built.amazon.clone(),
        hasher: built.hasher.clone(),
        orders: nex_shared::adapters::memory::MemoryOrders::default(),
        metrics: nex_shared::adapters::memory::MemoryMetrics::default(),
    });
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mine: std::collections::HashSet<String> = made.iter().cloned().collect();
    let waits = Arc::new(tokio::sync::Mutex::new(Vec::<(bool, f64, f64)>::new()));
    let workers: Vec<_> = (0..POLLERS)
        .map(|_| {
            let (sqs, queue, poller, waits, mine) =
                (h.sqs.clone(), queue.clone(), poller.clone(), waits.clone(), mine.clone());
            let failed = failed.clone();
            let slow = slow.clone();
            tokio::spawn(async move {
                let mut idle = 0;
                while idle < 3 {
                    let Ok(got) = sqs
                        .receive_message()
                        .queue_url(&queue)
                        .max_number_of_messages(1)
                        .wait_time_seconds(1)
                        .send()
                        .await
                    else {
                        // The emulator timed out: try again, as Lambda's poller would.
                        continue;
                    };
                    let msgs = got.messages.unwrap_or_default();
                    if msgs.is_empty() {
                        idle += 1;
                        continue;
                    }
                    idle = 0;
                    for m in msgs {
                        let job =
                            Envelope::<PollJob>::decode(m.body.as_deref().unwrap_or("")).unwrap().payload.connection;
                        let started = t0.elapsed().as_secs_f64();
                        if mine.contains(&job) {
                            // A failed job is left on the queue in Lambda; here it is counted.
                            if poller.poll(&job, Utc::now() + Duration::minutes(2)).await.is_err() {
                                failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            waits.lock().await.push((slow.contains(&job), started, t0.elapsed().as_secs_f64()));
                        }
                        let _ = sqs
                            .delete_message()
                            .queue_url(&queue)
                            .receipt_handle(m.receipt_handle.unwrap_or_default())
                            .send()
                            .await;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let total = t0.elapsed();
    let waits = waits.lock().await.clone();
    let mut fast: Vec<f64> = waits.iter().filter(|w| !w.0).map(|w| w.1).collect();
    fast.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v.get(((v.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0.0);
    let slow_done: Vec<f64> = waits.iter().filter(|w| w.0).map(|w| w.2 - w.1).collect();
    println!(
        "  fan-out: {queued} jobs queued in {:.2} s (8 index shards read together, SendMessageBatch of 10)",
        fan_out.as_secs_f64()
    );
    println!(
        "  polled: {} of {n} connections in {:.1} s; each polled once: {}; jobs failed (the emulator's timeouts): {}",
        waits.len(),
        total.as_secs_f64(),
        waits.len() == n,
        failed.load(std::sync::atomic::Ordering::SeqCst)
    );
    println!(
        "  wait before a connection's poll started (s): p50 {:.2}  p99 {:.2}  max {:.2}",
        pct(&fast, 0.5),
        pct(&fast, 0.99),
        pct(&fast, 1.0)
    );
    println!("  the {} slow connections took {:.1} s each; the fast ones' longest wait {:.2} s: no connection waited on a slow one's",
        slow_done.len(), slow_done.iter().copied().fold(0.0, f64::max), pct(&fast, 1.0));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    normalisation();
    let h = Harness::new().await;
    costs(&h).await;
    schedule(&h).await;
}
