//! The retention sweep on a table of 100,000 items of which 1% are due, against the emulator (started and
//! provisioned by `infra/bench.sh`). Prints a table; asserts nothing. Measures items read per item
//! deleted, AWS requests and wall time, for a clean run and for a run that crashes and resumes, and, for
//! comparison, what a full-table scan would read to find the same work.
//!
//!   infra/bench.sh sweep            (or: NEX_STACK_MANIFEST=... cargo bench -p tests --bench sweep)
//!   NEX_SWEEP_ITEMS=20000 ...       a smaller table

use std::time::Instant;

use aws_sdk_dynamodb::types::WriteRequest;
use chrono::{Duration, Utc};
use nex_shared::adapters::dynamo_audit::DynamoAudit;
use nex_shared::adapters::dynamo_data::{DynamoCheckpoints, DynamoData};
use nex_shared::adapters::dynamo_requests::DynamoDataRequests;
use nex_shared::adapters::memory::FixedClock;
use nex_shared::adapters::s3_objects::S3Objects;
use nex_shared::domain::data_inventory::Store;
use nex_shared::domain::retention::{self, DataClass};
use nex_shared::usecases::sweep::{Options, Report, Sweep};
use nex_tests::{Harness, Private};

fn item(i: usize, due: bool, now: chrono::DateTime<Utc>) -> WriteRequest {
    let key = format!("pi_bench_{i:07}");
    // Due items: deadlines spread over the last 4 to 29 days (six years of 366 days is a few days more
    // than 72 months), inside the first run's 31-day look-back. The rest: over the next six years.
    let last_event = if due {
        now - Duration::days(6 * 366) - Duration::hours((i % (25 * 24)) as i64 + 1)
    } else {
        now - Duration::days((i % (6 * 365)) as i64)
    };
    let st = retention::stamp(DataClass::InvoiceTaxRecord, last_event, &key).expect("stamp");
    nex_tests::swept_payment(&key, &st)
}

/// Writes items `ids`, every 100th due, with 8 writers in parallel.
async fn seed(h: &Harness, p: &Private, ids: Vec<usize>, now: chrono::DateTime<Utc>) -> usize {
    let n = ids.iter().filter(|i| *i % 100 == 0).count();
    let ids = std::sync::Arc::new(ids);
    let table = p.table(Store::Payments).to_owned();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let ddb = h.ddb.clone();
        let table = table.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mine: Vec<usize> = ids.iter().copied().filter(|i| i % 8 == w).collect();
            for chunk in mine.chunks(25) {
                let mut pending: Vec<WriteRequest> = chunk.iter().map(|&i| item(i, i % 100 == 0, now)).collect();
                while !pending.is_empty() {
                    let out = ddb
                        .batch_write_item()
                        .request_items(&table, std::mem::take(&mut pending))
                        .send()
                        .await
                        .expect("BatchWriteItem");
                    pending = out.unprocessed_items.and_then(|mut u| u.remove(&table)).unwrap_or_default();
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("seeder");
    }
    n
}

struct Row {
    name: &'static str,
    read: u64,
    deleted: u64,
    requests: usize,
    secs: f64,
}

/// One sweep over the payments table of `p` (the only table with items here), saving its position in
/// `platform`'s checkpoint.
async fn run(
    h: &Harness, p: &Private, platform: &str, now: chrono::DateTime<Utc>, crash: Option<u64>,
) -> (Report, usize, f64) {
    let payments = [(Store::Payments, p.table(Store::Payments).to_owned())].into_iter().collect();
    let data = DynamoData::new(h.ddb.clone(), payments);
    let checkpoints = DynamoCheckpoints::new(h.ddb.clone(), platform);
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    let audit = DynamoAudit::new(h.ddb.clone(), p.table(Store::DataRequests));
    let exports = S3Objects::new(h.aws.s3(), p.bucket.clone());
    let sweep =
        Sweep { data: &data, checkpoints: &checkpoints, exports: Some(&exports), requests: &requests, audit: &audit };
    let opts = Options {
        dry_run: false,
        lookback_days: 31,
        stop_at: now + Duration::hours(1),
        crash_after_pages: crash,
        checkpoint_every: nex_shared::usecases::sweep::CHECKPOINT_EVERY,
    };
    let before = h.requests.get();
    let started = Instant::now();
    let report = sweep.run(now, &FixedClock::at(now), &opts, &()).await.expect("sweep");
    (report, h.requests.get() - before, started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var_os("NEX_STACK_MANIFEST").is_none() {
        eprintln!("sweep bench: NEX_STACK_MANIFEST is not set; run it through infra/bench.sh");
        return;
    }
    let n: usize = std::env::var("NEX_SWEEP_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut h = Harness::new().await;
    // moto answers a query on an index by scanning the whole table in Python (DynamoDB reads only what the
    // key selects): on 100,000 items that takes seconds, past the functions' 3 s attempt timeout.
    let slow = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(std::time::Duration::from_secs(120))
        .operation_timeout(std::time::Duration::from_secs(600))
        .build();
    h.ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&h.sdk).timeout_config(slow).interceptor(h.requests.clone()).build(),
    );
    let now = Utc::now();
    let mut rows = Vec::new();

    let p = h.private().await;
    let t = Instant::now();
    let due = seed(&h, &p, (0..n).collect(), now).await;
    eprintln!("seeded {n} items ({due} due) in {:.1} s", t.elapsed().as_secs_f64());

    // 1. What one full-table scan reads to find the work (the approach the due index replaces).
    let before = h.requests.get();
    let started = Instant::now();
    let mut read = 0u64;
    let mut found = 0u64;
    let mut start = None;
    loop {
        let page = h
            .ddb
            .scan()
            .table_name(p.table(Store::Payments))
            .projection_expression("payment_key, expires_at")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("Scan");
        read += page.scanned_count as u64;
        found += page
            .items()
            .iter()
            .filter(|i| {
                i.get("expires_at")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|e| e <= now.timestamp())
            })
            .count() as u64;
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    rows.push(Row {
        name: "full-table scan (finding only, no deletes)",
        read,
        deleted: found,
        requests: h.requests.get() - before,
        secs: started.elapsed().as_secs_f64(),
    });

    // 2. The sweep's first run (31 days of due buckets).
    let (r, requests, secs) = run(&h, &p, &p.platform, now, None).await;
    rows.push(Row { name: "sweep, one run", read: r.items_read, deleted: r.items_changed, requests, secs });

    // 3. 1,000 new due items in the same table, swept by a run that crashes after 10 pages of deletions
    //    (before their checkpoint) and the run that resumes it (a fresh checkpoint, so both start cold).
    seed(&h, &p, (n..n + due * 100).filter(|i| i % 100 == 0).collect(), now).await;
    let fresh = h.private().await;
    let (a, req_a, secs_a) = run(&h, &p, &fresh.platform, now, Some(10)).await;
    let (b, req_b, secs_b) = run(&h, &p, &fresh.platform, now, None).await;
    assert!(!a.complete && b.complete);
    rows.push(Row {
        name: "sweep, crash after 10 pages + resume",
        read: a.items_read + b.items_read,
        deleted: a.items_changed + b.items_changed,
        requests: req_a + req_b,
        secs: secs_a + secs_b,
    });

    // 4. The next day's run: only today's and yesterday's buckets.
    let (c, req_c, secs_c) = run(&h, &p, &fresh.platform, now + Duration::days(1), None).await;
    rows.push(Row {
        name: "sweep, the next day (nothing new due)",
        read: c.items_read,
        deleted: c.items_changed,
        requests: req_c,
        secs: secs_c,
    });

    println!(
        "\nretention sweep: {n} items in one table, 1% due (moto on loopback; AWS requests counted per attempt)\n"
    );
    println!(
        "| {:<42} | {:>10} | {:>12} | {:>16} | {:>12} | {:>10} |",
        "run", "items read", "items done", "read per done", "AWS requests", "wall time"
    );
    println!("|{:-<44}|{:->12}|{:->14}|{:->18}|{:->14}|{:->12}|", "", "", "", "", "", "");
    for r in rows {
        println!(
            "| {:<42} | {:>10} | {:>12} | {:>16.3} | {:>12} | {:>8.1} s |",
            r.name,
            r.read,
            r.deleted,
            r.read as f64 / r.deleted.max(1) as f64,
            r.requests,
            r.secs
        );
    }
}
