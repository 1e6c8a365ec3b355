//! No panic on any input: every parser of outside input, fuzzed from the platforms' own payloads (in
//! `../shared/fixtures/` when it is beside the repository) and this repository's samples (`events/`).
//! A quick run here (1,000 inputs a target); `infra/bench.sh fuzz` runs long and prints the table.
//! Nothing here needs the emulator: the AWS clients point at a closed port and are never reached.

use std::sync::OnceLock;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use chrono::{TimeZone, Utc};
use nex_shared::adapters::memory::{FixedClock, MemoryInbox, MemoryLedger, MemoryMerchants, MemoryMetrics};
use nex_shared::domain::envelope::Envelope;
use nex_shared::domain::messages::{
    Continue, DataRequest, InboundMessage, LedgerRef, OptIn, PaymentEvent, Receipt, SendRequest,
};
use nex_shared::domain::stripe::signature::Verifier;
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::domain::whatsapp::signature::HubVerifier;
use nex_shared::usecases::stripe_ingest::{Ingest, IngestSettings};
use nex_shared::usecases::whatsapp_ingest::{WhatsAppIngest, WhatsAppSettings};
use nex_tests::fuzz::{files, inputs, mutate, Case, Tried};
use secrecy::SecretString;

const SECRET: &str = "whsec_fuzz";
const APP_SECRET: &str = "fuzz-app-secret";

fn root(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// JSON bodies inside this repository's sample events (their `body`, or the event itself).
fn samples(dir: &str) -> Vec<Vec<u8>> {
    files(&root(&format!("events/{dir}")), "json")
        .into_iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
            v.get("body").and_then(|b| b.as_str()).map_or(b, |s| s.as_bytes().to_vec())
        })
        .collect()
}

fn stripe_seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = files(&format!("{}/stripe/events", nex_tests::fixtures_dir()), "json");
        s.extend(samples("stripe"));
        s
    })
}

fn whatsapp_seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = Vec::new();
        for dir in ["meta_openapi", "captured"] {
            s.extend(files(&format!("{}/whatsapp/{dir}", nex_tests::fixtures_dir()), "json"));
        }
        s.extend(samples("whatsapp"));
        s
    })
}

fn envelope_seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = Vec::new();
        for batch in files(&root("events/sqs"), "json") {
            let v: serde_json::Value = serde_json::from_slice(&batch).unwrap_or_default();
            for r in v["Records"].as_array().into_iter().flatten() {
                s.extend(r["body"].as_str().map(|b| b.as_bytes().to_vec()));
            }
        }
        s.extend(samples("http"));
        s
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static R: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    R.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fn hasher() -> SubjectHasher {
    SubjectHasher::new(&SecretString::from("fuzz-pepper"))
}

/// Mutated deliveries to `deliver(header, body)`: signed with `sign`, so the body reaches the parser, or
/// not, with the mutated body's first bytes as the header.
fn signed_or_not(
    seeds: &[Vec<u8>], tried: &Tried, sign: impl Fn(&[u8]) -> String + std::panic::RefUnwindSafe,
    deliver: impl Fn(&str, &[u8]) + std::panic::RefUnwindSafe,
) {
    bolero::check!().with_type::<(Case, bool)>().with_iterations(inputs()).for_each(|(case, signed)| {
        let body = mutate(seeds, case);
        let header =
            if *signed { sign(&body) } else { String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned() };
        deliver(&header, &body);
        tried.one();
    });
}

#[test]
fn stripe_deliveries_signed_or_not_never_panic() {
    let seeds = stripe_seeds();
    assert!(!seeds.is_empty());
    let verifier = Verifier::new(&[SecretString::from(SECRET)]).unwrap();
    let (hasher, inbox, metrics) = (hasher(), MemoryInbox::default(), MemoryMetrics::default());
    let clock = FixedClock::at(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
    let settings = IngestSettings { max_body_bytes: 256 * 1024, tolerance_secs: 300, pinned_api_version: None };
    let ingest = Ingest {
        verifier: &verifier,
        hasher: &hasher,
        clock: &clock,
        inbox: &inbox,
        metrics: &metrics,
        settings: &settings,
    };
    let tried = Tried::default();
    signed_or_not(
        seeds,
        &tried,
        |b| nex_shared::domain::stripe::signature::sign_header(&[SECRET], 1_800_000_000, b),
        |h, b| {
            let _ = runtime().block_on(ingest.handle(Some(h), b, "fuzz"));
            let _ = nex_shared::domain::stripe::event::parse(b);
        },
    );
    tried.report("stripe webhook (verify, parse, inbox)");
}

#[test]
fn whatsapp_deliveries_signed_or_not_never_panic() {
    let seeds = whatsapp_seeds();
    assert!(!seeds.is_empty());
    let verifier = HubVerifier::new(&[SecretString::from(APP_SECRET)]).unwrap();
    let (hasher, inbox, metrics, ledger) =
        (hasher(), MemoryInbox::default(), MemoryMetrics::default(), MemoryLedger::default());
    let merchants = MemoryMerchants([("106540352242922".to_owned(), "m".to_owned())].into());
    let clock = FixedClock::at(Utc::now());
    let settings = WhatsAppSettings { max_body_bytes: 1 << 20 };
    let ingest = WhatsAppIngest {
        verifier: &verifier,
        hasher: &hasher,
        clock: &clock,
        inbox: &inbox,
        ledger: &ledger,
        merchants: &merchants,
        metrics: &metrics,
        settings: &settings,
        deadline: None,
    };
    let tried = Tried::default();
    signed_or_not(
        seeds,
        &tried,
        |b| nex_shared::domain::whatsapp::signature::sign_header(APP_SECRET, b),
        |h, b| {
            let _ = runtime().block_on(ingest.handle(Some(h), b, "fuzz"));
            let _ = nex_shared::domain::whatsapp::webhook::parse(b);
        },
    );
    tried.report("whatsapp webhook (verify, walk, inbox)");
}

#[test]
fn queue_messages_and_merchant_api_bodies_never_panic() {
    let seeds = envelope_seeds();
    assert!(!seeds.is_empty());
    let tried = Tried::default();
    let now = Utc::now();
    let (hasher, ledger) = (hasher(), MemoryLedger::default());
    bolero::check!().with_type::<Case>().with_iterations(inputs()).for_each(|case| {
        let body = mutate(seeds, case);
        let text = String::from_utf8_lossy(&body);
        let _ = Envelope::<PaymentEvent>::decode(&text);
        let _ = Envelope::<InboundMessage>::decode(&text);
        let _ = Envelope::<Receipt>::decode(&text);
        let _ = Envelope::<SendRequest>::decode(&text);
        let _ = Envelope::<DataRequest>::decode(&text);
        let _ = Envelope::<Continue>::decode(&text);
        let _ = LedgerRef::parse(&text);
        let _ = runtime().block_on(nex_shared::usecases::inbox::resolve(&MemoryInbox::default(), &text, now));
        // The merchant API's bodies, through the same validation the route runs.
        if let Ok(opt_in) = serde_json::from_slice::<OptIn>(&body) {
            let _ = runtime().block_on(nex_shared::usecases::opt_in::record(&ledger, &hasher, "m", &opt_in, now));
        }
        let _ = serde_json::from_slice::<nex_shared::usecases::data_requests::Intake>(&body);
        // Forwarding: delivery jobs, and a merchant's endpoint URL, secrets and a receiver's Retry-After.
        let _ = nex_shared::ports::DeliveryRef::parse(&text);
        let policy = nex_shared::domain::webhooks::AddressPolicy { allow_loopback: body.len() % 2 == 0 };
        let _ = policy.check_url(&text);
        let _ = nex_shared::domain::webhooks::key_of(&text);
        let _ = nex_shared::domain::webhooks::parse_retry_after(&text);
        tried.one();
    });
    tried.report("queue envelopes and merchant API bodies");
}

/// An HTTP function that reads everything `lambda_http` made of the event.
struct Echo;

nex_shared::config! { EchoConfig {} }

impl nex_shared::function::Function for Echo {
    const NAME: &'static str = "echo";
    type Config = EchoConfig;
    async fn build(
        _: &nex_shared::adapters::aws::Aws, _: EchoConfig, _: nex_shared::ports::SharedClock,
    ) -> Result<Self, nex_shared::config::InitError> {
        Ok(Echo)
    }
}

impl nex_shared::function::HttpFunction for Echo {
    async fn http(
        &self, req: nex_shared::function::Request, _: &nex_shared::function::Invocation,
    ) -> nex_shared::function::Response {
        let q = nex_shared::http::query(&req);
        let first = q.first("hub.challenge").map(str::to_owned);
        nex_shared::http::json(200, serde_json::json!({ "len": req.body().len(), "first": first }))
    }
}

#[derive(Debug, Clone, bolero::TypeGenerator)]
struct RawRequest {
    method: u8,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    base64: bool,
}

#[test]
fn api_gateway_events_of_any_shape_become_a_response() {
    let seeds = whatsapp_seeds();
    let tried = Tried::default();
    bolero::check!().with_type::<(RawRequest, Case)>().with_iterations(inputs()).for_each(|(raw, case)| {
        let body = String::from_utf8_lossy(&mutate(seeds, case)).into_owned();
        let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
        let method = methods[usize::from(raw.method) % methods.len()];
        // Header names and values as HTTP allows them (API Gateway sends no others).
        let headers: Vec<(String, String)> = raw
            .headers
            .iter()
            .filter(|(k, v)| {
                aws_lambda_events::http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                    && aws_lambda_events::http::HeaderValue::from_str(v).is_ok()
            })
            .cloned()
            .collect();
        let mut event: ApiGatewayV2httpRequest =
            nex_local::events::http_v2(method, "/webhooks/whatsapp", "", &headers, body.as_bytes(), "fuzz");
        event.raw_path = Some(format!("/{}", raw.path));
        event.raw_query_string = Some(raw.query.clone());
        event.is_base64_encoded = raw.base64;
        event.body = Some(body);
        let inv = nex_shared::function::Invocation::new("fuzz", Utc::now());
        let response = runtime().block_on(nex_shared::function::invoke_http(&Echo, event, &inv));
        assert!((200..600).contains(&response.status_code));
        tried.one();
    });
    tried.report("API Gateway events (lambda_http conversion)");
}

/// Marketplace order bodies: the platforms' own (Amazon's 2026-01-01 examples and sandbox answers, bol's
/// captured bodies, eBay's deletion vector) and this repository's, mutated, through every parser and
/// normaliser the poller and the eBay endpoint run.
fn marketplace_seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let f = nex_tests::fixtures_dir();
        let mut s = files(&format!("{f}/amazon_sp_api/orders_2026-01-01"), "json");
        s.retain(|b| b.len() < 20_000);
        for b in files(&format!("{f}/amazon_sp_api/orders_2026-01-01/sandbox"), "json") {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
            s.push(v["response"].to_string().into_bytes());
        }
        s.extend(files(&format!("{f}/bol"), "json").into_iter().filter(|b| b.len() < 20_000));
        s.extend(files(&format!("{f}/ebay/account_deletion"), "json"));
        s.push(br#"{"orders":[{"orderId":"05-1","creationDate":"2026-11-30T10:00:00.000Z","orderFulfillmentStatus":"FULFILLED","buyer":{"username":"u"},"lineItems":[{"lineItemId":"1","quantity":4294967295}]}],"total":1}"#.to_vec());
        s.push(br#"{"orderId":"B1","orderPlacedDateTime":"2026-11-30T10:00:00+01:00","orderItems":[{"quantity":4294967295,"quantityShipped":4294967295,"unitPrice":1e308}]}"#.to_vec());
        s.push(br#"{"metadata":{"topic":"MARKETPLACE_ACCOUNT_DELETION"},"notification":{"notificationId":"n","data":{"username":"u"}}}"#.to_vec());
        s
    })
}

#[test]
fn marketplace_bodies_and_ebay_notices_never_panic() {
    use nex_shared::domain::orders::{amazon, bol, ebay, ebay_deletion};
    use p256::ecdsa::SigningKey;
    let seeds = marketplace_seeds();
    assert!(!seeds.is_empty());
    let tried = Tried::default();
    let key = *SigningKey::from_slice(&[11u8; 32]).unwrap().verifying_key();
    bolero::check!().with_type::<(Case, bool)>().with_iterations(inputs()).for_each(|(case, as_header)| {
        let body = mutate(seeds, case);
        if let Ok(p) = serde_json::from_slice::<amazon::SearchOrders>(&body) {
            p.orders.iter().for_each(|o| drop(amazon::normalise(o)));
            let _ = (p.next_token(), p.last_updated_before());
        }
        if let Ok(p) = serde_json::from_slice::<ebay::OrderPage>(&body) {
            p.orders.iter().for_each(|o| drop(ebay::normalise(o)));
        }
        if let Ok(o) = serde_json::from_slice::<bol::ApiOrder>(&body) {
            if let Ok(mut n) = bol::normalise(&o) {
                n.order.bound();
            }
        }
        if let Ok(l) = serde_json::from_slice::<bol::ReducedOrders>(&body) {
            l.orders.iter().for_each(|o| {
                let _ = o.changed_at();
            });
        }
        let text = String::from_utf8_lossy(&body);
        let header = if *as_header { Some(text.as_ref()) } else { None };
        if let Ok(h) = ebay_deletion::parse_header(header) {
            let _ = ebay_deletion::verify(&key, &h, &body);
        }
        let _ = ebay_deletion::compact(&body);
        let _ = serde_json::from_slice::<ebay_deletion::Notification>(&body);
        let _ = ebay_deletion::public_key(&text);
        let _ = Envelope::<nex_shared::domain::messages::PollJob>::decode(&text);
        let _ = nex_shared::domain::messages::OrderEventRef::parse(&text);
        tried.one();
    });
    tried.report("marketplace bodies and eBay notices");
}

/// Meta's own insights example and error body when the fixtures are beside the repository, this
/// repository's answers in their shapes, and the usage headers.
fn graph_seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let f = nex_tests::fixtures_dir();
        let mut s = files(&format!("{f}/meta_marketing/meta_docs"), "json");
        s.retain(|b| b.len() < 20_000);
        s.push(br#"{"data":[{"account_id":"1","campaign_id":"23850000000000001","campaign_name":"W","date_start":"2026-11-20","date_stop":"2026-11-20","impressions":"361324","clicks":"12","spend":"5339.5","account_currency":"EUR"}],"paging":{"cursors":{"before":"MAZDZD","after":"MAZDZD"},"next":"https://graph.facebook.com/v27.0/act_1/insights?after=MAZDZD"}}"#.to_vec());
        s.push(br#"{"id":"6077000000001","async_status":"Job Running","async_percent_completion":42}"#.to_vec());
        s.push(br#"{"report_run_id":"6077000000001"}"#.to_vec());
        s.push(br#"{"123":[{"type":"ads_insights","call_count":97,"total_cputime":20,"total_time":30,"estimated_time_to_regain_access":7}]}"#.to_vec());
        s.push(br#"{"app_id_util_pct":12,"acc_id_util_pct":97,"reset_time_duration":600}"#.to_vec());
        s.push(br#"{"insights_pull":{"account_id":"1234567890"}}"#.to_vec());
        s.push(br#"{"campaign_mapped":{"campaign_id":"1","account_id":"2","retailer":"m"}}"#.to_vec());
        s
    })
}

#[test]
fn graph_answers_usage_headers_and_insights_messages_never_panic() {
    use nex_shared::domain::insights;
    let seeds = graph_seeds();
    let tried = Tried::default();
    bolero::check!().with_type::<Case>().with_iterations(inputs()).for_each(|case| {
        let body = mutate(seeds, case);
        if let Some(p) = insights::parse_page(&body, "1", "EUR") {
            let mut r = insights::Rollup::default();
            p.rows.iter().for_each(|row| r.add(row));
            let _ = (r.ctr(), r.cpc());
        }
        let _ = insights::parse_error(&body);
        let _ = insights::parse_job(&body);
        let text = String::from_utf8_lossy(&body);
        let u = insights::usage(Some(&text), Some(&text), Some(&text));
        let _ = (insights::pace(&u), insights::slow_down_ms(&u));
        let _ = insights::api_version_major(&text);
        let _ = nex_shared::apps::insights::InsightsMessage::parse(&text);
        tried.one();
    });
    tried.report("Graph answers, usage headers and insights messages");
}
