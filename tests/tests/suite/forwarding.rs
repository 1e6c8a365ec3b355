//! Forwarding to merchants' systems against the emulator, with a local merchant endpoint that verifies
//! every delivery with the reference `standardwebhooks` verifier from PyPI: registration and its address
//! checks, signed deliveries of marketplace orders and storefront payments, rotation, the whole retry
//! schedule at an injected time, 410, Retry-After, disabling after 5 days, replays (after recovery, after
//! an erasure), and one dead endpoint beside a healthy one.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use nex_shared::adapters::dynamo_orders::DynamoOrders;
use nex_shared::adapters::dynamo_webhooks::DynamoWebhooks;
use nex_shared::adapters::memory::FixedClock;
use nex_shared::domain::orders::amazon;
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::domain::webhooks::{self, SCHEDULE};
use nex_shared::ports::{DeliveryRef, DeliveryState, WebhookStore};
use nex_shared::usecases::forwarding::Done;
use nex_shared::usecases::orders_ingest::store_page;
use nex_tests::*;
use secrecy::SecretString;

const M1: &str = "merchant-demo-1";

fn api(method: &str, path: &str, body: &str, key: &str) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("authorization".to_owned(), format!("Bearer {key}")),
    ];
    nex_local::events::http_v2(method, path, "", &headers, body.as_bytes(), "req-endpoints")
}

/// Registers an endpoint for merchant-demo-1 at `url`; its id and secret.
async fn register(app: &MerchantApi, url: &str, types: &[&str]) -> (String, String) {
    let body = serde_json::json!({ "url": url, "event_types": types, "description": "back office" }).to_string();
    let resp = app.handle(api("POST", "/endpoints", &body, MERCHANT_KEY), "r").await;
    let j = body_json(&resp);
    assert_eq!(resp.status_code, 201, "{j}");
    (j["id"].as_str().unwrap().to_owned(), j["secret"].as_str().unwrap().to_owned())
}

/// When the test orders were placed: a day ago, so their buyers are well within their deadlines.
fn placed() -> chrono::DateTime<Utc> {
    static AT: std::sync::OnceLock<chrono::DateTime<Utc>> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        let t = Utc::now() - Duration::days(1);
        Utc.timestamp_opt(t.timestamp(), 0).unwrap()
    })
}

/// The version (epoch ms) of a test order updated `minutes` after it was placed.
fn version(minutes: i64) -> i64 {
    (placed() + Duration::minutes(minutes)).timestamp_millis()
}

fn order_json(id: &str, minutes: i64) -> nex_shared::domain::orders::Normalised {
    let created = placed().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let updated = (placed() + Duration::minutes(minutes)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let json = format!(
        r#"{{"orderId":"{id}","createdTime":"{created}","lastUpdatedTime":"{updated}",
        "proceeds":{{"grandTotal":{{"amount":"10.00","currencyCode":"EUR"}}}},
        "fulfillment":{{"fulfillmentStatus":"UNSHIPPED","fulfilledBy":"MERCHANT"}},
        "buyer":{{"buyerName":"Erika Muster","buyerEmail":"erika@marketplace.amazon.de"}},
        "recipient":{{"deliveryAddress":{{"name":"Erika Muster","addressLine1":"Hauptstr. 1","city":"Berlin"}}}}}}"#
    );
    amazon::normalise(&serde_json::from_str(&json).unwrap()).unwrap()
}

async fn store_order(f: &ForwardingStack, h: &Harness, id: &str, minutes: i64) {
    let store = DynamoOrders::new(h.ddb.clone(), &f.orders.table);
    let hasher = SubjectHasher::new(&SecretString::from("pepper".to_owned()));
    let now = Utc::now();
    store_page(&store, &hasher, M1, vec![order_json(id, minutes)], now).await.unwrap();
}

fn clock_at(t: chrono::DateTime<Utc>) -> Arc<FixedClock> {
    Arc::new(FixedClock::at(t))
}

#[cfg_attr(fixtures, test)]
#[allow(dead_code)]
fn the_specs_vector_signs_as_published() {
    let raw = std::fs::read_to_string(format!("{}/standard_webhooks/vectors.json", fixtures_dir())).unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let ex = &v["spec_example"];
    let key = webhooks::key_of(ex["secret"].as_str().unwrap()).unwrap();
    let ts: i64 = ex["webhook-timestamp"].as_str().unwrap().parse().unwrap();
    let sig = webhooks::sign(&key, ex["webhook-id"].as_str().unwrap(), ts, ex["body"].as_str().unwrap().as_bytes());
    assert_eq!(sig, ex["webhook-signature"].as_str().unwrap());
}

#[cfg(not(fixtures))]
#[test]
#[ignore = "the Standard Webhooks spec's vector needs ../shared/fixtures"]
fn conformance_tests_skipped() {}

#[tokio::test]
async fn endpoints_are_the_merchants_own_and_hostile_addresses_are_refused() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let app = f.merchant_api(&h, system()).await;
    let r = Receiver::get().await;
    let (_, url) = r.hook(&[], &[], "ok").await;
    let (id, secret) = register(&app, &url, &["order.created"]).await;
    assert!(secret.starts_with("whsec_") && webhooks::key_of(&secret).unwrap().len() == 24);

    // Listed for its merchant, without its secret; absent for another merchant on every route.
    let list = body_json(&app.handle(api("GET", "/endpoints", "", MERCHANT_KEY), "r").await);
    assert_eq!(list["endpoints"][0]["id"], id.as_str());
    assert!(!list.to_string().contains("whsec_"), "the secret is shown once, at registration");
    let other = body_json(&app.handle(api("GET", "/endpoints", "", OTHER_MERCHANT_KEY), "r").await);
    assert_eq!(other["endpoints"].as_array().unwrap().len(), 0);
    for (method, path, body) in [
        ("GET", format!("/endpoints/{id}"), ""),
        ("PATCH", format!("/endpoints/{id}"), r#"{"enabled":false}"#),
        ("DELETE", format!("/endpoints/{id}"), ""),
        ("POST", format!("/endpoints/{id}/rotate-secret"), ""),
        (
            "POST",
            format!("/endpoints/{id}/replay"),
            r#"{"since":"2026-01-01T00:00:00Z","until":"2027-01-01T00:00:00Z"}"#,
        ),
        ("GET", format!("/endpoints/{id}/attempts"), ""),
        ("GET", format!("/endpoints/{id}/deliveries"), ""),
    ] {
        let resp = app.handle(api(method, &path, body, OTHER_MERCHANT_KEY), "r").await;
        assert_eq!(resp.status_code, 404, "{method} {path} as another merchant");
    }
    let shown = body_json(&app.handle(api("GET", &format!("/endpoints/{id}"), "", MERCHANT_KEY), "r").await);
    assert_eq!(shown["status"], "enabled");

    // Bad bodies, unknown types.
    let bad = |b: &str| api("POST", "/endpoints", b, MERCHANT_KEY);
    assert_eq!(app.handle(bad("{"), "r").await.status_code, 400);
    let unknown = serde_json::json!({"url": url, "event_types": ["order.deleted"]}).to_string();
    assert_eq!(app.handle(bad(&unknown), "r").await.status_code, 422);

    // Addresses: private ranges and metadata refused even where the local stack allows loopback.
    for hostile in [
        "https://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data",
        "http://[::ffff:a00:1]/",
        "https://user:pw@shop.example/",
        "ftp://shop.example/",
    ] {
        let b = serde_json::json!({"url": hostile, "event_types": ["order.created"]}).to_string();
        let resp = app.handle(bad(&b), "r").await;
        assert_eq!(resp.status_code, 422, "{hostile}: {}", body_json(&resp));
    }
    // In production, a name that resolves to a loopback (or any private) address is refused at
    // registration, and the sender's resolver refuses it again at connection.
    let prod: MerchantApi = {
        let mut o: Vec<(&str, String)> = f.overrides();
        o.push(("WEBHOOK_ALLOW_LOOPBACK", "false".into()));
        let o: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.function("ConsentApiFunction", &o, system()).await
    };
    let b = serde_json::json!({"url": "https://localhost:8443/hook", "event_types": ["order.created"]}).to_string();
    let resp = prod.handle(bad(&b), "r").await;
    assert_eq!(
        (resp.status_code, body_json(&resp)["reason"].as_str()),
        (422, Some("url_resolves_to_a_forbidden_address"))
    );
    let b = serde_json::json!({"url": url, "event_types": ["order.created"]}).to_string();
    assert_eq!(prod.handle(bad(&b), "r").await.status_code, 422, "plain http is refused in production");
    use nex_shared::ports::Sender;
    let sender = nex_shared::adapters::webhook_delivery::HttpSender::new(Default::default());
    let key = webhooks::key_of(&secret).unwrap();
    let out = nex_shared::ports::Outgoing { url: "https://localhost:1/hook", id: "msg", body: b"{}", keys: &[key] };
    assert_eq!(sender.send(&out).await.error, Some("forbidden_address"), "checked on every connection");

    // Update, disable, delete: its secret goes with it.
    let resp = app
        .handle(
            api(
                "PATCH",
                &format!("/endpoints/{id}"),
                r#"{"event_types":["order.created","payment.updated"]}"#,
                MERCHANT_KEY,
            ),
            "r",
        )
        .await;
    assert_eq!(body_json(&resp)["event_types"].as_array().unwrap().len(), 2);
    let resp = app.handle(api("PATCH", &format!("/endpoints/{id}"), r#"{"enabled":false}"#, MERCHANT_KEY), "r").await;
    assert_eq!(
        (body_json(&resp)["status"].as_str(), body_json(&resp)["disabled_reason"].as_str()),
        (Some("disabled"), Some("merchant"))
    );
    let store = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks);
    let secret_id = store.endpoint(M1, &id).await.unwrap().unwrap().secret_id;
    assert_eq!(app.handle(api("DELETE", &format!("/endpoints/{id}"), "", MERCHANT_KEY), "r").await.status_code, 200);
    assert!(store.endpoint(M1, &id).await.unwrap().is_none());
    assert!(h.sdk_secrets().get_secret_value().secret_id(&secret_id).send().await.is_err(), "the secret is deleted");
}

#[tokio::test]
async fn an_order_and_a_payment_reach_the_endpoint_signed_with_a_stable_id_and_a_duplicate_job_does_nothing() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let app = f.merchant_api(&h, system()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "ok").await;
    let (id, secret) = register(&app, &url, &["order.created", "order.updated", "payment.updated"]).await;
    r.set(&name, &[&secret], &[], "ok").await;
    // Another merchant's endpoint never sees merchant-demo-1's events.
    let (other_name, other_url) = r.hook(&[], &[], "ok").await;
    let b = serde_json::json!({"url": other_url, "event_types": ["order.created", "payment.updated"]}).to_string();
    assert_eq!(app.handle(api("POST", "/endpoints", &b, OTHER_MERCHANT_KEY), "r").await.status_code, 201);

    let order_id = format!("303-{}", &uuid::Uuid::new_v4().simple().to_string()[..7]);
    store_order(&f, &h, &order_id, 60).await;
    let dispatcher = f.dispatcher(&h, system()).await;
    assert_eq!(f.dispatch(&h, &dispatcher).await.failed, 0);
    let sender = f.sender(&h, &[], system()).await;
    assert_eq!(f.send(&h, &sender).await.failed, 0);

    let got = r.received(&name).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let d = &got[0];
    assert_eq!(d["verified"], true, "the reference verifier accepts the signature");
    let ms = version(60);
    assert_eq!(d["id"], format!("order:amazon:{order_id}:{ms}"));
    assert_eq!(d["body"]["type"], "order.created");
    assert_eq!(d["body"]["data"]["version"], ms);
    assert_eq!(d["body"]["data"]["buyer"]["name"], "Erika Muster", "the merchant gets its buyer to ship to");
    assert!(r.received(&other_name).await.is_empty());

    // A newer version is `order.updated`, with its own id; a duplicated job is stale.
    store_order(&f, &h, &order_id, 120).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    let got = r.received(&name).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["body"]["type"], "order.updated");
    assert_ne!(got[1]["id"], got[0]["id"]);
    let job = DeliveryRef {
        merchant: M1.into(),
        endpoint: id.clone(),
        event_id: got[1]["id"].as_str().unwrap().into(),
        step: 0,
    };
    assert_eq!(sender.deliver(&job).await.unwrap(), Done::Stale, "the job's step is spent");
    // The event redelivered to the dispatcher creates nothing new.
    let event_sk = format!("event#amazon#{order_id}#{ms}");
    h.send(
        &f.orders.events_url,
        serde_json::json!({"order_event": {"pk": format!("merchant#{M1}"), "sk": event_sk}}).to_string(),
    )
    .await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    assert_eq!(r.received(&name).await.len(), 2, "a redelivered event is not sent again");

    // A storefront payment change.
    let key = format!("pi_{}", uuid::Uuid::new_v4().simple());
    let payments = nex_shared::adapters::dynamo_payments::DynamoPayments::new(h.ddb.clone(), table("PaymentsTable"));
    let now = Utc::now();
    let record = nex_shared::ports::PaymentRecord {
        payment_key: key.clone(),
        order_ref: Some("shop-1001".into()),
        status: "paid".into(),
        facts: Default::default(),
        amount: Some(2000),
        currency: Some("eur".into()),
        card: None,
        api_version: None,
        subject: Some("subject-hash".into()),
        merchant: Some(M1.into()),
        last_event_at: now.timestamp(),
        updated_at: now,
        retention: nex_shared::domain::retention::stamp(
            nex_shared::domain::retention::DataClass::InvoiceTaxRecord,
            now,
            &key,
        )
        .unwrap(),
        version: 3,
    };
    use nex_shared::ports::PaymentStore;
    payments.put(&record, None).await.unwrap();
    h.send(&f.orders.events_url, serde_json::json!({"payment_event": {"payment_key": key}}).to_string()).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    let got = r.received(&name).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["verified"], true);
    assert_eq!(got[2]["id"], format!("payment:{key}:3"));
    assert_eq!(got[2]["body"]["type"], "payment.updated");
    assert_eq!(got[2]["body"]["data"]["status"], "paid");
    assert!(!got[2]["body"].to_string().contains("subject-hash"));
    assert!(r.received(&other_name).await.is_empty(), "another merchant's endpoint saw nothing");

    // Attempts are recorded without bodies.
    let attempts =
        body_json(&app.handle(api("GET", &format!("/endpoints/{id}/attempts"), "", MERCHANT_KEY), "r").await);
    assert_eq!(attempts["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(attempts["attempts"][0]["status"], 204);
    assert!(!attempts.to_string().contains("Erika"));
    // Nor does anything stored for forwarding: endpoints, deliveries and attempts hold no body.
    let items = h.ddb.scan().table_name(&f.webhooks).send().await.unwrap().items.unwrap_or_default();
    assert!(items.len() >= 7, "an endpoint, three deliveries, three attempts");
    let stored = format!("{items:?}");
    assert!(!stored.contains("Erika") && !stored.contains("Hauptstr") && !stored.contains("erika@"));
    assert!(!stored.contains("whsec_"), "no secret in the table");
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one_during_the_overlap() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let app = f.merchant_api(&h, system()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "ok").await;
    let (id, old) = register(&app, &url, &["order.created"]).await;
    let resp = app.handle(api("POST", &format!("/endpoints/{id}/rotate-secret"), "", MERCHANT_KEY), "r").await;
    let j = body_json(&resp);
    let new = j["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(j["previous_secret_valid_until"].is_string());
    // A receiver still holding the old secret, and one already switched: both verify.
    r.set(&name, &[&old], &["ok"], "ok").await;
    store_order(&f, &h, &format!("R-{}", uuid::Uuid::new_v4().simple()), 60).await;
    let dispatcher = f.dispatcher(&h, system()).await;
    f.dispatch(&h, &dispatcher).await;
    let sender = f.sender(&h, &[], system()).await;
    f.send(&h, &sender).await;
    r.set(&name, &[&new], &[], "ok").await;
    store_order(&f, &h, &format!("R-{}", uuid::Uuid::new_v4().simple()), 60).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    let got = r.received(&name).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|d| d["verified"] == true && d["signatures"] == 2), "{got:?}");
    // After the overlap, only the new secret signs.
    let later = Utc::now() + Duration::seconds(webhooks::ROTATION_OVERLAP_SECS + 60);
    let store = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks);
    let e = store.endpoint(M1, &id).await.unwrap().unwrap();
    use nex_shared::ports::SigningSecrets;
    let keys = sender.secrets.keys(&e, later.timestamp()).await.unwrap();
    assert_eq!(keys, vec![webhooks::key_of(&new).unwrap()]);
    // A second rotation within the overlap keeps the first secret its full 24 hours too.
    let resp = app.handle(api("POST", &format!("/endpoints/{id}/rotate-secret"), "", MERCHANT_KEY), "r").await;
    let newest = body_json(&resp)["secret"].as_str().unwrap().to_owned();
    let e = store.endpoint(M1, &id).await.unwrap().unwrap();
    assert_eq!(e.secret_version, 2);
    let keys = sender.secrets.keys(&e, Utc::now().timestamp()).await.unwrap();
    let expect: Vec<_> = [&newest, &new, &old].iter().map(|s| webhooks::key_of(s).unwrap()).collect();
    assert_eq!(keys, expect, "current first, then both earlier ones within their overlap");
}

#[tokio::test]
async fn the_whole_schedule_at_an_injected_time_then_failed_then_replayed_after_recovery() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let t0 = Utc::now();
    let clock = clock_at(t0);
    let app = f.merchant_api(&h, clock.clone()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "fail").await;
    let (id, secret) = register(&app, &url, &["order.created"]).await;
    r.set(&name, &[&secret], &[], "fail").await;
    let order_id = format!("S-{}", uuid::Uuid::new_v4().simple());
    store_order(&f, &h, &order_id, 60).await;
    let dispatcher = f.dispatcher(&h, clock.clone()).await;
    f.dispatch(&h, &dispatcher).await;
    // Every wait held by the due index (no delayed messages), so the injected clock drives it all.
    let sender = f.sender(&h, &[("WEBHOOK_MAX_QUEUE_DELAY_SECS", "0")], clock.clone()).await;
    let scheduler = f.scheduler(&h, clock.clone()).await;
    let store = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks);
    let event_id = format!("order:amazon:{order_id}:{}", version(60));

    let mut t = t0;
    f.send(&h, &sender).await; // attempt 1, at once
    for (n, wait) in SCHEDULE.iter().enumerate().skip(1) {
        let d = store.delivery(M1, &id, &event_id).await.unwrap().unwrap();
        assert_eq!((d.attempts, d.state), (n as u32, DeliveryState::Pending));
        assert_eq!(d.next_at, t.timestamp() + wait, "attempt {} waits {wait} s", n + 1);
        // Not a second early.
        clock.set(t + Duration::seconds(wait - 1));
        assert_eq!(
            scheduler.handle(serde_json::json!({}), "s", Utc::now() + Duration::seconds(60)).await.unwrap()["queued"],
            0
        );
        t += Duration::seconds(*wait);
        clock.set(t);
        assert_eq!(
            scheduler.handle(serde_json::json!({}), "s", Utc::now() + Duration::seconds(60)).await.unwrap()["queued"],
            1
        );
        f.send(&h, &sender).await;
    }
    let d = store.delivery(M1, &id, &event_id).await.unwrap().unwrap();
    assert_eq!((d.attempts, d.state, d.last_error.as_deref()), (8, DeliveryState::Failed, Some("attempts_exhausted")));
    assert_eq!(r.received(&name).await.len(), 8);
    assert!(r.received(&name).await.iter().all(|d| d["verified"] == true));
    // Kept, visible, and not offered again.
    clock.set(t + Duration::days(1));
    assert_eq!(
        scheduler.handle(serde_json::json!({}), "s", Utc::now() + Duration::seconds(60)).await.unwrap()["queued"],
        0
    );
    let failed = body_json(
        &app.handle(
            nex_local::events::http_v2(
                "GET",
                &format!("/endpoints/{id}/deliveries"),
                "state=failed",
                &[("authorization".into(), format!("Bearer {MERCHANT_KEY}"))],
                b"",
                "r",
            ),
            "r",
        )
        .await,
    );
    assert_eq!(failed["deliveries"][0]["event_id"], event_id.as_str());
    let e = store.endpoint(M1, &id).await.unwrap().unwrap();
    assert!(e.enabled && e.failing_since == Some(t0.timestamp()), "failing, but for less than 5 days");

    // The receiver recovers; the merchant replays the range: a new round, the same webhook-id.
    r.set(&name, &[&secret], &[], "ok").await;
    let body =
        serde_json::json!({"since": placed() - Duration::days(1), "until": placed() + Duration::days(1)}).to_string();
    let body = body.as_str();
    let resp = app.handle(api("POST", &format!("/endpoints/{id}/replay"), body, MERCHANT_KEY), "r").await;
    assert_eq!((resp.status_code, body_json(&resp)["replayed"].as_u64()), (202, Some(1)));
    f.send(&h, &sender).await;
    let got = r.received(&name).await;
    assert_eq!(got.len(), 9);
    assert_eq!((got[8]["id"].as_str(), got[8]["verified"].as_bool()), (Some(event_id.as_str()), Some(true)));
    let d = store.delivery(M1, &id, &event_id).await.unwrap().unwrap();
    assert_eq!((d.state, d.round, d.attempts), (DeliveryState::Succeeded, 1, 1));
    assert!(store.endpoint(M1, &id).await.unwrap().unwrap().failing_since.is_none(), "healthy again");
}

#[tokio::test]
async fn the_first_retry_travels_as_a_delayed_message_and_retry_after_pauses_the_endpoint() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let app = f.merchant_api(&h, system()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "ok").await;
    let (id, secret) = register(&app, &url, &["order.created"]).await;
    r.set(&name, &[&secret], &["fail", "429:600"], "ok").await;
    let dispatcher = f.dispatcher(&h, system()).await;
    let sender = f.sender(&h, &[], system()).await;
    let order_id = format!("D-{}", uuid::Uuid::new_v4().simple());
    store_order(&f, &h, &order_id, 60).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await; // fails: the second attempt is a message delayed 5 s
    assert_eq!(r.received(&name).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    f.send(&h, &sender).await; // 429 with Retry-After: 600
    let got = r.received(&name).await;
    assert_eq!(got.len(), 2, "the delayed retry arrived without the scheduler");
    let store = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks);
    let event_id = got[0]["id"].as_str().unwrap();
    let d = store.delivery(M1, &id, event_id).await.unwrap().unwrap();
    let e = store.endpoint(M1, &id).await.unwrap().unwrap();
    let now = Utc::now().timestamp();
    assert!(d.next_at >= now + 590, "Retry-After (600 s) outweighs the schedule's 300 s");
    assert!(e.paused_until.is_some_and(|p| p >= now + 590 && p <= now + 601), "the endpoint is paused for 600 s");
    // Another event meanwhile waits for the pause without spending an attempt.
    let order2 = format!("D-{}", uuid::Uuid::new_v4().simple());
    store_order(&f, &h, &order2, 60).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    assert_eq!(r.received(&name).await.len(), 2, "no attempt while paused");
    let d2 = store.delivery(M1, &id, &format!("order:amazon:{order2}:{}", version(60))).await.unwrap().unwrap();
    let until = e.paused_until.unwrap();
    assert_eq!(d2.attempts, 0);
    assert!(d2.next_at >= until && d2.next_at < until + 30, "after the pause, spread over 30 s");
}

#[tokio::test]
async fn gone_disables_the_endpoint_later_events_are_kept_failed_and_replay_once_fixed() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let app = f.merchant_api(&h, system()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "ok").await;
    let (id, secret) = register(&app, &url, &["order.created"]).await;
    r.set(&name, &[&secret], &["gone"], "ok").await;
    let dispatcher = f.dispatcher(&h, system()).await;
    let sender = f.sender(&h, &[], system()).await;
    let (o1, o2) = (format!("G-{}", uuid::Uuid::new_v4().simple()), format!("G-{}", uuid::Uuid::new_v4().simple()));
    store_order(&f, &h, &o1, 60).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    let shown = body_json(&app.handle(api("GET", &format!("/endpoints/{id}"), "", MERCHANT_KEY), "r").await);
    assert_eq!((shown["status"].as_str(), shown["disabled_reason"].as_str()), (Some("disabled"), Some("gone_410")));
    store_order(&f, &h, &o2, 60).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    assert_eq!(r.received(&name).await.len(), 1, "nothing is sent to a disabled endpoint");
    let ms = version(60);
    let store = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks);
    let d2 = store.delivery(M1, &id, &format!("order:amazon:{o2}:{ms}")).await.unwrap().unwrap();
    assert_eq!(
        (d2.state, d2.last_error.as_deref()),
        (DeliveryState::Failed, Some("endpoint_disabled")),
        "kept, not dropped"
    );
    // Replaying a disabled endpoint is refused until it is fixed.
    let body =
        serde_json::json!({"since": placed() - Duration::days(1), "until": placed() + Duration::days(1)}).to_string();
    let body = body.as_str();
    let resp = app.handle(api("POST", &format!("/endpoints/{id}/replay"), body, MERCHANT_KEY), "r").await;
    assert_eq!(resp.status_code, 409);
    let resp = app.handle(api("PATCH", &format!("/endpoints/{id}"), r#"{"enabled":true}"#, MERCHANT_KEY), "r").await;
    assert_eq!(body_json(&resp)["status"], "enabled");
    let resp = app.handle(api("POST", &format!("/endpoints/{id}/replay"), body, MERCHANT_KEY), "r").await;
    assert_eq!(body_json(&resp)["replayed"], 2);
    f.send(&h, &sender).await;
    let got = r.received(&name).await;
    assert_eq!(got.len(), 3);
    assert!(got[1..].iter().all(|d| d["verified"] == true && d["answer"] == "ok"));
}

#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let t0 = Utc::now();
    let clock = clock_at(t0);
    let app = f.merchant_api(&h, clock.clone()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "fail").await;
    let (id, secret) = register(&app, &url, &["order.created"]).await;
    r.set(&name, &[&secret], &[], "fail").await;
    let dispatcher = f.dispatcher(&h, clock.clone()).await;
    let sender = f.sender(&h, &[("WEBHOOK_MAX_QUEUE_DELAY_SECS", "0")], clock.clone()).await;
    store_order(&f, &h, &format!("F-{}", uuid::Uuid::new_v4().simple()), 60).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    let store = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks);
    assert!(store.endpoint(M1, &id).await.unwrap().unwrap().enabled);
    // Five days on, still failing: the next attempt disables it.
    clock.set(t0 + Duration::days(5) + Duration::seconds(1));
    store_order(&f, &h, &format!("F-{}", uuid::Uuid::new_v4().simple()), 60).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    let e = store.endpoint(M1, &id).await.unwrap().unwrap();
    assert_eq!((e.enabled, e.disabled_reason.as_deref()), (false, Some("failing_5_days")));
    assert!(logs().contains("WebhookEndpointsDisabled") || logs().contains("webhook endpoint disabled"));
}

#[tokio::test]
async fn a_replay_after_the_buyers_erasure_brings_back_no_personal_data() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let app = f.merchant_api(&h, system()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "ok").await;
    let (_, secret) = register(&app, &url, &["order.created"]).await;
    r.set(&name, &[&secret], &[], "ok").await;
    let order_id = format!("E-{}", uuid::Uuid::new_v4().simple());
    store_order(&f, &h, &order_id, 60).await;
    let dispatcher = f.dispatcher(&h, system()).await;
    let sender = f.sender(&h, &[], system()).await;
    f.dispatch(&h, &dispatcher).await;
    f.send(&h, &sender).await;
    let first = r.received(&name).await;
    assert!(first[0]["body"].to_string().contains("Erika"));
    // The buyer is erased (what an erasure and the buyer's deadline do: the buyer item goes).
    h.ddb
        .delete_item()
        .table_name(&f.orders.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("merchant#{M1}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(format!("buyer#amazon#{order_id}")))
        .send()
        .await
        .unwrap();
    let event_id = first[0]["id"].as_str().unwrap();
    let resp = app.handle(api("POST", &format!("/events/{event_id}/replay"), "", MERCHANT_KEY), "r").await;
    assert_eq!(resp.status_code, 202, "{}", body_json(&resp));
    assert_eq!(
        app.handle(api("POST", &format!("/events/{event_id}/replay"), "", OTHER_MERCHANT_KEY), "r").await.status_code,
        404
    );
    f.send(&h, &sender).await;
    let got = r.received(&name).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["id"], event_id);
    assert!(got[1]["body"]["data"]["buyer"].is_null());
    let text = got[1]["body"].to_string();
    assert!(!text.contains("Erika") && !text.contains("Hauptstr") && !text.contains("erika@"), "{text}");
}

#[tokio::test]
async fn a_dead_endpoint_does_not_hold_up_another_merchants_delivery() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let app = f.merchant_api(&h, system()).await;
    let r = Receiver::get().await;
    let (slow_name, slow_url) = r.hook(&[], &[], "slow:20").await;
    let (_, slow_secret) = register(&app, &slow_url, &["order.created"]).await;
    r.set(&slow_name, &[&slow_secret], &[], "slow:20").await;
    let (ok_name, ok_url) = r.hook(&[], &[], "ok").await;
    let b = serde_json::json!({"url": ok_url, "event_types": ["payment.updated"]}).to_string();
    let ok_secret = body_json(&app.handle(api("POST", "/endpoints", &b, OTHER_MERCHANT_KEY), "r").await)["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    r.set(&ok_name, &[&ok_secret], &[], "ok").await;
    // One job each, in one batch.
    store_order(&f, &h, &format!("T-{}", uuid::Uuid::new_v4().simple()), 60).await;
    let key = format!("pi_{}", uuid::Uuid::new_v4().simple());
    let payments = nex_shared::adapters::dynamo_payments::DynamoPayments::new(h.ddb.clone(), table("PaymentsTable"));
    let now = Utc::now();
    use nex_shared::ports::PaymentStore;
    payments
        .put(
            &nex_shared::ports::PaymentRecord {
                payment_key: key.clone(),
                order_ref: None,
                status: "paid".into(),
                facts: Default::default(),
                amount: Some(100),
                currency: Some("eur".into()),
                card: None,
                api_version: None,
                subject: None,
                merchant: Some("merchant-demo-2".into()),
                last_event_at: now.timestamp(),
                updated_at: now,
                retention: nex_shared::domain::retention::stamp(
                    nex_shared::domain::retention::DataClass::InvoiceTaxRecord,
                    now,
                    &key,
                )
                .unwrap(),
                version: 1,
            },
            None,
        )
        .await
        .unwrap();
    h.send(&f.orders.events_url, serde_json::json!({"payment_event": {"payment_key": key}}).to_string()).await;
    let dispatcher = f.dispatcher(&h, system()).await;
    f.dispatch(&h, &dispatcher).await;
    let sender = f.sender(&h, &[], system()).await;
    let round = f.send(&h, &sender).await;
    assert_eq!(round.failed, 0);
    let ok = r.received(&ok_name).await;
    let slow = r.received(&slow_name).await;
    assert_eq!((ok.len(), slow.len()), (1, 1));
    // The timed-out endpoint is paused: its next event waits instead of spending another 15 s.
    let store = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks);
    let e = store.endpoints(M1).await.unwrap().pop().unwrap();
    assert!(e.paused_until.is_some() && e.failing_since.is_some());
    let attempts = store.attempts(M1, &e.id, 10).await.unwrap();
    assert_eq!(attempts[0].error.as_deref(), Some("timeout"));
    let gave_up_ms = attempts[0].at_ms + attempts[0].latency_ms as i64;
    assert!(
        ok[0]["ended_ms"].as_i64().unwrap() < gave_up_ms,
        "the healthy endpoint was answered while the dead one still held its attempt"
    );
    let order2 = format!("T-{}", uuid::Uuid::new_v4().simple());
    store_order(&f, &h, &order2, 60).await;
    f.dispatch(&h, &dispatcher).await;
    let round = f.send(&h, &sender).await;
    assert_eq!(round.failed, 0);
    assert_eq!(r.received(&slow_name).await.len(), 1, "no second 15 s attempt while it is paused");
    let d2 = store.delivery(M1, &e.id, &format!("order:amazon:{order2}:{}", version(60))).await.unwrap().unwrap();
    assert_eq!(d2.attempts, 0);
    assert!(d2.next_at >= e.paused_until.unwrap(), "it waits for the pause");
}

#[tokio::test]
async fn editing_or_rotating_a_failing_endpoint_keeps_its_failure_clock_and_a_stale_edit_never_re_enables_it() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let app = f.merchant_api(&h, system()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "fail").await;
    let (id, secret) = register(&app, &url, &["order.created"]).await;
    r.set(&name, &[&secret], &[], "fail").await;
    store_order(&f, &h, &format!("C-{}", uuid::Uuid::new_v4().simple()), 60).await;
    let dispatcher = f.dispatcher(&h, system()).await;
    f.dispatch(&h, &dispatcher).await;
    let sender = f.sender(&h, &[], system()).await;
    f.send(&h, &sender).await;
    let store = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks);
    let since = store.endpoint(M1, &id).await.unwrap().unwrap().failing_since;
    assert!(since.is_some());
    let patch = |b: &str| api("PATCH", &format!("/endpoints/{id}"), b, MERCHANT_KEY);
    assert_eq!(app.handle(patch(r#"{"description":"renamed"}"#), "r").await.status_code, 200);
    assert_eq!(
        app.handle(api("POST", &format!("/endpoints/{id}/rotate-secret"), "", MERCHANT_KEY), "r").await.status_code,
        200
    );
    assert_eq!(store.endpoint(M1, &id).await.unwrap().unwrap().failing_since, since, "the 5-day clock runs on");
    // Disabled by a 410 after the merchant read it: the merchant's stale edit is refused, not applied.
    let mut e = store.endpoint(M1, &id).await.unwrap().unwrap();
    e.enabled = false;
    e.disabled_reason = Some("gone_410".into());
    store.save_health(&e).await.unwrap();
    let mut stale = e.clone();
    stale.enabled = true;
    assert!(!store.update_endpoint(&stale, true).await.unwrap(), "written only if still enabled as read");
    assert!(!store.endpoint(M1, &id).await.unwrap().unwrap().enabled);
    // Re-enabled on purpose, its history is cleared.
    assert_eq!(body_json(&app.handle(patch(r#"{"enabled":true}"#), "r").await)["status"], "enabled");
    assert!(store.endpoint(M1, &id).await.unwrap().unwrap().failing_since.is_none());
}

#[tokio::test]
async fn a_lost_retry_message_is_sent_again_by_the_due_index() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    let t0 = Utc::now();
    let clock = clock_at(t0);
    let app = f.merchant_api(&h, clock.clone()).await;
    let r = Receiver::get().await;
    let (name, url) = r.hook(&[], &[], "ok").await;
    let (id, secret) = register(&app, &url, &["order.created"]).await;
    r.set(&name, &[&secret], &["fail"], "ok").await;
    let order_id = format!("L-{}", uuid::Uuid::new_v4().simple());
    store_order(&f, &h, &order_id, 60).await;
    let dispatcher = f.dispatcher(&h, clock.clone()).await;
    f.dispatch(&h, &dispatcher).await;
    // Production timing: the 5 s retry travels as a delayed message...
    let sender = f.sender(&h, &[], clock.clone()).await;
    f.send(&h, &sender).await;
    // ...which is lost (a crash after its send was recorded, a purge, an expiry).
    h.sqs.purge_queue().queue_url(&f.deliveries_url).send().await.unwrap();
    let scheduler = f.scheduler(&h, clock.clone()).await;
    let tick = |at: chrono::DateTime<Utc>| {
        clock.set(at);
        scheduler.handle(serde_json::json!({}), "s", Utc::now() + Duration::seconds(60))
    };
    assert_eq!(tick(t0 + Duration::seconds(5 + 899)).await.unwrap()["queued"], 0);
    assert_eq!(tick(t0 + Duration::seconds(5 + 900)).await.unwrap()["queued"], 1, "15 minutes past its time");
    f.send(&h, &sender).await;
    let d = DynamoWebhooks::new(h.ddb.clone(), &f.webhooks)
        .delivery(M1, &id, &format!("order:amazon:{order_id}:{}", version(60)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.state, d.attempts), (DeliveryState::Succeeded, 2));
    assert_eq!(r.received(&name).await.len(), 2);
}
