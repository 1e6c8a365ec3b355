//! Marketplace orders against the emulator: the orders adapter (versions, the one transaction per new
//! version, buyer deadlines, reads that never serve a buyer past its deadline) and the ingest on top.

use chrono::{Duration, TimeZone, Utc};
use nex_shared::adapters::dynamo_orders::DynamoOrders;
use nex_shared::domain::orders::{amazon, Normalised};
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::ports::OrderStore;
use nex_shared::usecases::orders_ingest::store_page;
use nex_tests::*;
use secrecy::SecretString;

fn hasher() -> SubjectHasher {
    SubjectHasher::new(&SecretString::from("pepper".to_owned()))
}

fn order(id: &str, status: &str, updated: &str, with_buyer: bool) -> Normalised {
    let buyer = if with_buyer {
        r#","buyer":{"buyerName":"Erika Muster","buyerEmail":"x@marketplace.amazon.de"},
            "recipient":{"deliveryAddress":{"name":"Erika Muster","addressLine1":"Hauptstr. 1","city":"Berlin"}}"#
    } else {
        ""
    };
    let json = format!(
        r#"{{"orderId":"{id}","createdTime":"2026-11-01T10:00:00Z","lastUpdatedTime":"{updated}",
        "proceeds":{{"grandTotal":{{"amount":"10.00","currencyCode":"EUR"}}}},
        "fulfillment":{{"fulfillmentStatus":"{status}","fulfilledBy":"MERCHANT"}}{buyer}}}"#
    );
    amazon::normalise(&serde_json::from_str(&json).unwrap()).unwrap()
}

#[tokio::test]
async fn a_version_is_written_once_with_its_buyer_and_event_and_an_older_one_never() {
    let h = Harness::new().await;
    let orders_table = table("OrdersTable");
    let store = DynamoOrders::new(h.ddb.clone(), &orders_table);
    let merchant = format!("m-{}", uuid::Uuid::new_v4().simple());
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap();
    let first =
        store_page(&store, &hasher(), &merchant, vec![order("1-1", "UNSHIPPED", "2026-11-01T11:00:00Z", true)], now)
            .await
            .unwrap();
    assert_eq!(first.new, 1);
    let pk = format!("merchant#{merchant}");
    let o = h.get(&orders_table, &[("pk", &pk), ("sk", "order#amazon#1-1")]).await.unwrap();
    let b = h.get(&orders_table, &[("pk", &pk), ("sk", "buyer#amazon#1-1")]).await.unwrap();
    let json = o["order"].as_s().unwrap();
    assert!(!json.contains("Erika") && !json.contains("Hauptstr"), "the order holds no buyer data");
    assert_eq!(o["merchant"].as_s().unwrap(), &merchant);
    assert_eq!(o["subject"], b["subject"], "order and buyer are found by the same subject");
    assert_eq!(o["due_action"].as_s().unwrap(), "anonymise");
    assert_eq!(b["due_action"].as_s().unwrap(), "delete");
    let ms = Utc.with_ymd_and_hms(2026, 11, 1, 11, 0, 0).unwrap().timestamp_millis();
    let e = h.get(&orders_table, &[("pk", &pk), ("sk", &format!("event#amazon#1-1#{ms}"))]).await.unwrap();
    assert_eq!(e["event_id"].as_s().unwrap(), &format!("order:amazon:1-1:{ms}"));
    assert!(!e.contains_key("subject") && !e.contains_key("buyer"), "the event holds no personal data");

    // The same page again, and an older version: nothing written.
    let again =
        store_page(&store, &hasher(), &merchant, vec![order("1-1", "UNSHIPPED", "2026-11-01T11:00:00Z", true)], now)
            .await
            .unwrap();
    assert_eq!((again.new, again.changed, again.unchanged), (0, 0, 1));
    let n = order("1-1", "PENDING", "2026-11-01T10:30:00Z", true);
    let w = nex_shared::ports::OrderWrite {
        merchant: &merchant,
        order: &n.order,
        stamp: None,
        subject: None,
        buyer: nex_shared::ports::BuyerWrite::Delete,
        event_id: "x".into(),
        event_expires_at: 0,
    };
    assert!(!store.write(&w).await.unwrap(), "an older version is refused by the condition itself");
    assert!(h.get(&orders_table, &[("pk", &pk), ("sk", "buyer#amazon#1-1")]).await.is_some(), "and changes nothing");

    // Shipped, without buyer data this time: the buyer stays, its deadline moves.
    let shipped_seen = now + Duration::hours(1);
    let r = store_page(
        &store,
        &hasher(),
        &merchant,
        vec![order("1-1", "SHIPPED", "2026-11-02T12:30:00Z", false)],
        shipped_seen,
    )
    .await
    .unwrap();
    assert_eq!(r.changed, 1);
    let versions = store.versions(&merchant, &["order#amazon#1-1".into(), "order#amazon#9-9".into()]).await.unwrap();
    let v = &versions["order#amazon#1-1"];
    assert_eq!((v.shipped_at, v.buyer), (Some(shipped_seen), true));
    assert!(!versions.contains_key("order#amazon#9-9"));

    // Reads serve the buyer only until its deadline.
    let (_, buyer) = store.get(&merchant, "order#amazon#1-1", now).await.unwrap().unwrap();
    assert_eq!(buyer.unwrap().name.as_deref(), Some("Erika Muster"));
    let after = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    let (order_after, buyer_after) = store.get(&merchant, "order#amazon#1-1", after).await.unwrap().unwrap();
    assert!(buyer_after.is_none(), "past its deadline the buyer is never served");
    assert_eq!(order_after.total.unwrap().amount.to_string(), "10.00");
    assert!(store.get("another-merchant", "order#amazon#1-1", now).await.unwrap().is_none());
}

#[tokio::test]
async fn a_page_of_many_orders_reads_its_versions_in_few_calls_and_a_repoll_writes_nothing() {
    let h = Harness::new().await;
    let store = DynamoOrders::new(h.aws.dynamodb(), table("OrdersTable"));
    let merchant = format!("m-{}", uuid::Uuid::new_v4().simple());
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap();
    let page =
        || (0..60).map(|i| order(&format!("2-{i}"), "UNSHIPPED", "2026-11-01T11:00:00Z", true)).collect::<Vec<_>>();
    let before = h.requests.get();
    let r = store_page(&store, &hasher(), &merchant, page(), now).await.unwrap();
    assert_eq!(r.new, 60);
    let writes = h.requests.get() - before;
    assert_eq!(writes, 2 + 60, "two BatchGetItem calls and one transaction per new order");
    let before = h.requests.get();
    let r = store_page(&store, &hasher(), &merchant, page(), now).await.unwrap();
    assert_eq!(r.unchanged, 60);
    assert_eq!(h.requests.get() - before, 2, "an unchanged re-poll costs two reads and no write");
}

#[tokio::test]
async fn every_new_version_reaches_the_order_events_queue_once_and_a_repoll_adds_nothing() {
    let h = Harness::new().await;
    let stack = h.orders().await;
    let store = DynamoOrders::new(h.ddb.clone(), &stack.table);
    let merchant = "m-events";
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap();
    let page = |updated: &str| (0..3).map(|i| order(&format!("3-{i}"), "UNSHIPPED", updated, true)).collect::<Vec<_>>();
    store_page(&store, &hasher(), merchant, page("2026-11-01T11:00:00Z"), now).await.unwrap();
    store_page(&store, &hasher(), merchant, page("2026-11-01T11:00:00Z"), now).await.unwrap();
    store_page(&store, &hasher(), merchant, page("2026-11-02T11:00:00Z"), now).await.unwrap();
    assert_eq!(stack.pipe.pump().await.unwrap(), 6, "three orders, two versions each");
    let bodies = h.take(&stack.events_url).await;
    assert_eq!(bodies.len(), 6);
    for b in &bodies {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(v["order_event"]["pk"], "merchant#m-events");
        assert!(v["order_event"]["sk"].as_str().unwrap().starts_with("event#amazon#3-"));
        assert!(!b.contains("Erika") && !b.contains("subject"), "no personal data on the queue");
    }
    assert_eq!(stack.pipe.pump().await.unwrap(), 0, "nothing twice");
}
