//! 1,000 concurrent opt-ins from 50 merchants through the merchant API's own handler, against the emulator
//! (started and provisioned by `infra/bench.sh optin`), then every one sent again as a client retry would,
//! then the audit log derived from the ledger by the audit appender. Prints a table; asserts nothing.
//!
//!   infra/bench.sh optin            (or: NEX_STACK_MANIFEST=... cargo bench -p tests --bench optin_load)
//!   NEX_OPTINS=200 ...              fewer opt-ins

use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use nex_shared::adapters::dynamo_audit::DynamoAudit;
use nex_shared::domain::audit;
use nex_shared::ports::AuditLog;
use nex_tests::{table, CallHttp, Harness};
use sha2::{Digest, Sha256};

const MERCHANTS: usize = 50;

fn post(body: &str, key: &str) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("authorization".to_owned(), format!("Bearer {key}")),
    ];
    nex_local::events::http_v2("POST", "/consent/opt-ins", "", &headers, body.as_bytes(), "bench")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("NEX_OPTINS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let h = Harness::new().await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    // 50 merchants, each with its own API key (only the key's SHA-256 is stored).
    let keys: Vec<String> = (0..MERCHANTS).map(|m| format!("bench-key-{tag}-{m}")).collect();
    for (m, key) in keys.iter().enumerate() {
        h.ddb
            .put_item()
            .table_name(table("MessagingTable"))
            .item("pk", AttributeValue::S(format!("merchant-key#{}", hex::encode(Sha256::digest(key)))))
            .item("sk", AttributeValue::S("merchant".into()))
            .item("merchant_id", AttributeValue::S(format!("bench-{tag}-m{m}")))
            .send()
            .await
            .expect("seed key");
    }
    let api = std::sync::Arc::new(h.merchant_api().await);
    let body = |i: usize| {
        serde_json::json!({
            "id": format!("b{tag}-{i}"),
            "phone": format!("+3161{:07}", i),
            "source": "checkout_page",
        })
        .to_string()
    };

    // Every opt-in at once; a 429 is retried after its Retry-After, as a client does.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let api = api.clone();
        let (b, key) = (body(i), keys[i % MERCHANTS].clone());
        tasks.push(tokio::spawn(async move {
            let mut first = None;
            let mut latency = std::time::Duration::ZERO;
            for _ in 0..20 {
                let t = Instant::now();
                let resp = api.as_ref().handle(post(&b, &key), "bench").await;
                latency = t.elapsed();
                first.get_or_insert(resp.status_code);
                if resp.status_code != 429 {
                    return (first.unwrap_or(0), resp.status_code, latency);
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            (first.unwrap_or(0), 429, latency)
        }));
    }
    let mut first_status: BTreeMap<i64, usize> = BTreeMap::new();
    let mut final_status: BTreeMap<i64, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    for t in tasks {
        let (first, last, latency) = t.await.expect("task");
        *first_status.entry(first).or_default() += 1;
        *final_status.entry(last).or_default() += 1;
        latencies.push(latency);
    }
    let burst = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];

    // Each sent again (a client retry, no `at`): no new ledger entry.
    let mut resent: BTreeMap<i64, usize> = BTreeMap::new();
    for i in 0..n {
        let resp = api.as_ref().handle(post(&body(i), &keys[i % MERCHANTS]), "bench").await;
        *resent.entry(resp.status_code).or_default() += 1;
    }

    // The ledger's entries of this run.
    let mut ledger = 0;
    let mut start = None;
    loop {
        let page = h
            .ddb
            .scan()
            .table_name(table("MessagingTable"))
            .filter_expression("begins_with(sk, :p)")
            .expression_attribute_values(":p", AttributeValue::S(format!("consent#optin#bench-{tag}-")))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        ledger += page.items().len();
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }

    // The audit appender, from the ledger's stream.
    let log = DynamoAudit::new(h.ddb.clone(), table("DataRequestsTable"));
    let before = log.head().await.expect("head").map_or(0, |(n, _)| n);
    let t = Instant::now();
    let round = h.audit_ledger().await;
    let audit_time = t.elapsed();
    let entries = log.entries(0, usize::MAX).await.expect("entries");
    let audited =
        entries.iter().filter(|e| e.action == "consent.opt_in" && e.detail.contains(&format!("bench-{tag}-"))).count();
    let head = log.head().await.expect("head");
    let verified = audit::verify(&entries, head.as_ref().map(|(n, h)| (*n, h.as_str()))).ok();
    let appended = head.as_ref().map_or(0, |(n, _)| *n) - before;

    let fmt = |m: &BTreeMap<i64, usize>| m.iter().map(|(s, c)| format!("{c} x {s}")).collect::<Vec<_>>().join(", ");
    println!("\nopt-ins under load ({n} concurrent, {MERCHANTS} merchants, against the emulator)");
    println!("{:<46} {}", "first answers", fmt(&first_status));
    println!("{:<46} {}", "final answers (429s retried after Retry-After)", fmt(&final_status));
    println!("{:<46} {}", "answers to the same opt-ins sent again", fmt(&resent));
    println!("{:<46} {:.2} s", "burst wall time", burst.as_secs_f64());
    println!("{:<46} p50 {:?}, p99 {:?}", "answer time", pct(0.5), pct(0.99));
    println!("{:<46} {n}", "distinct opt-in ids");
    println!("{:<46} {ledger}", "ledger entries");
    println!("{:<46} {audited}", "audit entries");
    println!(
        "{:<46} {} references in {:.2} s: {:.0} appends/s ({} failed records)",
        "audit appender",
        round.received,
        audit_time.as_secs_f64(),
        appended as f64 / audit_time.as_secs_f64().max(1e-9),
        round.failed
    );
    println!("{:<46} {}", "audit verify", if verified { "holds" } else { "BROKEN" });
}
