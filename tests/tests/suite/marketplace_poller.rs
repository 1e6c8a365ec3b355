//! The marketplace poller and scheduler, built from the template, against the emulator and local stand-ins
//! for Amazon (LWA and the Orders API 2026-01-01), eBay (OAuth and Fulfillment) and bol (login and the
//! Retailer API v10), including their errors and rate limits.

use chrono::{DateTime, Duration, Utc};
use nex_shared::adapters::dynamo_connections::{DynamoConnections, SecretsCredentials};
use nex_shared::apps::orders::{MarketplacePoller, MarketplaceScheduler};
use nex_shared::domain::orders::connection::{Connection, ConnectionStatus};
use nex_shared::domain::orders::Marketplace;
use nex_shared::ports::{ConnectionStore, CredentialStore, Credentials};
use nex_shared::usecases::poll::PollOutcome;
use nex_tests::*;
use secrecy::{ExposeSecret, SecretString};
use wiremock::matchers::{body_string_contains, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn fresh() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

struct Stack {
    h: Harness,
    connections: DynamoConnections,
    credentials: SecretsCredentials,
}

async fn stack() -> Stack {
    let h = Harness::new().await;
    let connections = DynamoConnections::new(h.ddb.clone(), table("ConnectionsTable"));
    let credentials = SecretsCredentials::new(h.aws.secrets_manager());
    Stack { h, connections, credentials }
}

impl Stack {
    /// A new active connection of `marketplace` with `credentials`, created `age` ago.
    async fn connect(
        &self, marketplace: Marketplace, credentials: Credentials, watermark_age: Option<Duration>,
    ) -> Connection {
        let id = fresh();
        let secret_id = self.credentials.create(&format!("nex-local/connections/{id}"), &credentials).await.unwrap();
        let c = Connection::new(
            id.clone(),
            format!("m-{id}"),
            marketplace,
            "A3SELLER".into(),
            vec!["A1PA6795UKMFR9".into()],
            secret_id,
            Utc::now() - Duration::hours(1),
        );
        self.connections.create(&c).await.unwrap();
        if let Some(age) = watermark_age {
            let lease = fresh();
            let mut leased = self
                .connections
                .lease(&id, &lease, Utc::now(), Utc::now() + Duration::minutes(1))
                .await
                .unwrap()
                .unwrap();
            leased.watermark = Some(Utc::now() - age);
            assert!(self.connections.save(&leased, &lease, true).await.unwrap());
        }
        c
    }

    async fn poller(&self, platform: &str) -> MarketplacePoller {
        self.h
            .function(
                "MarketplacePollerFunction",
                &[
                    ("AMAZON_LWA_URL", platform),
                    ("AMAZON_SP_API_URL", platform),
                    ("EBAY_AUTH_URL", platform),
                    ("EBAY_API_URL", platform),
                    ("BOL_LOGIN_URL", platform),
                    ("BOL_API_URL", platform),
                ],
                system(),
            )
            .await
    }
}

fn refresh(token: &str) -> Credentials {
    Credentials { refresh_token: Some(SecretString::from(token.to_owned())), ..Credentials::default() }
}

fn deadline() -> DateTime<Utc> {
    Utc::now() + Duration::minutes(2)
}

/// An Amazon order in the 2026-01-01 shape, written for these tests.
fn amazon_order(id: &str, updated: &str) -> serde_json::Value {
    serde_json::json!({
        "orderId": id, "createdTime": "2026-11-30T10:00:00Z", "lastUpdatedTime": updated,
        "salesChannel": {"marketplaceId": "A1PA6795UKMFR9"},
        "buyer": {"buyerName": "Erika Muster", "buyerEmail": format!("{id}@marketplace.amazon.de")},
        "recipient": {"deliveryAddress": {"name": "Erika Muster", "addressLine1": "Hauptstr. 1", "city": "Berlin", "countryCode": "DE"}},
        "proceeds": {"grandTotal": {"amount": "19.99", "currencyCode": "EUR"}},
        "fulfillment": {"fulfillmentStatus": "UNSHIPPED", "fulfilledBy": "MERCHANT"},
        "orderItems": [{"orderItemId": "1", "quantityOrdered": 1, "product": {"asin": "B000000001", "sellerSku": "S-1"}}]
    })
}

async fn lwa(server: &MockServer, times: u64) {
    Mock::given(method("POST"))
        .and(path("/auth/o2/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=Atzr%7Cseller-1"))
        .and(body_string_contains("client_id=amzn1.application-oa2-client.local-dev"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "Atza|access-1", "token_type": "bearer", "expires_in": 3600, "refresh_token": "Atzr|seller-1"
        })))
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn amazon_pages_are_followed_with_unchanged_parameters_and_a_repoll_changes_nothing() {
    let s = stack().await;
    let server = MockServer::start().await;
    lwa(&server, 1).await;
    let first_page = serde_json::json!({
        "orders": [amazon_order("302-0000001-0000001", "2026-11-30T11:00:00Z")],
        "pagination": {"nextToken": "page-2-token"}, "lastUpdatedBefore": "2026-12-01T11:58:00Z"
    });
    let second_page = serde_json::json!({
        "orders": [amazon_order("302-0000002-0000002", "2026-11-30T12:00:00Z")], "lastUpdatedBefore": "2026-12-01T11:58:00Z"
    });
    Mock::given(method("GET"))
        .and(path("/orders/2026-01-01/orders"))
        .and(header("x-amz-access-token", "Atza|access-1"))
        .and(query_param("includedData", "BUYER,RECIPIENT,FULFILLMENT,PACKAGES,PROCEEDS"))
        .and(query_param("marketplaceIds", "A1PA6795UKMFR9"))
        .and(query_param_is_missing("paginationToken"))
        .and(query_param_is_missing("createdAfter"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first_page))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/orders/2026-01-01/orders"))
        .and(query_param("paginationToken", "page-2-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(second_page))
        .mount(&server)
        .await;
    let c = s.connect(Marketplace::Amazon, refresh("Atzr|seller-1"), None).await;
    let poller = s.poller(&server.uri()).await;
    let out = poller.poll(&c.id, deadline()).await.unwrap();
    assert!(matches!(out, PollOutcome::Done { pages: 2, result } if result.new == 2), "{out:?}");

    // Every page of the window was asked with the same window; its end is two minutes before now.
    let asked: Vec<Request> =
        server.received_requests().await.unwrap().into_iter().filter(|r| r.method.as_str() == "GET").collect();
    let window = |r: &Request| {
        let q: std::collections::HashMap<_, _> = r.url.query_pairs().into_owned().collect();
        (q["lastUpdatedAfter"].clone(), q["lastUpdatedBefore"].clone())
    };
    assert_eq!(window(&asked[0]), window(&asked[1]));
    let before: DateTime<Utc> = window(&asked[0]).1.parse().unwrap();
    assert!(before <= Utc::now() - Duration::minutes(2));

    let stored = s.connections.get(&c.id).await.unwrap().unwrap();
    assert_eq!(stored.watermark.unwrap().to_rfc3339(), "2026-12-01T11:58:00+00:00", "the echoed lastUpdatedBefore");
    assert_eq!((stored.cursor, stored.last_error), (None, None));
    let kept = s.credentials.load(&c.secret_id).await.unwrap();
    assert_eq!(kept.access_token.unwrap().expose_secret(), "Atza|access-1", "the token is kept for the next job");
    let pk = format!("merchant#{}", c.merchant);
    let order =
        s.h.get(&table("OrdersTable"), &[("pk", &pk), ("sk", "order#amazon#302-0000001-0000001")]).await.unwrap();
    assert!(!order["order"].as_s().unwrap().contains("Erika"));
    assert!(s.h.get(&table("OrdersTable"), &[("pk", &pk), ("sk", "buyer#amazon#302-0000001-0000001")]).await.is_some());

    // A re-poll of the same window (the watermark put back): no token call, no order written.
    let lease = fresh();
    let mut again =
        s.connections.lease(&c.id, &lease, Utc::now(), Utc::now() + Duration::minutes(1)).await.unwrap().unwrap();
    again.watermark = None;
    s.connections.save(&again, &lease, true).await.unwrap();
    let out = poller.poll(&c.id, deadline()).await.unwrap();
    assert!(matches!(out, PollOutcome::Done { result, .. } if result.unchanged == 2 && result.new == 0), "{out:?}");
}

#[tokio::test]
async fn a_429_with_and_without_retry_after_holds_the_connection_back() {
    let s = stack().await;
    let server = MockServer::start().await;
    lwa(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/orders/2026-01-01/orders"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(serde_json::json!({"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}]})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/orders/2026-01-01/orders"))
        .respond_with(
            ResponseTemplate::new(429).set_body_json(serde_json::json!({"errors": [{"code": "QuotaExceeded"}]})),
        )
        .mount(&server)
        .await;
    let c = s.connect(Marketplace::Amazon, refresh("Atzr|seller-1"), None).await;
    let poller = s.poller(&server.uri()).await;
    let t = Utc::now();
    assert!(matches!(poller.poll(&c.id, deadline()).await.unwrap(), PollOutcome::Stopped { why: "rate_limited", .. }));
    let stored = s.connections.get(&c.id).await.unwrap().unwrap();
    let wait = stored.throttle_until.unwrap() - t;
    assert!(wait >= Duration::seconds(29) && wait <= Duration::seconds(32), "Retry-After: 30 -> {wait}");
    assert_eq!(stored.last_error.as_deref(), Some("rate_limited"));
    // Throttled: the next job calls nothing.
    let calls = server.received_requests().await.unwrap().len();
    assert_eq!(poller.poll(&c.id, deadline()).await.unwrap(), PollOutcome::Skipped("throttled"));
    assert_eq!(server.received_requests().await.unwrap().len(), calls);

    // Without Retry-After: a jittered backoff, longer after each failure.
    let lease = fresh();
    let mut due =
        s.connections.lease(&c.id, &lease, Utc::now(), Utc::now() + Duration::minutes(1)).await.unwrap().unwrap();
    due.throttle_until = None;
    s.connections.save(&due, &lease, true).await.unwrap();
    assert!(matches!(poller.poll(&c.id, deadline()).await.unwrap(), PollOutcome::Stopped { why: "rate_limited", .. }));
    let stored = s.connections.get(&c.id).await.unwrap().unwrap();
    let wait = stored.throttle_until.unwrap() - Utc::now();
    assert!(wait >= Duration::seconds(25) && wait <= Duration::seconds(61), "second failure: 30-60 s, got {wait}");
    assert_eq!(stored.failures, 2);
}

#[tokio::test]
async fn a_refused_refresh_token_marks_the_connection_and_the_scheduler_stops_queueing_it() {
    let s = stack().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/o2/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant", "error_description": "The request has an invalid grant parameter : refresh_token"
        })))
        .mount(&server)
        .await;
    let c = s.connect(Marketplace::Amazon, refresh("Atzr|revoked"), None).await;
    let poller = s.poller(&server.uri()).await;
    assert_eq!(poller.poll(&c.id, deadline()).await.unwrap(), PollOutcome::NeedsReauthorization);
    let stored = s.connections.get(&c.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ConnectionStatus::NeedsReauthorization);
    let item = s.h.get(&table("ConnectionsTable"), &[("pk", &format!("conn#{}", c.id)), ("sk", "conn")]).await.unwrap();
    assert!(!item.contains_key("poll_shard"), "out of the pollable index");
    assert!(!item.contains_key("lease"), "the lease is given back");
    // Nothing is asked of Amazon any more.
    assert_eq!(poller.poll(&c.id, deadline()).await.unwrap(), PollOutcome::Skipped("not_active"));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn ebay_is_asked_by_last_modified_date_only_with_pages_of_two_hundred() {
    let s = stack().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/identity/v1/oauth2/token"))
        .and(header("authorization", "Basic TG9jYWxEZXYtTmV4LVBSRC0wMDAwMDAwMDAtMDAwMDAwMDA6bG9jYWwtZGV2LWViYXktc2VjcmV0LW5vdC1hLXJlYWwtc2VjcmV0"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("sell.fulfillment.readonly"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "v^1.1#e", "expires_in": 7200, "token_type": "User Access Token"})))
        .expect(1)
        .mount(&server)
        .await;
    let order = |id: &str| {
        serde_json::json!({
            "orderId": id, "creationDate": "2026-11-30T10:00:00.000Z", "lastModifiedDate": "2026-11-30T11:00:00.000Z",
            "orderFulfillmentStatus": "NOT_STARTED", "orderPaymentStatus": "PAID",
            "buyer": {"username": "buyer_one"},
            "pricingSummary": {"total": {"value": "12.50", "currency": "GBP"}},
            "fulfillmentStartInstructions": [{"shippingStep": {"shipTo": {"fullName": "Jo Buyer",
                "contactAddress": {"addressLine1": "1 High St", "city": "Leeds", "postalCode": "LS1 1AA", "countryCode": "GB"}}}}],
            "lineItems": [{"lineItemId": "1", "legacyItemId": "110001", "quantity": 1, "total": {"value": "12.50", "currency": "GBP"}}]
        })
    };
    Mock::given(method("GET"))
        .and(path("/sell/fulfillment/v1/order"))
        .and(header("authorization", "Bearer v^1.1#e"))
        .and(query_param("limit", "200"))
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "href": "x", "total": 2, "limit": 200, "offset": 0, "orders": [order("05-00001-00001"), order("05-00001-00002")]
        })))
        .mount(&server)
        .await;
    let c = s.connect(Marketplace::Ebay, refresh("v^1.1#refresh"), None).await;
    let poller = s.poller(&server.uri()).await;
    let out = poller.poll(&c.id, deadline()).await.unwrap();
    assert!(matches!(out, PollOutcome::Done { result, .. } if result.new == 2), "{out:?}");
    let asked = server.received_requests().await.unwrap();
    let get = asked.iter().find(|r| r.method.as_str() == "GET").unwrap();
    let raw = get.url.query().unwrap();
    assert!(raw.contains("filter=lastmodifieddate%3A%5B"), "the filter's brackets are percent-encoded: {raw}");
    assert!(!raw.contains("creationdate"), "never both date filters: eBay would use creationdate alone");
}

#[tokio::test]
async fn bol_details_are_fetched_only_for_changed_orders_and_a_long_gap_falls_back_to_the_day() {
    let s = stack().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(query_param("grant_type", "client_credentials"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "eyJ.bol", "expires_in": 299, "token_type": "Bearer"}),
            ),
        )
        .mount(&server)
        .await;
    let reduced = serde_json::json!({"orders": [
        {"orderId": "B1000000001", "orderPlacedDateTime": "2026-11-30T10:00:00+01:00",
         "orderItems": [{"orderItemId": "1", "quantity": 1, "latestChangedDateTime": "2026-11-30T11:00:00+01:00"}]}
    ]});
    Mock::given(method("GET"))
        .and(path("/retailer/orders"))
        .and(header("accept", "application/vnd.retailer.v10+json"))
        .and(query_param("status", "ALL"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/vnd.retailer.v10+json")
                .insert_header("x-ratelimit-limit", "7")
                .insert_header("x-ratelimit-remaining", "6")
                .set_body_json(reduced),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/retailer/orders/B1000000001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "orderId": "B1000000001", "orderPlacedDateTime": "2026-11-30T10:00:00+01:00",
            "shipmentDetails": {"firstName": "Piet", "surname": "Jansen", "zipCode": "1234AB", "city": "UTRECHT", "countryCode": "NL"},
            "orderItems": [{"orderItemId": "1", "fulfilment": {"method": "FBR"}, "quantity": 1, "quantityShipped": 0,
                "unitPrice": 19.99, "totalPrice": 19.99, "latestChangedDateTime": "2026-11-30T11:00:00+01:00"}]
        })))
        // Once for the first connection's first poll, once for the second connection (another merchant).
        .expect(2)
        .mount(&server)
        .await;
    let creds = Credentials {
        client_id: Some("bol-client".into()),
        client_secret: Some(SecretString::from("bol-secret".to_owned())),
        ..Credentials::default()
    };
    // Polled 10 minutes ago: the interval is asked for.
    let c = s.connect(Marketplace::Bol, creds.clone(), Some(Duration::minutes(10))).await;
    let poller = s.poller(&server.uri()).await;
    assert!(
        matches!(poller.poll(&c.id, deadline()).await.unwrap(), PollOutcome::Done { result, .. } if result.new == 1)
    );
    // Again: the list says nothing changed, so no detail is fetched.
    let lease = fresh();
    let mut back =
        s.connections.lease(&c.id, &lease, Utc::now(), Utc::now() + Duration::minutes(1)).await.unwrap().unwrap();
    back.watermark = Some(Utc::now() - Duration::minutes(10));
    back.bucket = None;
    s.connections.save(&back, &lease, true).await.unwrap();
    assert!(
        matches!(poller.poll(&c.id, deadline()).await.unwrap(), PollOutcome::Done { result, .. } if result.new == 0)
    );
    let lists: Vec<Request> =
        server.received_requests().await.unwrap().into_iter().filter(|r| r.url.path() == "/retailer/orders").collect();
    assert!(
        lists.iter().all(|r| r.url.query().unwrap().contains("change-interval-minute=")),
        "short gaps use the interval"
    );

    // Not polled for three hours: the day fallback.
    let other = s.connect(Marketplace::Bol, creds, Some(Duration::hours(3))).await;
    poller.poll(&other.id, deadline()).await.unwrap();
    let last = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/retailer/orders")
        .last()
        .unwrap();
    let q = last.url.query().unwrap().to_owned();
    assert!(q.contains("latest-change-date=") && !q.contains("change-interval-minute"), "{q}");
}

#[tokio::test]
async fn the_scheduler_queues_one_job_per_active_connection_from_the_index() {
    let s = stack().await;
    let before: Vec<String> = {
        let (mut all, mut cursor) = (vec![], None::<String>);
        for shard in 0..nex_shared::domain::orders::connection::POLL_SHARDS {
            loop {
                let (ids, next) = s.connections.pollable(shard, cursor.as_deref()).await.unwrap();
                all.extend(ids);
                match next {
                    Some(n) => cursor = Some(n),
                    None => {
                        cursor = None;
                        break;
                    }
                }
            }
        }
        all
    };
    let mut mine = vec![];
    for _ in 0..12 {
        mine.push(s.connect(Marketplace::Bol, Credentials::default(), None).await.id);
    }
    let paused = s.connect(Marketplace::Bol, Credentials::default(), None).await;
    s.h.ddb
        .update_item()
        .table_name(table("ConnectionsTable"))
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("conn#{}", paused.id)))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("conn".into()))
        .update_expression("SET #s = :p REMOVE poll_shard")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":p", aws_sdk_dynamodb::types::AttributeValue::S("paused".into()))
        .send()
        .await
        .unwrap();
    let queue = s.h.data_requests_url.clone();
    let scheduler: MarketplaceScheduler =
        s.h.function("MarketplaceSchedulerFunction", &[("POLL_QUEUE_URL", &queue)], system()).await;
    let out = nex_shared::function::ScheduleFunction::schedule(&scheduler, serde_json::json!({}), &invocation("t", 60))
        .await
        .unwrap();
    // Other tests add connections meanwhile: at least these.
    assert!(out["queued"].as_u64().unwrap() as usize >= before.len() + 12);
    let bodies = s.h.take(&queue).await;
    let queued: Vec<String> = bodies
        .iter()
        .map(|b| {
            nex_shared::domain::envelope::Envelope::<nex_shared::domain::messages::PollJob>::decode(b)
                .unwrap()
                .payload
                .connection
        })
        .collect();
    for id in &mine {
        assert_eq!(queued.iter().filter(|q| *q == id).count(), 1, "each active connection once");
    }
    assert!(!queued.contains(&paused.id), "a paused connection is not polled");
}

#[tokio::test]
async fn an_order_in_an_undocumented_shape_is_skipped_and_holds_up_nothing() {
    let s = stack().await;
    let server = MockServer::start().await;
    lwa(&server, 1).await;
    let mut broken = amazon_order("302-0000009-0000001", "2026-11-30T11:00:00Z");
    broken["orderItems"][0]["quantityOrdered"] = serde_json::json!(-1.5);
    Mock::given(method("GET"))
        .and(path("/orders/2026-01-01/orders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "orders": [broken, amazon_order("302-0000009-0000002", "2026-11-30T11:00:00Z"), {"orderId": "x#y"}],
            "lastUpdatedBefore": "2026-12-01T11:58:00Z"
        })))
        .mount(&server)
        .await;
    let c = s.connect(Marketplace::Amazon, refresh("Atzr|seller-1"), None).await;
    let poller = s.poller(&server.uri()).await;
    let out = poller.poll(&c.id, deadline()).await.unwrap();
    assert!(matches!(out, PollOutcome::Done { result, .. } if result.new == 1), "{out:?}");
    let stored = s.connections.get(&c.id).await.unwrap().unwrap();
    assert!(stored.watermark.is_some() && stored.last_error.is_none(), "the window is in");
}
