//! eBay's Marketplace Account Deletion endpoint, built from the template, against the emulator and a stand-in
//! for eBay's OAuth and public-key endpoints: the endpoint check, a signed notice opening an erasure that
//! removes the eBay user's buyer data from every merchant's orders, and forged or tampered notices refused
//! with 412 and nothing stored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use nex_shared::adapters::dynamo_orders::DynamoOrders;
use nex_shared::apps::orders::EbayAccountDeletion;
use nex_shared::domain::orders::{ebay, ebay_deletion};
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::usecases::orders_ingest::store_page;
use nex_tests::*;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use secrecy::SecretString;
use sha1::{Digest, Sha1};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KID: &str = "4e6b2a77-0000-4000-8000-000000000001";

/// A stand-in for eBay: the application token and the public key `kid`, as `pem`.
async fn ebay_stand_in(kid: &str, pem: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/identity/v1/oauth2/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "v^1.1#app", "expires_in": 7200})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/commerce/notification/v1/public_key/{kid}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"key": pem, "algorithm": "ECDSA", "digest": "SHA1"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/commerce/notification/v1/public_key/unknown-kid"))
        .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({"errors": [{"errorId": 195001}]})))
        .mount(&server)
        .await;
    server
}

async fn endpoint(h: &Harness, ebay: &str) -> EbayAccountDeletion {
    h.function(
        "EbayAccountDeletionFunction",
        &[("EBAY_AUTH_URL", ebay), ("EBAY_API_URL", ebay), ("DATA_REQUESTS_QUEUE_URL", &h.data_requests_url)],
        system(),
    )
    .await
}

fn post(body: &str, signature: Option<&str>) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(s) = signature {
        headers.push(("x-ebay-signature".to_owned(), s.to_owned()));
    }
    nex_local::events::http_v2("POST", "/webhooks/ebay/account-deletion", "", &headers, body.as_bytes(), "req-ebay")
}

/// A notice about `username`, pretty-printed the way eBay sends it.
fn notice(username: &str) -> String {
    let v = serde_json::json!({
        "metadata": {"topic": "MARKETPLACE_ACCOUNT_DELETION", "schemaVersion": "1.0", "deprecated": false},
        "notification": {
            "notificationId": format!("n-{}", uuid::Uuid::new_v4().simple()),
            "eventDate": "2026-12-01T10:00:00.000Z", "publishDate": "2026-12-01T10:00:01.000Z", "publishAttemptCount": 1,
            "data": {"username": username, "userId": "u1", "eiasToken": "token"}
        }
    });
    serde_json::to_string_pretty(&v).unwrap()
}

fn sign(key: &SigningKey, kid: &str, body: &str) -> String {
    let digest = Sha1::digest(ebay_deletion::compact(body.as_bytes()).unwrap());
    let sig: Signature = key.sign_prehash(&digest).unwrap();
    let header =
        serde_json::json!({"alg": "ecdsa", "kid": kid, "signature": STANDARD.encode(sig.to_der()), "digest": "SHA1"});
    STANDARD.encode(header.to_string())
}

fn pem(key: &SigningKey) -> String {
    let der = key.verifying_key().to_public_key_der().unwrap();
    format!("-----BEGIN PUBLIC KEY-----{}-----END PUBLIC KEY-----", STANDARD.encode(der.as_bytes()))
}

#[tokio::test]
async fn the_endpoint_check_answers_the_hash_of_code_token_and_registered_url() {
    let h = Harness::new().await;
    let key = SigningKey::from_slice(&[3u8; 32]).unwrap();
    let ebay = ebay_stand_in(KID, &pem(&key)).await;
    let app = endpoint(&h, &ebay.uri()).await;
    let url = env_of("EbayAccountDeletionFunction")["EBAY_DELETION_ENDPOINT_URL"].clone();
    let get = nex_local::events::http_v2(
        "GET",
        "/webhooks/ebay/account-deletion",
        "challenge_code=a8628072-3d33-45ee-9004-bee86830a22d",
        &[],
        b"",
        "r",
    );
    let resp = app.handle(get, "r").await;
    assert_eq!(resp.status_code, 200);
    assert_eq!(resp.headers.get("content-type").unwrap(), "application/json");
    let expected = ebay_deletion::challenge_response(
        "a8628072-3d33-45ee-9004-bee86830a22d",
        "local-dev-verification-token-0123456789abcdef",
        &url,
    );
    assert_eq!(body_json(&resp)["challengeResponse"], expected.as_str());
    let none = nex_local::events::http_v2("GET", "/webhooks/ebay/account-deletion", "", &[], b"", "r");
    assert_eq!(app.handle(none, "r").await.status_code, 400);
}

#[tokio::test]
async fn a_signed_notice_erases_that_ebay_users_buyer_data_for_every_merchant() {
    let h = Harness::new().await;
    let key = SigningKey::from_slice(&[5u8; 32]).unwrap();
    let ebay = ebay_stand_in(KID, &pem(&key)).await;
    let app = endpoint(&h, &ebay.uri()).await;

    // Two merchants sold to the same eBay user; a third user is someone else.
    let username = format!("buyer_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let hasher = SubjectHasher::new(&SecretString::from("local-dev-pepper-not-a-real-secret".to_owned()));
    let orders = DynamoOrders::new(h.ddb.clone(), table("OrdersTable"));
    let page: ebay::OrderPage = serde_json::from_str(&ebay_page(&username)).unwrap();
    let other: ebay::OrderPage = serde_json::from_str(&ebay_page("someone_else")).unwrap();
    let (m1, m2) = (format!("m1-{username}"), format!("m2-{username}"));
    for m in [&m1, &m2] {
        let n = vec![ebay::normalise(&page.orders[0]).unwrap(), ebay::normalise(&other.orders[0]).unwrap()];
        let mut n = n;
        n[1].order.order_id = "05-99999-99999".into();
        store_page(&orders, &hasher, m, n, Utc::now()).await.unwrap();
    }

    // Forged and tampered notices: 412, nothing opened.
    let body = notice(&username);
    let forger = SigningKey::from_slice(&[9u8; 32]).unwrap();
    assert_eq!(app.handle(post(&body, Some(&sign(&forger, KID, &body))), "r").await.status_code, 412);
    let tampered = body.replace(&username, "someone_else");
    assert_eq!(app.handle(post(&tampered, Some(&sign(&key, KID, &body))), "r").await.status_code, 412);
    assert_eq!(app.handle(post(&body, None), "r").await.status_code, 412);
    assert_eq!(app.handle(post(&body, Some(&sign(&key, "unknown-kid", &body))), "r").await.status_code, 412);
    assert_eq!(app.handle(post(&body, Some("not base64 json")), "r").await.status_code, 412);
    assert_eq!(h.depth(&h.data_requests_url).await, 0, "nothing opened by a refused notice");

    // The signed notice: 204, and an erasure for every merchant.
    let resp = app.handle(post(&body, Some(&sign(&key, KID, &body))), "r").await;
    assert_eq!(resp.status_code, 204);
    // eBay retries: the same notice opens the same request.
    assert_eq!(app.handle(post(&body, Some(&sign(&key, KID, &body))), "r").await.status_code, 204);
    let worker = h.stack_dsr_worker().await;
    let round = h.drain_requests(&worker).await;
    assert_eq!(round.failed, 0);
    for m in [&m1, &m2] {
        let pk = format!("merchant#{m}");
        let buyer = h.get(&table("OrdersTable"), &[("pk", &pk), ("sk", "buyer#ebay#05-00001-00001")]).await;
        assert!(buyer.is_none(), "the user's buyer data is deleted at {m}");
        let order = h.get(&table("OrdersTable"), &[("pk", &pk), ("sk", "order#ebay#05-00001-00001")]).await.unwrap();
        assert!(!order.contains_key("subject"), "the order is kept, unlinked from the user");
        assert!(order.contains_key("order"));
        let kept = h.get(&table("OrdersTable"), &[("pk", &pk), ("sk", "buyer#ebay#05-99999-99999")]).await;
        assert!(kept.is_some(), "another user's data is untouched");
    }
}

fn ebay_page(username: &str) -> String {
    serde_json::json!({"total": 1, "orders": [{
        "orderId": "05-00001-00001", "creationDate": "2026-11-30T10:00:00.000Z", "lastModifiedDate": "2026-11-30T11:00:00.000Z",
        "orderFulfillmentStatus": "NOT_STARTED", "orderPaymentStatus": "PAID",
        "buyer": {"username": username},
        "fulfillmentStartInstructions": [{"shippingStep": {"shipTo": {"fullName": "Jo Buyer",
            "contactAddress": {"addressLine1": "1 High St", "city": "Leeds", "postalCode": "LS1 1AA", "countryCode": "GB"}}}}],
        "lineItems": [{"lineItemId": "1", "quantity": 1}]
    }]})
    .to_string()
}

/// eBay's own SDK vector through the endpoint: its key served by the stand-in, its message accepted, its
/// tampered message refused.
#[cfg_attr(fixtures, tokio::test)]
#[allow(dead_code)]
async fn ebays_own_test_vector_is_accepted_and_its_tampered_message_refused() {
    let h = Harness::new().await;
    let dir = format!("{}/ebay/account_deletion", fixtures_dir());
    let read = |n: &str| std::fs::read_to_string(format!("{dir}/{n}")).unwrap();
    let case: serde_json::Value = serde_json::from_str(&read("signature_case.json")).unwrap();
    let key: serde_json::Value = serde_json::from_str(&read("public_key_response.json")).unwrap();
    let kid = case["decoded_header"]["kid"].as_str().unwrap();
    let ebay = ebay_stand_in(kid, key["key"].as_str().unwrap()).await;
    let app = endpoint(&h, &ebay.uri()).await;
    let signature = case["x_ebay_signature"].as_str().unwrap();
    let tampered = app.handle(post(&read("tampered_message.json"), Some(signature)), "r").await;
    assert_eq!(tampered.status_code, 412);
    assert_eq!(h.depth(&h.data_requests_url).await, 0);
    let resp = app.handle(post(&read("message.json"), Some(signature)), "r").await;
    assert_eq!(resp.status_code, 204);
    assert_eq!(h.depth(&h.data_requests_url).await, 1, "one erasure opened");
}

#[cfg(not(fixtures))]
#[test]
#[ignore = "eBay's own vector needs ../shared/fixtures"]
fn conformance_tests_skipped() {}

/// A merchant's own data request about an eBay buyer sees only the orders held for that merchant, though
/// the same buyer bought from another merchant too.
#[tokio::test]
async fn a_merchants_data_request_sees_only_its_own_orders_of_a_shared_buyer() {
    let h = Harness::new().await;
    let username = format!("shared_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let hasher = SubjectHasher::new(&SecretString::from(PEPPER.to_owned()));
    let orders = DynamoOrders::new(h.ddb.clone(), table("OrdersTable"));
    // An order id of this run's own: the merchants are the seeded ones, shared by every run.
    let own = ebay_page(&username).replace("05-00001-00001", &format!("05-{}", &username[7..17]));
    let page: ebay::OrderPage = serde_json::from_str(&own).unwrap();
    for m in ["merchant-demo-1", "merchant-demo-2"] {
        store_page(&orders, &hasher, m, vec![ebay::normalise(&page.orders[0]).unwrap()], Utc::now()).await.unwrap();
    }
    let api = h
        .function::<nex_shared::apps::merchant_api::MerchantApi>(
            "ConsentApiFunction",
            &[("DATA_REQUESTS_QUEUE_URL", &h.data_requests_url)],
            system(),
        )
        .await;
    let body = serde_json::json!({"kind": "export", "marketplace_buyer": format!("ebay:{username}")}).to_string();
    let headers = vec![("authorization".to_owned(), format!("Bearer {MERCHANT_KEY}"))];
    let open = nex_local::events::http_v2("POST", "/data-requests", "", &headers, body.as_bytes(), "r");
    let resp = api.handle(open, "r").await;
    assert_eq!(resp.status_code, 202, "{:?}", resp.body);
    let id = body_json(&resp)["id"].as_str().unwrap().to_owned();
    let worker = h.stack_dsr_worker().await;
    assert_eq!(h.drain_requests(&worker).await.failed, 0);
    let show = nex_local::events::http_v2("GET", &format!("/data-requests/{id}"), "", &headers, b"", "r");
    let shown = body_json(&api.handle(show, "r").await);
    assert_eq!(shown["result"]["items"], 2, "{shown}");
    assert_eq!(shown["result"]["by_kind"]["order_buyer"], 1, "{shown}");
    assert_eq!(shown["result"]["by_kind"]["marketplace_order"], 1, "{shown}");
}

/// Forged notices naming ever new key ids cost eBay at most five key calls a minute per container.
#[tokio::test]
async fn forged_notices_with_new_key_ids_cannot_spend_ebays_key_quota() {
    let h = Harness::new().await;
    let key = SigningKey::from_slice(&[6u8; 32]).unwrap();
    let ebay = ebay_stand_in(KID, &pem(&key)).await;
    let app = endpoint(&h, &ebay.uri()).await;
    let body = notice("anyone");
    let mut answers = Vec::new();
    for i in 0..8 {
        let kid = format!("forged-{i}");
        answers.push(app.handle(post(&body, Some(&sign(&key, &kid, &body))), "r").await.status_code);
    }
    assert_eq!(answers, [412, 412, 412, 412, 412, 503, 503, 503]);
    let asked = ebay.received_requests().await.unwrap();
    let key_calls = asked.iter().filter(|r| r.url.path().starts_with("/commerce/notification/v1/public_key/")).count();
    assert_eq!(key_calls, 5);
    assert_eq!(h.depth(&h.data_requests_url).await, 0);
}
