//! Data-subject requests against the emulator: erasure of a person present in every table, the merchant
//! routes, the audit chain under tampering, and the operator CLI's dead-letter redrive.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use nex_shared::adapters::dynamo_audit::DynamoAudit;
use nex_shared::adapters::dynamo_conversations::DynamoConversations;
use nex_shared::adapters::dynamo_ledger::DynamoLedger;
use nex_shared::adapters::dynamo_requests::DynamoDataRequests;
use nex_shared::adapters::s3_objects::S3Objects;
use nex_shared::adapters::sqs_queue::SqsQueue;
use nex_shared::domain::audit::{self, NewEntry};
use nex_shared::domain::data_inventory::Store;
use nex_shared::domain::retention::{self, DataClass};
use nex_shared::domain::subject::{IdentifierKind, SubjectHasher};
use nex_shared::domain::whatsapp::delivery::Delivery;
use nex_shared::ports::{
    AuditLog, ConsentAction, ConsentEntry, ConsentLedger, DataRequests, ObjectStore, Receipts, SystemClock,
    TranscriptMessage, Transcripts,
};
use nex_shared::usecases::data_requests::{self, Intake, Origin, Outcome};
use nex_tests::*;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn hasher() -> SubjectHasher {
    SubjectHasher::new(&secrecy::SecretString::from(PEPPER.to_owned()))
}

fn phone() -> String {
    format!("+3165{}", &uuid::Uuid::new_v4().as_u128().to_string()[..7])
}

/// Opens a request for `phone` through the shared intake, queued on this test's queue.
async fn open(h: &Harness, p: &Private, kind: &str, phone: &str, id: &str) -> String {
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    let queue = SqsQueue::new(h.sqs.clone(), h.data_requests_url.clone());
    let intake = Intake { kind: kind.into(), phone: Some(phone.into()), ..Intake::default() };
    let origin = Origin { id: id.into(), source: "operator".into(), merchant: None };
    data_requests::open(&requests, &queue, &hasher(), &intake, origin, Utc::now()).await.unwrap().request.id
}

#[tokio::test]
async fn erasure_removes_the_person_everywhere_except_what_the_law_keeps_and_a_rerun_changes_nothing() {
    let h = Harness::new().await;
    let p = h.private().await;
    let now = Utc::now();
    let phone = phone();
    let subject = hasher().hash(IdentifierKind::Phone, &phone).unwrap();
    let messaging = p.table(Store::Messaging).to_owned();

    // The person in every table, written by the suite's own adapters where one exists.
    let conversations = DynamoConversations::new(h.ddb.clone(), &messaging);
    let msg = TranscriptMessage {
        wamid: "w-1".into(),
        direction: "in".into(),
        kind: "text".into(),
        text: Some("my address is 1 Example Street".into()),
        at: now - Duration::days(2),
    };
    conversations.append("m-1", &subject, &msg, true).await.unwrap();
    conversations
        .apply("m-1", "w-out-1", Some(&subject), Delivery::Delivered, None, now - Duration::days(1))
        .await
        .unwrap();
    let ledger = DynamoLedger::new(h.ddb.clone(), &messaging);
    for (id, action) in [("in-1", ConsentAction::OptIn), ("stop-1", ConsentAction::OptOut)] {
        ledger
            .record(&ConsentEntry {
                id: id.into(),
                subject: subject.clone(),
                merchant: Some("m-1".into()),
                action,
                source: "test".into(),
                at: now - Duration::days(1),
            })
            .await
            .unwrap();
    }
    let st = retention::stamp(DataClass::InvoiceTaxRecord, now, "pi_erase").unwrap();
    h.ddb
        .put_item()
        .table_name(p.table(Store::Payments))
        .item("payment_key", s("pi_erase"))
        .item("amount", n(2500))
        .item("currency", s("eur"))
        .item("order_ref", s("INV-2026-001"))
        .item("subject", s(&subject))
        .item("card", AttributeValue::M(HashMap::from([("last4".into(), s("4242"))])))
        .item("expires_at", n(st.expires_at))
        .item("due_bucket", s(&st.due_bucket))
        .item("due_action", s("delete"))
        .send()
        .await
        .unwrap();
    h.ddb
        .put_item()
        .table_name(p.table(Store::Orders))
        .item("pk", s("merchant#m-1"))
        .item("sk", s("order#bol#B-9"))
        .item("total", n(2500))
        .item("buyer_name", s("Ann Example"))
        .item("buyer_phone", s(&phone))
        .item("subject", s(&subject))
        .send()
        .await
        .unwrap();
    // An earlier access request, answered with an export in S3.
    let worker = h.dsr_worker(&p, SystemClock).await;
    let earlier = open(&h, &p, "access", &phone, "op-earlier").await;
    let outcome = worker.processor("test").process(&earlier, now, false).await.unwrap();
    let Outcome::Exported { key, items } = outcome else { panic!("{outcome:?}") };
    assert_eq!(
        items, 8,
        "conversation, message, receipt, 2 consent entries, consent state, payment, order (not the request's own record)"
    );
    let exports = S3Objects::new(h.aws.s3(), p.bucket.clone());
    assert_eq!(exports.list(&key).await.unwrap().len(), 1);

    // The erasure, through the queue as in production.
    let erase = open(&h, &p, "deletion", &phone, "op-erase").await;
    let round = h.drain_requests(&worker).await;
    assert_eq!(round.failed, 0);
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    let done = requests.get(&erase).await.unwrap().unwrap();
    assert_eq!(done.status, "completed");
    let result: data_requests::ErasureResult = serde_json::from_str(done.result.as_deref().unwrap()).unwrap();
    assert_eq!(result.deleted.get("conversation"), Some(&1), "{result:?}");
    assert_eq!(result.deleted.get("message"), Some(&1));
    assert_eq!(result.deleted.get("receipt"), Some(&1));
    assert_eq!(result.anonymised.get("payment"), Some(&1));
    assert_eq!(result.anonymised.get("marketplace_order"), Some(&1));
    assert_eq!(result.retained["consent_entry"].count, 2);
    assert!(result.retained["consent_entry"].why.contains("24 months"));
    assert_eq!(result.retained["data_request"].count, 2);
    assert_eq!(result.exports_deleted, 1);

    // Afterwards: the transcript is gone, the tax record and the order keep their numbers without the
    // person, the export is gone, and a new export finds only what is retained on purpose.
    assert!(conversations.read("m-1", &subject, Utc::now()).await.unwrap().is_empty());
    assert!(h.get(&messaging, &[("pk", "wamid#w-out-1"), ("sk", "receipt")]).await.is_none());
    let pay = h.get(p.table(Store::Payments), &[("payment_key", "pi_erase")]).await.unwrap();
    assert_eq!((pay.get("amount"), pay.get("order_ref")), (Some(&n(2500)), Some(&s("INV-2026-001"))));
    assert!(!pay.contains_key("subject") && !pay.contains_key("card"));
    assert!(pay.contains_key("expires_at"), "the tax record keeps its 6-year deadline");
    let order = h.get(p.table(Store::Orders), &[("pk", "merchant#m-1"), ("sk", "order#bol#B-9")]).await.unwrap();
    assert!(!order.contains_key("buyer_name") && !order.contains_key("buyer_phone") && !order.contains_key("subject"));
    assert!(exports.list(&key).await.unwrap().is_empty());
    // Running the erasure again changes nothing.
    let Outcome::Erased(again) = worker.processor("test").process(&erase, Utc::now(), true).await.unwrap() else {
        panic!("an erasure")
    };
    assert!(again.changed_nothing(), "{again:?}");

    let check = open(&h, &p, "access", &phone, "op-check").await;
    worker.processor("test").process(&check, Utc::now(), false).await.unwrap();
    let export: serde_json::Value = {
        let out = h.s3().get_object().bucket(&p.bucket).key(format!("exports/{check}.json")).send().await.unwrap();
        serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
    };
    assert_eq!(export["schema"], "nex.subject-export/1");
    let kinds: std::collections::BTreeSet<&str> =
        export["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["consent_entry", "consent_state", "data_request"].into_iter().collect());

    // Every request is in the audit log, by subject hash only, and the chain holds.
    let log = DynamoAudit::new(h.ddb.clone(), p.table(Store::DataRequests));
    let entries = log.entries(0, 100).await.unwrap();
    assert!(entries.iter().any(|e| e.action == "dsr.deletion" && e.subject.as_deref() == Some(subject.as_str())));
    let text = format!("{entries:?}");
    assert!(!text.contains(&phone) && !text.contains("Ann Example") && !text.contains("Example Street"));
    let head = log.head().await.unwrap();
    assert!(audit::verify(&entries, head.as_ref().map(|(n, h)| (*n, h.as_str()))).ok());
}

fn api(method: &str, path: &str, body: &str, key: Option<&str>) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(k) = key {
        headers.push(("authorization".to_owned(), format!("Bearer {k}")));
    }
    nex_local::events::http_v2(method, path, "", &headers, body.as_bytes(), "req-dsr")
}

#[tokio::test]
async fn a_merchants_support_team_opens_a_request_and_downloads_the_export_through_a_short_lived_link() {
    let h = Harness::new().await;
    let mut app = h.merchant_api().await;
    app.requests_queue = SqsQueue::new(h.sqs.clone(), h.data_requests_url.clone());
    let phone = phone();
    let body = serde_json::json!({ "kind": "export", "phone": phone, "reference": uuid::Uuid::new_v4().to_string() })
        .to_string();

    assert_eq!(app.handle(api("POST", "/data-requests", &body, None), "r").await.status_code, 401);
    let bad = serde_json::json!({ "kind": "everything", "phone": phone }).to_string();
    let resp = app.handle(api("POST", "/data-requests", &bad, Some(MERCHANT_KEY)), "r").await;
    assert_eq!((resp.status_code, body_json(&resp)["reason"].as_str()), (422, Some("unknown_kind")));
    let none = serde_json::json!({ "kind": "export" }).to_string();
    let resp = app.handle(api("POST", "/data-requests", &none, Some(MERCHANT_KEY)), "r").await;
    assert_eq!((resp.status_code, body_json(&resp)["reason"].as_str()), (422, Some("no_identifier")));

    let resp = app.handle(api("POST", "/data-requests", &body, Some(MERCHANT_KEY)), "r").await;
    assert_eq!(resp.status_code, 202);
    let id = body_json(&resp)["id"].as_str().unwrap().to_owned();
    // The same ticket reference again: the same request, not a second one.
    let again = app.handle(api("POST", "/data-requests", &body, Some(MERCHANT_KEY)), "r").await;
    assert_eq!(
        (body_json(&again)["id"].as_str(), body_json(&again)["status"].as_str()),
        (Some(id.as_str()), Some("already_open"))
    );

    let round = h.drain_requests(&h.stack_dsr_worker().await).await;
    assert_eq!(round.failed, 0);
    let resp = app.handle(api("GET", &format!("/data-requests/{id}"), "", Some(MERCHANT_KEY)), "r").await;
    assert_eq!(resp.status_code, 200);
    let shown = body_json(&resp);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["export_url_valid_seconds"], 900);
    let url = shown["export_url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Expires=900"), "a presigned, expiring link");
    let export: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(export["schema"], "nex.subject-export/1");
    assert_eq!(export["request_id"], id.as_str());
    assert!(!logs().contains(&phone), "no phone number in the logs");

    // Unknown requests, and requests not opened by this merchant, are not there.
    let resp = app.handle(api("GET", "/data-requests/nope", "", Some(MERCHANT_KEY)), "r").await;
    assert_eq!(resp.status_code, 404);
    assert_eq!(app.handle(api("DELETE", "/data-requests", "", Some(MERCHANT_KEY)), "r").await.status_code, 405);
}

#[tokio::test]
async fn the_audit_chain_from_two_writers_verifies_until_an_entry_is_edited_behind_its_back() {
    let h = Harness::new().await;
    let p = h.private().await;
    let log = DynamoAudit::new(h.ddb.clone(), p.table(Store::DataRequests));
    // Two writers (as two functions would be), taking turns. Not at the same instant: moto applies a
    // transaction item by item and, when one fails, restores a copy of the whole table taken before it,
    // which can undo another request's write made meanwhile. DynamoDB's transactions are serializable,
    // and the head's condition is what keeps concurrent writers on one chain there.
    let other = DynamoAudit::new(h.ddb.clone(), p.table(Store::DataRequests));
    for i in 0..6 {
        let writer = if i % 2 == 0 { &log } else { &other };
        let detail = serde_json::json!({ "n": i });
        writer.append(NewEntry::new("test", "test.write", None, &detail), Utc::now()).await.unwrap();
    }
    // A keyed entry is appended once, however often it is written.
    for _ in 0..2 {
        let detail = serde_json::json!({ "event": "evt_1" });
        let keyed = NewEntry::new("test", "test.keyed", None, &detail).keyed("evt_1");
        other.append(keyed, Utc::now()).await.unwrap();
    }
    let entries = log.entries(0, 100).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    let head = log.head().await.unwrap().unwrap();
    assert!(audit::verify(&entries, Some((head.0, head.1.as_str()))).ok());

    h.ddb
        .update_item()
        .table_name(p.table(Store::DataRequests))
        .key("pk", s("audit"))
        .key("sk", s("000000000003"))
        .update_expression("SET detail = :d")
        .expression_attribute_values(":d", s(r#"{"n":99}"#))
        .send()
        .await
        .unwrap();
    let entries = log.entries(0, 100).await.unwrap();
    assert_eq!(
        audit::verify(&entries, Some((head.0, head.1.as_str()))).broken,
        Some((3, "content does not match its hash"))
    );
}

#[tokio::test]
async fn an_operator_inspects_and_redrives_a_dead_letter_queue_and_the_redrive_is_audited() {
    let h = Harness::new().await;
    let p = h.private().await;
    let poison = serde_json::json!({ "type": "payment.event", "version": 9, "id": "evt_1", "payload": { "email": "a@b.example" } })
        .to_string();
    h.send(&h.dlq_url, &poison).await;

    let mut vars: std::collections::BTreeMap<String, String> = p.env().into_iter().collect();
    vars.insert("DATA_REQUESTS_QUEUE_URL".into(), h.data_requests_url.clone());
    let stack =
        nexctl::Stack { vars, queues: [("PaymentEventsQueue".to_owned(), h.queue_url.clone())].into_iter().collect() };
    let ops = nexctl::Ops::new(stack, h.sdk.clone()).await.unwrap();
    let dlqs = ops.dead_letter_queues().await.unwrap();
    assert_eq!((dlqs.len(), dlqs[0].depth), (1, 1));
    let seen = ops.inspect_dlq("PaymentEventsQueue", 10, false).await.unwrap();
    assert_eq!(
        (seen[0].kind.as_deref(), seen[0].version, seen[0].body.as_ref()),
        (Some("payment.event"), Some(9), None)
    );
    assert_eq!(h.depth(&h.dlq_url).await, 1, "looking is not taking");

    assert_eq!(ops.redrive("PaymentEventsQueue", None).await.unwrap(), 1);
    assert_eq!(h.depth(&h.dlq_url).await, 0);
    assert_eq!(h.take(&h.queue_url).await, vec![poison]);
    let entries = ops.audit_entries(0, 10).await.unwrap();
    assert_eq!(entries.last().unwrap().action, "dlq.redrive");
    assert!(ops.verify_audit().await.unwrap().ok());
    assert!(matches!(ops.inspect_dlq("NoSuchQueue", 1, false).await, Err(nexctl::OpsError::NotFound(_))));
}

#[tokio::test]
async fn consent_changes_reach_the_audit_log_once_each_by_subject_hash() {
    let h = Harness::new().await;
    let phone = phone();
    let subject = hasher().hash(IdentifierKind::Phone, &phone).unwrap();
    let ledger = DynamoLedger::new(h.ddb.clone(), table("MessagingTable"));
    let stop = ConsentEntry {
        id: format!("wamid.stop{}", uuid::Uuid::new_v4().simple()),
        subject: subject.clone(),
        merchant: None,
        action: ConsentAction::OptOut,
        source: "keyword:merchant-demo-1".into(),
        at: Utc::now(),
    };
    let resume = ConsentEntry {
        id: format!("pref#pn-1#{}#resume", Utc::now().timestamp()),
        subject: subject.clone(),
        merchant: Some("merchant-demo-1".into()),
        action: ConsentAction::MetaResume,
        source: "meta_user_preferences".into(),
        at: Utc::now(),
    };
    // Each recorded twice, as redeliveries do; audited by the appender from the ledger's stream, twice.
    for e in [&stop, &resume, &stop, &resume] {
        ledger.record(e).await.unwrap();
    }
    // And a burst of 30 more (several chain steps in one batch).
    let burst: Vec<ConsentEntry> = (0..30)
        .map(|i| ConsentEntry {
            id: format!("optin#m-burst#{i}"),
            subject: subject.clone(),
            merchant: Some("m-burst".into()),
            action: ConsentAction::OptIn,
            source: "checkout_page".into(),
            at: Utc::now(),
        })
        .collect();
    for e in &burst {
        ledger.record(e).await.unwrap();
    }
    // The appender reads back a batch naming some entries twice (redeliveries): still one read each.
    let refs: Vec<nex_shared::usecases::consent_audit::LedgerRef> = burst
        .iter()
        .chain(burst.iter())
        .map(|e| nex_shared::usecases::consent_audit::LedgerRef {
            pk: format!("subject#{}", e.subject),
            sk: format!("consent#{}", e.id),
        })
        .collect();
    assert_eq!(nex_shared::ports::LedgerReader::read(&ledger, &refs).await.unwrap().len(), 30);
    for _ in 0..2 {
        assert_eq!(h.audit_ledger().await.failed, 0);
    }

    let log = DynamoAudit::new(h.ddb.clone(), table("DataRequestsTable"));
    let mut mine = Vec::new();
    let mut after = 0;
    loop {
        let page = log.entries(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        mine.extend(page.into_iter().filter(|e| e.subject.as_deref() == Some(subject.as_str())));
    }
    let mut actions: Vec<&str> = mine.iter().map(|e| e.action.as_str()).filter(|a| *a != "consent.opt_in").collect();
    actions.sort_unstable();
    assert_eq!(actions, ["consent.meta_resume", "consent.opt_out"], "once each");
    assert_eq!(mine.iter().filter(|e| e.action == "consent.opt_in").count(), 30, "the burst, once each");
    assert!(!format!("{mine:?}").contains(&phone));
    let entries = log.entries(0, 100_000).await.unwrap();
    let head = log.head().await.unwrap();
    assert!(audit::verify(&entries, head.as_ref().map(|(n, h)| (*n, h.as_str()))).ok());
}

/// Two merchants, one person known to both: everything the suite holds about the person, for each.
async fn seed_person_known_to_two_merchants(h: &Harness, p: &Private, subject: &str) {
    let now = Utc::now();
    let messaging = p.table(Store::Messaging).to_owned();
    let conversations = DynamoConversations::new(h.ddb.clone(), &messaging);
    let ledger = DynamoLedger::new(h.ddb.clone(), &messaging);
    for m in ["m-a", "m-b"] {
        let msg = TranscriptMessage {
            wamid: format!("w-{m}"),
            direction: "in".into(),
            kind: "text".into(),
            text: Some(format!("secret told to {m}")),
            at: now - Duration::days(2),
        };
        conversations.append(m, subject, &msg, true).await.unwrap();
        conversations
            .apply(m, &format!("w-out-{m}"), Some(subject), Delivery::Read, None, now - Duration::days(1))
            .await
            .unwrap();
        ledger
            .record(&ConsentEntry {
                id: format!("in-{m}"),
                subject: subject.to_owned(),
                merchant: Some(m.into()),
                action: ConsentAction::OptIn,
                source: "checkout_page".into(),
                at: now - Duration::days(3),
            })
            .await
            .unwrap();
    }
    // Payment records: one per merchant, and one whose merchant is unknown.
    for (key, merchant) in [("pi_a", Some("m-a")), ("pi_b", Some("m-b")), ("pi_unknown", None)] {
        let st = retention::stamp(DataClass::InvoiceTaxRecord, now, key).unwrap();
        let mut put = h
            .ddb
            .put_item()
            .table_name(p.table(Store::Payments))
            .item("payment_key", s(key))
            .item("amount", n(1000))
            .item("subject", s(subject))
            .item("expires_at", n(st.expires_at))
            .item("due_bucket", s(&st.due_bucket))
            .item("due_action", s("delete"));
        if let Some(m) = merchant {
            put = put.item("merchant", s(m));
        }
        put.send().await.unwrap();
    }
}

/// Opens a request as the merchant API does (merchant `m`'s key) and runs it.
async fn merchant_request(h: &Harness, p: &Private, m: &str, kind: &str, phone: &str) -> (String, Outcome) {
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    let queue = SqsQueue::new(h.sqs.clone(), h.data_requests_url.clone());
    let intake = Intake { kind: kind.into(), phone: Some(phone.into()), ..Intake::default() };
    let origin = Origin {
        id: data_requests::request_id("api", m, Some(&uuid::Uuid::new_v4().to_string())),
        source: nex_shared::ports::SOURCE_MERCHANT_API.into(),
        merchant: Some(m.into()),
    };
    let id = data_requests::open(&requests, &queue, &hasher(), &intake, origin, Utc::now()).await.unwrap().request.id;
    let outcome = h.dsr_worker(p, SystemClock).await.processor("test").process(&id, Utc::now(), false).await.unwrap();
    (id, outcome)
}

async fn export_of(h: &Harness, p: &Private, key: &str) -> serde_json::Value {
    let out = h.s3().get_object().bucket(&p.bucket).key(key).send().await.unwrap();
    serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
}

/// Merchant `m`'s export about `phone`: its item count and the document.
async fn merchant_export(h: &Harness, p: &Private, m: &str, phone: &str) -> (u64, serde_json::Value) {
    let (_, outcome) = merchant_request(h, p, m, "export", phone).await;
    let Outcome::Exported { key, items } = outcome else { panic!("{outcome:?}") };
    (items, export_of(h, p, &key).await)
}

#[tokio::test]
async fn a_merchants_export_and_erasure_cover_only_that_merchants_items() {
    let h = Harness::new().await;
    let p = h.private().await;
    let phone = phone();
    let subject = hasher().hash(IdentifierKind::Phone, &phone).unwrap();
    seed_person_known_to_two_merchants(&h, &p, &subject).await;

    let (items, export) = merchant_export(&h, &p, "m-a", &phone).await;
    let text = export.to_string();
    assert!(!text.contains("m-b") && !text.contains("pi_b") && !text.contains("pi_unknown"), "{text}");
    for item in export["items"].as_array().unwrap() {
        assert_eq!(item["attributes"]["merchant"], "m-a", "{item}");
    }
    assert_eq!(
        items, 5,
        "A's conversation, message, receipt, opt-in and payment; nothing of B's, nothing of unknown merchant"
    );

    let (id, outcome) = merchant_request(&h, &p, "m-a", "deletion", &phone).await;
    let Outcome::Erased(result) = outcome else { panic!("{outcome:?}") };
    assert_eq!(result.deleted.values().sum::<u64>(), 3, "{result:?}");
    assert_eq!(result.anonymised.get("payment"), Some(&1));
    // B's items are untouched, and the result (shown to A) does not mention them.
    let conversations = DynamoConversations::new(h.ddb.clone(), p.table(Store::Messaging));
    assert!(conversations.read("m-a", &subject, Utc::now()).await.unwrap().is_empty());
    assert_eq!(conversations.read("m-b", &subject, Utc::now()).await.unwrap().len(), 1);
    let pay_b = h.get(p.table(Store::Payments), &[("payment_key", "pi_b")]).await.unwrap();
    assert_eq!(pay_b.get("subject"), Some(&s(&subject)));
    let unknown = h.get(p.table(Store::Payments), &[("payment_key", "pi_unknown")]).await.unwrap();
    assert_eq!(unknown.get("subject"), Some(&s(&subject)));
    assert!(h.get(p.table(Store::Messaging), &[("pk", "wamid#w-out-m-b"), ("sk", "receipt")]).await.is_some());
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    let shown = requests.get(&id).await.unwrap().unwrap().result.unwrap();
    assert!(!shown.contains("m-b"), "{shown}");
    assert_eq!(result.retained.get("data_request").map(|r| r.count), Some(2), "A's two requests only");
}

#[tokio::test]
async fn a_merchant_asking_about_a_person_it_has_never_seen_gets_an_empty_export() {
    let h = Harness::new().await;
    let p = h.private().await;
    let phone = phone();
    let subject = hasher().hash(IdentifierKind::Phone, &phone).unwrap();
    seed_person_known_to_two_merchants(&h, &p, &subject).await;

    let (items, export) = merchant_export(&h, &p, "m-c", &phone).await;
    assert_eq!(items, 0);
    assert_eq!(export["items"], serde_json::json!([]));
    assert!(!export.to_string().contains("m-a") && !export.to_string().contains("m-b"));
}

#[tokio::test]
async fn a_persons_own_data_request_covers_every_merchant_and_is_answered_to_their_number() {
    let h = Harness::new().await;
    let p = h.private().await;
    let phone = phone();
    let subject = hasher().hash(IdentifierKind::Phone, &phone).unwrap();
    seed_person_known_to_two_merchants(&h, &p, &subject).await;

    // As the messaging worker opens it from `DATA`: the person's own request, with where to answer.
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    let now = Utc::now();
    let request = nex_shared::ports::DataRequest {
        id: format!("wa-{}", uuid::Uuid::new_v4().simple()),
        subjects: vec![subject.clone()],
        kind: "unspecified".into(),
        source: nex_shared::ports::SOURCE_PERSON.into(),
        merchant: None,
        received_at: now,
        answer_by: now + Duration::days(30),
        reply_to: Some(nex_shared::ports::ReplyTo {
            merchant: "m-b".into(),
            phone_number_id: "pn-b".into(),
            to: phone.clone(),
        }),
    };
    assert!(requests.open(&request).await.unwrap());
    let queue = SqsQueue::new(h.sqs.clone(), h.data_requests_url.clone());
    nex_shared::ports::Queue::send(
        &queue,
        &nex_shared::domain::envelope::Envelope::new(request.id.clone(), now, "t".into(), request.clone()).encode(),
    )
    .await
    .unwrap();
    let worker = h.dsr_worker(&p, SystemClock).await;
    // Delivered twice (a redelivery): answered once.
    for _ in 0..2 {
        let round = h.drain_requests(&worker).await;
        assert_eq!(round.failed, 0);
        nex_shared::ports::Queue::send(
            &queue,
            &nex_shared::domain::envelope::Envelope::new(request.id.clone(), now, "t".into(), request.clone()).encode(),
        )
        .await
        .unwrap();
    }
    let rec = requests.get(&request.id).await.unwrap().unwrap();
    assert_eq!(rec.status, "completed");
    assert!(rec.answered_at.is_some(), "the answer's hand-off is recorded");
    let export = export_of(&h, &p, rec.export_key.as_deref().unwrap()).await;
    let merchants: std::collections::BTreeSet<&str> =
        export["items"].as_array().unwrap().iter().filter_map(|i| i["attributes"]["merchant"].as_str()).collect();
    assert!(merchants.contains("m-a") && merchants.contains("m-b"), "{merchants:?}");
    assert!(export.to_string().contains("pi_unknown"), "the person's own request sees every record about them");

    let sent = h.take(&h.notifications_url).await;
    let answers: Vec<serde_json::Value> = sent
        .iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap())
        .filter(|v| v["id"] == format!("dsr-answer-{}", request.id))
        .collect();
    assert_eq!(answers.len(), 1, "one answer however often the request is delivered");
    let answer = &answers[0]["payload"];
    assert_eq!(answer["to"], phone.as_str());
    assert_eq!(answer["phone_number_id"], "pn-b");
    let body = answer["content"]["body"].as_str().unwrap();
    assert!(body.contains("X-Amz-Expires=86400"), "an expiring link: {body}");
    assert_eq!(answer["private"], true, "the link is sent, never kept in the merchant's transcript");
}

#[tokio::test]
async fn a_merchant_cannot_read_a_persons_own_request_even_one_that_names_it() {
    let h = Harness::new().await;
    let app = h.merchant_api().await;
    let requests = DynamoDataRequests::new(h.ddb.clone(), table("DataRequestsTable"));
    let now = Utc::now();
    for (source, label) in
        [(nex_shared::ports::SOURCE_PERSON, "the person's own"), (nex_shared::ports::SOURCE_OPERATOR, "an operator's")]
    {
        let id = format!("t-{}", uuid::Uuid::new_v4().simple());
        let request = nex_shared::ports::DataRequest {
            id: id.clone(),
            subjects: vec!["s".into()],
            kind: "export".into(),
            source: source.into(),
            merchant: Some("merchant-demo-1".into()),
            received_at: now,
            answer_by: now + Duration::days(30),
            reply_to: None,
        };
        assert!(requests.open(&request).await.unwrap());
        let resp = app.handle(api("GET", &format!("/data-requests/{id}"), "", Some(MERCHANT_KEY)), "r").await;
        assert_eq!(resp.status_code, 404, "{label}");
    }
}

#[tokio::test]
async fn a_reused_reference_for_another_kind_or_person_is_a_conflict_and_identifiers_are_checked_first() {
    let h = Harness::new().await;
    let mut app = h.merchant_api().await;
    app.requests_queue = SqsQueue::new(h.sqs.clone(), h.data_requests_url.clone());
    let reference = format!("T-{}", uuid::Uuid::new_v4().simple());
    let (p1, p2) = (phone(), phone());
    let ask = |kind: &str, phone: &str| {
        serde_json::json!({ "kind": kind, "phone": phone, "reference": reference }).to_string()
    };
    let first = app.handle(api("POST", "/data-requests", &ask("export", &p1), Some(MERCHANT_KEY)), "r").await;
    assert_eq!(first.status_code, 202);
    let same = app.handle(api("POST", "/data-requests", &ask("export", &p1), Some(MERCHANT_KEY)), "r").await;
    assert_eq!((same.status_code, body_json(&same)["status"].as_str()), (202, Some("already_open")));
    for (body, what) in [(ask("deletion", &p1), "another kind"), (ask("export", &p2), "another person")] {
        let resp = app.handle(api("POST", "/data-requests", &body, Some(MERCHANT_KEY)), "r").await;
        assert_eq!((resp.status_code, body_json(&resp)["reason"].as_str()), (409, Some("reference_reused")), "{what}");
    }
    for (body, reason) in [
        (serde_json::json!({ "kind": "export", "phone": "call me maybe" }), "invalid_phone"),
        (serde_json::json!({ "kind": "export", "email": "jo@" }), "invalid_email"),
        (serde_json::json!({ "kind": "export", "phone": p1, "reference": "x".repeat(200) }), "invalid_reference"),
        (serde_json::json!({ "kind": "export", "bsuid": "y".repeat(500) }), "invalid_bsuid"),
    ] {
        let resp = app.handle(api("POST", "/data-requests", &body.to_string(), Some(MERCHANT_KEY)), "r").await;
        assert_eq!((resp.status_code, body_json(&resp)["reason"].as_str()), (422, Some(reason)), "{body}");
    }
}

#[tokio::test]
async fn a_correction_stays_open_listed_and_alarmed_until_an_operator_closes_it() {
    let h = Harness::new().await;
    let p = h.private().await;
    let phone = phone();
    let id = open(&h, &p, "correction", &phone, &format!("op-corr-{}", uuid::Uuid::new_v4().simple())).await;
    let worker = h.dsr_worker(&p, SystemClock).await;
    let outcome = worker.processor("test").process(&id, Utc::now(), false).await.unwrap();
    assert_eq!(outcome, Outcome::NeedsOperator);
    let requests = DynamoDataRequests::new(h.ddb.clone(), p.table(Store::DataRequests));
    assert_eq!(requests.get(&id).await.unwrap().unwrap().status, "needs_operator");
    assert!(
        requests.open_requests().await.unwrap().iter().any(|(open, _)| open == &id),
        "still open: listed and counted by the deadline alarm"
    );

    let mut vars: std::collections::BTreeMap<String, String> = p.env().into_iter().collect();
    vars.insert("DATA_REQUESTS_QUEUE_URL".into(), h.data_requests_url.clone());
    let ops = nexctl::Ops::new(nexctl::Stack { vars, queues: Default::default() }, h.sdk.clone()).await.unwrap();
    assert!(ops.close_request(&id, "Fixed the address, see ticket").await.is_err(), "a short code only");
    ops.close_request(&id, "corrected").await.unwrap();
    let closed = requests.get(&id).await.unwrap().unwrap();
    assert_eq!(closed.status, "closed");
    assert!(!requests.open_requests().await.unwrap().iter().any(|(open, _)| open == &id));
    assert!(ops.close_request(&id, "corrected").await.is_err(), "closed once");
    let log = DynamoAudit::new(h.ddb.clone(), p.table(Store::DataRequests));
    let entries = log.entries(0, 100).await.unwrap();
    assert!(entries.iter().any(|e| e.action == "dsr.closed" && e.detail.contains("corrected")));
}
