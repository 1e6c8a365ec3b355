//! Stand-ins for the marketplaces in the local stack (there is no network here): Amazon's LWA and Orders
//! API 2026-01-01 under `/_local/amazon`, eBay's OAuth, Fulfillment and notification keys under
//! `/_local/ebay`, bol's login and Retailer API v10 under `/_local/bol`. The local stack points the
//! template's base-URL parameters at them.
//!
//! They answer in the platforms' documented shapes with this repository's own demo orders: stable within
//! a day, so a re-poll finds nothing new. Amazon pages (two pages, the token echoed, `lastUpdatedBefore`
//! echoed), bol lists changed orders and serves each one. A call without its token answers 401.

use chrono::{DateTime, Duration, Utc};

/// A stand-in's answer.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

fn json(status: u16, v: serde_json::Value) -> Answer {
    Answer { status, content_type: "application/json", body: v.to_string() }
}

fn bol(status: u16, v: serde_json::Value) -> Answer {
    Answer { status, content_type: "application/vnd.retailer.v10+json", body: v.to_string() }
}

/// The demo orders' times: the start of today (UTC), so they stay the same all day.
fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now)
}

fn query(q: &str) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn has(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
}

/// Answers a request to a stand-in, if `path` is one's (`/_local/amazon/...`, `/_local/ebay/...`,
/// `/_local/bol/...`).
pub fn answer(method: &str, path: &str, q: &str, headers: &[(String, String)], now: DateTime<Utc>) -> Option<Answer> {
    let day = day_start(now);
    let t = |h: i64| (day - Duration::hours(h)).to_rfc3339();
    if let Some(rest) = path.strip_prefix("/_local/amazon") {
        return Some(match (method, rest) {
            ("POST", "/auth/o2/token") => json(
                200,
                serde_json::json!({"access_token": "Atza|local-demo", "refresh_token": "Atzr|local-demo", "token_type": "bearer", "expires_in": 3600}),
            ),
            ("GET", "/orders/2026-01-01/orders") if !has(headers, "x-amz-access-token") => json(
                403,
                serde_json::json!({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied."}]}),
            ),
            ("GET", "/orders/2026-01-01/orders") => {
                let q = query(q);
                let order = |id: &str, status: &str, hours: i64| {
                    serde_json::json!({
                        "orderId": id, "createdTime": t(hours + 1), "lastUpdatedTime": t(hours),
                        "salesChannel": {"channelName": "AMAZON", "marketplaceId": "A1PA6795UKMFR9"},
                        "buyer": {"buyerName": "Demo Buyer", "buyerEmail": format!("{id}@marketplace.amazon.de")},
                        "recipient": {"deliveryAddress": {"name": "Demo Buyer", "addressLine1": "Demostr. 1", "city": "Berlin", "postalCode": "10115", "countryCode": "DE"}},
                        "proceeds": {"grandTotal": {"amount": "24.90", "currencyCode": "EUR"}},
                        "fulfillment": {"fulfillmentStatus": status, "fulfilledBy": "MERCHANT"},
                        "orderItems": [{"orderItemId": "1", "quantityOrdered": 1,
                            "product": {"asin": "B0DEMO0001", "sellerSku": "DEMO-1", "title": "Demo mug", "price": {"unitPrice": {"amount": "24.90", "currencyCode": "EUR"}}}}],
                        "packages": if status == "SHIPPED" { serde_json::json!([{"shipTime": t(hours)}]) } else { serde_json::json!([]) }
                    })
                };
                let before = q.get("lastUpdatedBefore").cloned().unwrap_or_else(|| now.to_rfc3339());
                match q.get("paginationToken").map(String::as_str) {
                    None => json(
                        200,
                        serde_json::json!({
                            "orders": [order("303-0000001-0000001", "UNSHIPPED", 3), order("303-0000002-0000002", "SHIPPED", 2)],
                            "pagination": {"nextToken": "local-page-2"}, "lastUpdatedBefore": before
                        }),
                    ),
                    Some("local-page-2") => json(
                        200,
                        serde_json::json!({
                            "orders": [order("303-0000003-0000003", "UNSHIPPED", 1)], "lastUpdatedBefore": before
                        }),
                    ),
                    Some(_) => {
                        json(400, serde_json::json!({"errors": [{"code": "InvalidInput", "message": "Invalid Input"}]}))
                    }
                }
            }
            _ => json(404, serde_json::json!({"errors": [{"code": "NotFound"}]})),
        });
    }
    if let Some(rest) = path.strip_prefix("/_local/ebay") {
        return Some(match (method, rest) {
            ("POST", "/identity/v1/oauth2/token") => json(
                200,
                serde_json::json!({"access_token": "v^1.1#local-demo", "refresh_token": "v^1.1#local-refresh", "expires_in": 7200, "token_type": "User Access Token"}),
            ),
            ("GET", "/commerce/identity/v1/user/") => json(
                200,
                serde_json::json!({"userId": "local-demo-user", "username": "demo_ebay_seller", "accountType": "BUSINESS"}),
            ),
            ("GET", "/sell/fulfillment/v1/order") if !has(headers, "authorization") => {
                json(401, serde_json::json!({"errors": [{"errorId": 1001}]}))
            }
            ("GET", "/sell/fulfillment/v1/order") => {
                let order = |id: &str, status: &str, user: &str, hours: i64| {
                    serde_json::json!({
                        "orderId": id, "creationDate": t(hours + 1), "lastModifiedDate": t(hours),
                        "orderFulfillmentStatus": status, "orderPaymentStatus": "PAID",
                        "buyer": {"username": user},
                        "pricingSummary": {"total": {"value": "12.50", "currency": "GBP"}},
                        "fulfillmentStartInstructions": [{"shippingStep": {"shipTo": {"fullName": "Demo Buyer",
                            "contactAddress": {"addressLine1": "1 Demo St", "city": "Leeds", "postalCode": "LS1 1AA", "countryCode": "GB"}}}}],
                        "lineItems": [{"lineItemId": "1", "legacyItemId": "110000000001", "sku": "DEMO-2", "title": "Demo book", "quantity": 1,
                            "total": {"value": "12.50", "currency": "GBP"}, "listingMarketplaceId": "EBAY_GB"}]
                    })
                };
                json(
                    200,
                    serde_json::json!({
                        "href": "local", "total": 2, "limit": 200, "offset": 0,
                        "orders": [order("05-00000-00001", "NOT_STARTED", "demo_buyer_one", 2), order("05-00000-00002", "FULFILLED", "demo_buyer_two", 1)]
                    }),
                )
            }
            _ => json(404, serde_json::json!({"errors": [{"errorId": 404}]})),
        });
    }
    if let Some(rest) = path.strip_prefix("/_local/bol") {
        let order = |id: &str, shipped: u32, hours: i64| {
            serde_json::json!({
                "orderId": id, "pickupPoint": false, "orderPlacedDateTime": t(hours + 1),
                "shipmentDetails": {"firstName": "Demo", "surname": "Koper", "streetName": "Demostraat", "houseNumber": "1",
                    "zipCode": "1234AB", "city": "UTRECHT", "countryCode": "NL", "email": format!("{id}@verkopen.bol.com")},
                "orderItems": [{"orderItemId": format!("{id}-1"), "fulfilment": {"method": "FBR"}, "offer": {"reference": "DEMO-3"},
                    "product": {"ean": "8710000000001", "title": "Demo lamp"}, "quantity": 1, "quantityShipped": shipped, "quantityCancelled": 0,
                    "unitPrice": 19.99, "totalPrice": 19.99, "latestChangedDateTime": t(hours)}]
            })
        };
        return Some(match (method, rest) {
            ("POST", "/token") => json(
                200,
                serde_json::json!({"access_token": "eyJ.local-demo", "expires_in": 299, "token_type": "Bearer"}),
            ),
            ("GET", _) if !has(headers, "authorization") => {
                bol(401, serde_json::json!({"title": "Unauthorized", "status": 401}))
            }
            ("GET", "/retailer/orders") => {
                let reduced = |id: &str, hours: i64| {
                    serde_json::json!({"orderId": id, "orderPlacedDateTime": t(hours + 1),
                        "orderItems": [{"orderItemId": format!("{id}-1"), "quantity": 1, "latestChangedDateTime": t(hours)}]})
                };
                bol(200, serde_json::json!({"orders": [reduced("B100000001", 2), reduced("B100000002", 1)]}))
            }
            ("GET", p) => match p.strip_prefix("/retailer/orders/") {
                Some("B100000001") => bol(200, order("B100000001", 0, 2)),
                Some("B100000002") => bol(200, order("B100000002", 1, 1)),
                _ => bol(
                    404,
                    serde_json::json!({"type": "https://api.bol.com/problems", "title": "Not Found", "status": 404}),
                ),
            },
            _ => bol(404, serde_json::json!({"title": "Not Found", "status": 404})),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use nex_shared::domain::orders::{amazon, bol, ebay};

    fn auth() -> Vec<(String, String)> {
        vec![("authorization".into(), "Bearer x".into()), ("x-amz-access-token".into(), "x".into())]
    }

    #[test]
    fn every_stand_in_answers_what_the_suites_normalisers_read() {
        let now = Utc::now();
        let a = answer(
            "GET",
            "/_local/amazon/orders/2026-01-01/orders",
            "lastUpdatedBefore=2026-12-01T00%3A00%3A00Z",
            &auth(),
            now,
        )
        .unwrap();
        let page: amazon::SearchOrders = serde_json::from_str(&a.body).unwrap();
        assert_eq!(page.next_token(), Some("local-page-2"));
        assert!(page.orders.iter().all(|o| amazon::normalise(o).is_ok()));
        let e = answer("GET", "/_local/ebay/sell/fulfillment/v1/order", "", &auth(), now).unwrap();
        let page: ebay::OrderPage = serde_json::from_str(&e.body).unwrap();
        assert!(page.orders.iter().all(|o| ebay::normalise(o).is_ok()));
        let b = answer("GET", "/_local/bol/retailer/orders/B100000002", "", &auth(), now).unwrap();
        assert_eq!(
            bol::normalise(&serde_json::from_str(&b.body).unwrap()).unwrap().order.status,
            nex_shared::domain::orders::Status::Shipped
        );
        assert_eq!(answer("GET", "/_local/bol/retailer/orders", "", &[], now).unwrap().status, 401);
        assert!(answer("GET", "/webhooks/stripe", "", &[], now).is_none());
    }
}
