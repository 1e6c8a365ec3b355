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
        buyer_held: true,
        first: false,
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
    // First seen shipped after its last change: it shipped at the latest then.
    assert_eq!((v.shipped_at, v.buyer), (Some(Utc.with_ymd_and_hms(2026, 11, 2, 12, 30, 0).unwrap()), true));
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
    // Operations, not attempts: moto may ask for a transaction to be retried when tests run side by side.
    let before = h.requests.operations();
    let r = store_page(&store, &hasher(), &merchant, page(), now).await.unwrap();
    assert_eq!(r.new, 60);
    let writes = h.requests.operations() - before;
    assert_eq!(writes, 2 + 60, "two BatchGetItem calls and one transaction per new order");
    let before = h.requests.operations();
    let r = store_page(&store, &hasher(), &merchant, page(), now).await.unwrap();
    assert_eq!(r.unchanged, 60);
    assert_eq!(h.requests.operations() - before, 2, "an unchanged re-poll costs two reads and no write");
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

/// The sweep with an injected clock: a shipped bol order's buyer goes 29 days after it was first seen
/// shipped (so within the promised 30 with a daily sweep) and the order is anonymised at 90 days; an Amazon
/// order that never ships loses its buyer and is anonymised at 30 days.
#[tokio::test]
async fn the_sweep_deletes_buyers_after_shipment_and_anonymises_orders_at_their_window() {
    use nex_shared::adapters::memory::FixedClock;
    use nex_shared::domain::data_inventory::Store;
    use nex_shared::domain::orders::bol;
    let h = Harness::new().await;
    let p = h.private().await;
    let orders_table = p.table(Store::Orders).to_owned();
    let store = DynamoOrders::new(h.ddb.clone(), &orders_table);
    let t0 = Utc::now() - Duration::days(1);
    let bol_order = |shipped: u32, changed: &str| {
        let json = format!(
            r#"{{"orderId":"B-1","orderPlacedDateTime":"{placed}","shipmentDetails":{{"firstName":"Piet","surname":"Jansen","city":"UTRECHT","email":"x9@verkopen.bol.com"}},
            "orderItems":[{{"orderItemId":"1","fulfilment":{{"method":"FBR"}},"quantity":1,"quantityShipped":{shipped},"unitPrice":9.5,"totalPrice":9.5,
            "latestChangedDateTime":"{changed}"}}]}}"#,
            placed = t0.to_rfc3339()
        );
        bol::normalise(&serde_json::from_str(&json).unwrap()).unwrap()
    };
    let at = |d: i64| t0 + Duration::days(d);
    store_page(
        &store,
        &hasher(),
        "m",
        vec![bol_order(0, &at(0).to_rfc3339()), order("A-1", "UNSHIPPED", &t0.to_rfc3339(), true)],
        at(0),
    )
    .await
    .unwrap();
    // Seen shipped two days later (bol gives no ship time).
    let shipped_seen = at(2);
    store_page(&store, &hasher(), "m", vec![bol_order(1, &shipped_seen.to_rfc3339())], shipped_seen).await.unwrap();
    let get = |sk: &'static str| {
        let (h, t) = (&h, orders_table.clone());
        async move { h.get(&t, &[("pk", "merchant#m"), ("sk", sk)]).await }
    };
    let sweep_at = |t| {
        let (h, p) = (&h, &p);
        async move {
            let sweep = h.sweep(p, FixedClock::at(t)).await;
            let report = sweep.run(false, t + Duration::minutes(15), &()).await.unwrap();
            assert!(report.complete);
            report
        }
    };
    let due = shipped_seen + Duration::days(29);
    sweep_at(due - Duration::hours(1)).await;
    assert!(get("buyer#bol#B-1").await.is_some(), "not yet");
    // The Amazon order (placed 2026-11-01, never shipped) is past its 30 days by now: buyer gone, anonymised.
    assert!(get("buyer#amazon#A-1").await.is_none());
    let a = get("order#amazon#A-1").await.unwrap();
    assert!(!a.contains_key("subject") && a.contains_key("order"));
    sweep_at(due + Duration::hours(1)).await;
    assert!(get("buyer#bol#B-1").await.is_none(), "29 days after shipment the buyer is gone");
    let o = get("order#bol#B-1").await.unwrap();
    assert!(o.contains_key("subject"), "the order itself is kept until its own window");
    assert!(due + Duration::days(1) <= shipped_seen + Duration::days(30), "a daily sweep keeps the 30 days");

    sweep_at(at(90) + Duration::hours(1)).await;
    let o = get("order#bol#B-1").await.unwrap();
    assert!(!o.contains_key("subject") && !o.contains_key("expires_at"), "anonymised at 90 days");
    assert!(o["order"].as_s().unwrap().contains("9.5"), "its numbers are kept");
}
