use nex_shared::domain::envelope::Envelope;
use nex_shared::domain::subject::IdentifierKind;
use nex_shared::usecases::opt_in::OptIn;
use nex_tests::*;

fn post(body: &str, key: Option<&str>) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(k) = key {
        headers.push(("authorization".to_owned(), format!("Bearer {k}")));
    }
    nex_local::events::http_v2("POST", "/consent/opt-ins", "", &headers, body.as_bytes(), "req-optin")
}

async fn opted_in(h: &Harness, hasher: &nex_shared::domain::subject::SubjectHasher, phone: &str) -> Vec<String> {
    let subject = hasher.hash(IdentifierKind::Phone, phone).unwrap();
    let item = h
        .ddb
        .get_item()
        .table_name(table("MessagingTable"))
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("subject#{subject}")),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("consent-state".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item;
    item.and_then(|i| i.get("opted_in").and_then(|v| v.as_ss().ok()).cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_merchant_records_an_opt_in_for_itself_with_its_api_key_and_nobody_else_can() {
    let h = Harness::new().await;
    let api = h.consent_api().await;
    let phone = format!("+3164{}", &uuid::Uuid::new_v4().as_u128().to_string()[..7]);
    // The body names another merchant: ignored, the key decides.
    let body =
        serde_json::json!({"id": "o-1", "merchant": "merchant-demo-2", "phone": phone, "source": "checkout_page"})
            .to_string();
    assert_eq!(api.handle(post(&body, None), "r").await.status_code, 401);
    assert_eq!(api.handle(post(&body, Some("not-a-key")), "r").await.status_code, 401);
    assert_eq!(opted_in(&h, &api.hasher, &phone).await, Vec::<String>::new());

    let resp = api.handle(post(&body, Some(MERCHANT_KEY)), "r").await;
    assert_eq!(
        (resp.status_code, body_json(&resp)["identifiers"].as_u64()),
        (201, Some(1))
    );
    assert_eq!(opted_in(&h, &api.hasher, &phone).await, ["merchant-demo-1"]);

    let no_id = serde_json::json!({"id": "o-2", "source": "checkout_page"}).to_string();
    let resp = api.handle(post(&no_id, Some(MERCHANT_KEY)), "r").await;
    assert_eq!(
        (resp.status_code, body_json(&resp)["reason"].as_str()),
        (422, Some("no_identifier"))
    );
    assert_eq!(
        api.handle(post("{not json", Some(MERCHANT_KEY)), "r").await.status_code,
        400
    );
}

#[tokio::test]
async fn the_storefronts_opt_in_message_is_recorded_by_the_messaging_worker() {
    let h = Harness::new().await;
    let worker = h.messaging_worker().await;
    let phone = format!("+3163{}", &uuid::Uuid::new_v4().as_u128().to_string()[..7]);
    let opt_in = OptIn {
        id: "store-1".into(),
        merchant: Some("merchant-demo-2".into()),
        phone: Some(phone.clone()),
        bsuid: None,
        source: "account_settings".into(),
        at: None,
    };
    let body = Envelope::new("store-1".into(), chrono::Utc::now(), "t".into(), opt_in).encode();
    h.sqs
        .send_message()
        .queue_url(&h.messaging_url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(h.drain_messaging(&worker).await.failed, 0);
    assert_eq!(opted_in(&h, &worker.hasher, &phone).await, ["merchant-demo-2"]);
}
