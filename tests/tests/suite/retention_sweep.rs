//! The retention sweep against the emulator, on private copies of the tables (its clock runs ahead, and
//! it deletes whatever is due). Items are written by the suite's own adapters wherever one exists.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use nex_shared::adapters::dynamo_audit::DynamoAudit;
use nex_shared::adapters::dynamo_conversations::DynamoConversations;
use nex_shared::adapters::dynamo_data::{DynamoCheckpoints, DynamoData};
use nex_shared::adapters::dynamo_ledger::DynamoLedger;
use nex_shared::adapters::dynamo_merchants::DynamoMerchants;
use nex_shared::adapters::dynamo_requests::DynamoDataRequests;
use nex_shared::adapters::memory::FixedClock;
use nex_shared::adapters::s3_objects::S3Objects;
use nex_shared::domain::audit;
use nex_shared::domain::data_inventory::Store;
use nex_shared::domain::retention::{self, DataClass};
use nex_shared::domain::whatsapp::delivery::Delivery;
use nex_shared::ports::{
    AuditLog, Checkpoints, ConsentAction, ConsentEntry, ConsentLedger, DataRequest, DataRequests, ObjectStore,
    Receipts, TranscriptMessage, Transcripts,
};
use nex_shared::usecases::sweep::{Options, Sweep};
use nex_tests::*;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The sweep's "now": four days ahead, so exports written now are past their 3-day window.
fn sweep_time() -> DateTime<Utc> {
    Utc::now() + Duration::days(4)
}

async fn put(h: &Harness, table: &str, item: HashMap<String, AttributeValue>) {
    h.ddb.put_item().table_name(table).set_item(Some(item)).send().await.expect("PutItem");
}

/// A payment record as the payments adapter stores it (only the attributes the sweep looks at).
fn payment(key: &str, last_event: DateTime<Utc>) -> HashMap<String, AttributeValue> {
    let st = retention::stamp(DataClass::InvoiceTaxRecord, last_event, key).unwrap();
    HashMap::from([
        ("payment_key".into(), s(key)),
        ("amount".into(), n(1299)),
        ("subject".into(), s("subject-of-the-payer")),
        ("expires_at".into(), n(st.expires_at)),
        ("due_bucket".into(), s(&st.due_bucket)),
        ("due_action".into(), s("delete")),
    ])
}

fn order(merchant: &str, marketplace: &str, id: &str, created: DateTime<Utc>) -> HashMap<String, AttributeValue> {
    let pk = format!("merchant#{merchant}");
    let st = retention::marketplace_order_stamp(marketplace == "amazon", created, &format!("{pk}{id}")).unwrap();
    HashMap::from([
        ("pk".into(), s(&pk)),
        ("sk".into(), s(&format!("order#{marketplace}#{id}"))),
        ("total".into(), n(4200)),
        ("buyer_name".into(), s("Ann Example")),
        ("shipping_address".into(), s("1 Example Street")),
        ("subject".into(), s("subject-of-the-buyer")),
        ("expires_at".into(), n(st.expires_at)),
        ("due_bucket".into(), s(&st.due_bucket)),
        ("due_action".into(), s("anonymise")),
    ])
}

#[tokio::test]
async fn every_class_is_swept_at_its_deadline_and_nothing_before() {
    let h = Harness::new().await;
    let p = h.private().await;
    let t = sweep_time();
    let messaging = p.table(Store::Messaging).to_owned();
    let conversations = DynamoConversations::new(h.ddb.clone(), &messaging);
    let ledger = DynamoLedger::new(h.ddb.clone(), &messaging);
    let message = |wamid: &str, at| TranscriptMessage {
        wamid: wamid.into(),
        direction: "in".into(),
        kind: "text".into(),
        text: Some("where is my order?".into()),
        at,
    };
    // Transcripts: one ended 10 days ago (last message 100 days ago), one still open (80 days).
    conversations.append("m-1", "old-subject", &message("w-old", t - Duration::days(100)), true).await.unwrap();
    conversations.append("m-1", "new-subject", &message("w-new", t - Duration::days(80)), true).await.unwrap();
    conversations
        .apply("m-1", "w-out-old", Some("old-subject"), Delivery::Read, None, t - Duration::days(100))
        .await
        .unwrap();
    // Consent: a withdrawal 24 months and 5 days ago is past its window, one 23 months ago is not.
    let months_ago = |m: u32| t.checked_sub_months(chrono::Months::new(m)).unwrap();
    for (subject, at) in [("gone-subject", months_ago(24) - Duration::days(5)), ("kept-subject", months_ago(23))] {
        ledger
            .record(&ConsentEntry {
                id: format!("stop-{subject}"),
                subject: subject.into(),
                merchant: None,
                action: ConsentAction::OptOut,
                source: "whatsapp_keyword".into(),
                at,
            })
            .await
            .unwrap();
    }
    // Tax records: six years and a day ago is due, five years ago is not.
    let payments = p.table(Store::Payments).to_owned();
    put(&h, &payments, payment("pi_old", t - Duration::days(6 * 366 + 1))).await;
    put(&h, &payments, payment("pi_new", t - Duration::days(5 * 365))).await;
    // Marketplace orders: Amazon anonymised after 30 days, Bol.com after 90.
    let orders = p.table(Store::Orders).to_owned();
    put(&h, &orders, order("live", "amazon", "A-1", t - Duration::days(31))).await;
    put(&h, &orders, order("live", "bol", "B-1", t - Duration::days(31))).await;
    // A merchant whose contract ended yesterday: its order metadata goes, whatever the orders' own dates.
    put(&h, &orders, order("gone", "bol", "B-2", t - Duration::days(1))).await;
    DynamoMerchants::new(h.ddb.clone(), &messaging).mark_terminated("gone", t - Duration::days(1)).await.unwrap();
    // A request record just older than its 24 months.
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    let received = months_ago(24) - Duration::days(2);
    requests
        .open(&DataRequest {
            id: "ancient".into(),
            subjects: vec!["old-subject".into()],
            kind: "access".into(),
            source: "test".into(),
            merchant: None,
            received_at: received,
            answer_by: received + Duration::days(30),
            reply_to: None,
        })
        .await
        .unwrap();
    requests.update("ancient", "completed", Some("{}"), None, received).await.unwrap();
    // An export written now is four days old at the sweep's time: past its three days.
    let exports = S3Objects::new(h.aws.s3(), p.bucket.clone());
    exports.put_private("exports/ancient.json", b"{}".to_vec(), "application/json").await.unwrap();

    let sweep = h.sweep(&p, FixedClock::at(t)).await;
    let report = sweep.run(false, t + Duration::minutes(15), &()).await.unwrap();
    assert!(report.complete);

    // Gone: everything whose deadline passed.
    assert!(h.get(&messaging, &[("pk", "conv#m-1#old-subject"), ("sk", "meta")]).await.is_none());
    assert!(conversations.read("m-1", "old-subject", t).await.unwrap().is_empty());
    let old_msgs = h
        .ddb
        .query()
        .table_name(&messaging)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s("conv#m-1#old-subject"))
        .send()
        .await
        .unwrap();
    assert_eq!(old_msgs.count, 0, "the ended conversation's messages went with it");
    assert!(h.get(&messaging, &[("pk", "wamid#w-out-old"), ("sk", "receipt")]).await.is_none());
    assert!(h.get(&messaging, &[("pk", "subject#gone-subject"), ("sk", "consent-state")]).await.is_none());
    assert!(h.get(&payments, &[("payment_key", "pi_old")]).await.is_none());
    assert!(h.get(&orders, &[("pk", "merchant#gone"), ("sk", "order#bol#B-2")]).await.is_none());
    assert!(h.get(&messaging, &[("pk", "merchant#gone"), ("sk", "contract")]).await.is_none());
    assert!(h.get(p.table(Store::DataRequests), &[("pk", "dsr#ancient"), ("sk", "request")]).await.is_none());
    assert!(exports.list("exports/").await.unwrap().is_empty());
    // Anonymised, not deleted: the Amazon order keeps its amount, loses its buyer and its deadline.
    let amazon = h.get(&orders, &[("pk", "merchant#live"), ("sk", "order#amazon#A-1")]).await.unwrap();
    assert_eq!(amazon.get("total"), Some(&n(4200)));
    for gone in ["buyer_name", "shipping_address", "subject", "expires_at", "due_bucket"] {
        assert!(!amazon.contains_key(gone), "{gone} left on an anonymised order");
    }
    // Kept: everything not yet due.
    assert_eq!(conversations.read("m-1", "new-subject", t).await.unwrap().len(), 1);
    assert!(h.get(&messaging, &[("pk", "subject#kept-subject"), ("sk", "consent-state")]).await.is_some());
    assert!(h.get(&payments, &[("payment_key", "pi_new")]).await.is_some());
    let bol = h.get(&orders, &[("pk", "merchant#live"), ("sk", "order#bol#B-1")]).await.unwrap();
    assert!(bol.contains_key("buyer_name"), "Bol.com orders keep their buyer for 90 days");

    assert_eq!(report.actions["whats_app_transcript"]["delete"], 3, "{:?}", report.actions);
    assert_eq!(report.actions["amazon_order_data"]["anonymise"], 1);
    assert_eq!(report.actions["whats_app_order_metadata"]["delete"], 2);
    assert_eq!(report.actions["data_export"]["delete"], 1);
    assert!(report.oldest_overdue_seconds.unwrap() > 24 * 3600, "the tax record was days overdue");

    // Idempotent: a second run finds nothing to do.
    let again = sweep.run(false, t + Duration::minutes(15), &()).await.unwrap();
    assert_eq!((again.items_changed, again.exports_deleted), (0, 0));

    // Both runs are in the audit log, chained.
    let log = DynamoAudit::new(h.ddb.clone(), p.table(Store::DataRequests));
    let entries = log.entries(0, 100).await.unwrap();
    let head = log.head().await.unwrap();
    assert!(audit::verify(&entries, head.as_ref().map(|(n, h)| (*n, h.as_str()))).ok());
    assert_eq!(entries.iter().filter(|e| e.action == "sweep.run").count(), 2);
}

/// Seeds `n` payments due on `n` different days before `t`.
async fn due_payments(h: &Harness, p: &Private, n: usize, t: DateTime<Utc>) -> Vec<String> {
    let table = p.table(Store::Payments).to_owned();
    let mut keys = Vec::new();
    for i in 0..n {
        let key = format!("pi_due_{i}");
        put(h, &table, payment(&key, t - Duration::days(6 * 366) - Duration::days(i as i64 % 20) - Duration::hours(1)))
            .await;
        keys.push(key);
    }
    put(h, &table, payment("pi_not_due", t - Duration::days(30))).await;
    keys
}

#[tokio::test]
async fn a_sweep_that_crashes_midway_resumes_where_it_stopped_and_deletes_nothing_early() {
    let h = Harness::new().await;
    let p = h.private().await;
    let t = sweep_time();
    let keys = due_payments(&h, &p, 30, t).await;
    let data = DynamoData::new(h.ddb.clone(), p.tables.clone());
    let checkpoints = DynamoCheckpoints::new(h.ddb.clone(), &p.platform);
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    let log = DynamoAudit::new(h.ddb.clone(), p.table(Store::DataRequests));
    let sweep =
        Sweep { data: &data, checkpoints: &checkpoints, exports: None::<&S3Objects>, requests: &requests, audit: &log };
    let opts = |crash| Options {
        dry_run: false,
        lookback_days: 35,
        stop_at: t + Duration::hours(1),
        crash_after_pages: crash,
        checkpoint_every: 1,
    };
    let clock = FixedClock::at(t);
    // Crash after the third page of deletions, before its position is saved.
    let crashed = sweep.run(t, &clock, &opts(Some(3)), &()).await.unwrap();
    assert!(!crashed.complete);
    let table = p.table(Store::Payments).to_owned();
    let mut left = 0;
    for k in &keys {
        left += usize::from(h.get(&table, &[("payment_key", k)]).await.is_some());
    }
    assert!(left > 0 && left < keys.len(), "the crash left work: {left} of {}", keys.len());
    let saved = checkpoints.load(nex_shared::usecases::sweep::CHECKPOINT).await.unwrap().unwrap();
    assert!(saved.contains("cursor"), "the position of the last saved page: {saved}");

    let resumed = sweep.run(t, &clock, &opts(None), &()).await.unwrap();
    assert!(resumed.complete);
    for k in &keys {
        assert!(h.get(&table, &[("payment_key", k)]).await.is_none(), "{k} left after the resume");
    }
    assert!(h.get(&table, &[("payment_key", "pi_not_due")]).await.is_some());
    assert_eq!(
        crashed.items_changed + resumed.items_changed,
        keys.len() as u64,
        "each item deleted once across the crash"
    );
    // Read per deleted: only due items are ever read.
    assert_eq!(crashed.items_read + resumed.items_read, keys.len() as u64);
}

#[tokio::test]
async fn a_run_that_reaches_its_time_limit_queues_its_own_continuation() {
    let h = Harness::new().await;
    let p = h.private().await;
    let t = sweep_time();
    let keys = due_payments(&h, &p, 5, t).await;
    let sweep = h.sweep(&p, FixedClock::at(t)).await;
    // A deadline already inside the safety margin: the run saves its position at once and hands over.
    let first = sweep.run(false, t + Duration::seconds(5), &()).await.unwrap();
    assert!(!first.complete);
    assert_eq!(first.items_changed, 0);
    assert_eq!(h.depth(&p.sweep_queue).await, 1, "a continuation is queued");

    // Its delivery runs the sweep on from the checkpoint, with a normal time limit.
    let arn = "arn:aws:sqs:us-east-1:123456789012:sweep";
    let round = h
        .drain_queue(&p.sweep_queue, arn, 30, |event| async {
            let invocation = nex_shared::function::Invocation::new("continue", t + Duration::minutes(15));
            sweep.continued(event, &invocation).await
        })
        .await;
    assert_eq!((round.received, round.failed), (1, 0));
    let table = p.table(Store::Payments).to_owned();
    for k in &keys {
        assert!(h.get(&table, &[("payment_key", k)]).await.is_none());
    }
    assert_eq!(h.depth(&p.sweep_queue).await, 0);
}

#[tokio::test]
async fn a_dry_run_reports_the_work_and_changes_nothing() {
    let h = Harness::new().await;
    let p = h.private().await;
    let t = sweep_time();
    let keys = due_payments(&h, &p, 4, t).await;
    let sweep = h.sweep(&p, FixedClock::at(t)).await;
    let dry = sweep.run(true, t + Duration::minutes(15), &()).await.unwrap();
    assert_eq!(dry.actions["invoice_tax_record"]["delete"], 4);
    let table = p.table(Store::Payments).to_owned();
    for k in &keys {
        assert!(h.get(&table, &[("payment_key", k)]).await.is_some());
    }
    let cp = DynamoCheckpoints::new(h.ddb.clone(), &p.platform);
    assert!(cp.load(nex_shared::usecases::sweep::CHECKPOINT).await.unwrap().is_none());
    let log = DynamoAudit::new(h.ddb.clone(), p.table(Store::DataRequests));
    assert_eq!(log.entries(0, 10).await.unwrap()[0].action, "sweep.dry_run");
}
