//! Marketplace connections through the merchant API, built from the template, against the emulator and
//! stand-ins for bol's login and Amazon's LWA: every route scoped to the key's merchant, consent states
//! single-use, expiring and bound to their merchant and marketplace.

use nex_shared::adapters::dynamo_connections::SecretsCredentials;
use nex_shared::apps::merchant_api::MerchantApi;
use nex_shared::ports::CredentialStore;
use nex_tests::*;
use secrecy::ExposeSecret;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn call(
    method: &str, path: &str, query: &str, body: &str, key: Option<&str>,
) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(k) = key {
        headers.push(("authorization".to_owned(), format!("Bearer {k}")));
    }
    nex_local::events::http_v2(method, path, query, &headers, body.as_bytes(), "req-conn")
}

async fn api(h: &Harness, platform: &str) -> MerchantApi {
    h.function(
        "ConsentApiFunction",
        &[("AMAZON_LWA_URL", platform), ("EBAY_AUTH_URL", platform), ("BOL_LOGIN_URL", platform)],
        system(),
    )
    .await
}

async fn bol_login(server: &MockServer, ok: bool) {
    let answer = if ok {
        ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"access_token": "eyJ.bol", "expires_in": 299, "token_type": "Bearer"}))
    } else {
        ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": "invalid_client"}))
    };
    Mock::given(method("POST")).and(path("/token")).respond_with(answer).mount(server).await;
}

#[tokio::test]
async fn a_merchant_sees_and_changes_only_its_own_connections() {
    let h = Harness::new().await;
    let server = MockServer::start().await;
    bol_login(&server, true).await;
    let api = api(&h, &server.uri()).await;
    let client_id = format!("bol-{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::json!({"marketplace": "bol", "client_id": client_id, "client_secret": "s3cr3t"}).to_string();
    assert_eq!(api.handle(call("POST", "/connections", "", &body, None), "r").await.status_code, 401);
    let resp = api.handle(call("POST", "/connections", "", &body, Some(MERCHANT_KEY)), "r").await;
    assert_eq!(resp.status_code, 201, "{:?}", resp.body);
    let id = body_json(&resp)["id"].as_str().unwrap().to_owned();

    // Listed for its merchant, with its health and without any secret.
    let list = api.handle(call("GET", "/connections", "", "", Some(MERCHANT_KEY)), "r").await;
    let shown = body_json(&list);
    let mine = shown["connections"].as_array().unwrap().iter().find(|c| c["id"] == id.as_str()).unwrap().clone();
    assert_eq!((mine["marketplace"].as_str(), mine["status"].as_str()), (Some("bol"), Some("active")));
    assert!(!shown.to_string().contains("s3cr3t") && !shown.to_string().contains("secret"), "{shown}");
    // The other merchant neither sees nor touches it.
    let theirs = body_json(&api.handle(call("GET", "/connections", "", "", Some(OTHER_MERCHANT_KEY)), "r").await);
    assert!(!theirs.to_string().contains(&id));
    for (m, p) in [
        ("POST", format!("/connections/{id}/pause")),
        ("POST", format!("/connections/{id}/resume")),
        ("DELETE", format!("/connections/{id}")),
    ] {
        assert_eq!(api.handle(call(m, &p, "", "", Some(OTHER_MERCHANT_KEY)), "r").await.status_code, 404, "{m} {p}");
    }
    // Its own merchant pauses (out of the poll index), resumes and removes it; the secret goes with it.
    assert_eq!(
        api.handle(call("POST", &format!("/connections/{id}/pause"), "", "", Some(MERCHANT_KEY)), "r")
            .await
            .status_code,
        200
    );
    let item = h.get(&table("ConnectionsTable"), &[("pk", &format!("conn#{id}")), ("sk", "conn")]).await.unwrap();
    assert!(!item.contains_key("poll_shard"));
    assert_eq!(
        api.handle(call("POST", &format!("/connections/{id}/pause"), "", "", Some(MERCHANT_KEY)), "r")
            .await
            .status_code,
        404,
        "already paused"
    );
    assert_eq!(
        api.handle(call("POST", &format!("/connections/{id}/resume"), "", "", Some(MERCHANT_KEY)), "r")
            .await
            .status_code,
        200
    );
    let item = h.get(&table("ConnectionsTable"), &[("pk", &format!("conn#{id}")), ("sk", "conn")]).await.unwrap();
    assert!(item.contains_key("poll_shard"));
    let secret_id = item["secret_id"].as_s().unwrap().clone();
    let secrets = SecretsCredentials::new(h.aws.secrets_manager());
    assert_eq!(secrets.load(&secret_id).await.unwrap().client_secret.unwrap().expose_secret(), "s3cr3t");
    assert_eq!(
        api.handle(call("DELETE", &format!("/connections/{id}"), "", "", Some(MERCHANT_KEY)), "r").await.status_code,
        200
    );
    assert!(h.get(&table("ConnectionsTable"), &[("pk", &format!("conn#{id}")), ("sk", "conn")]).await.is_none());
    assert!(secrets.load(&secret_id).await.is_err(), "its secret is deleted");
}

#[tokio::test]
async fn bol_credentials_that_bol_refuses_are_not_kept() {
    let h = Harness::new().await;
    let server = MockServer::start().await;
    bol_login(&server, false).await;
    let api = api(&h, &server.uri()).await;
    let body =
        serde_json::json!({"marketplace": "bol", "client_id": "bad-client", "client_secret": "nope"}).to_string();
    let resp = api.handle(call("POST", "/connections", "", &body, Some(MERCHANT_KEY)), "r").await;
    assert_eq!(resp.status_code, 422);
    let list = body_json(&api.handle(call("GET", "/connections", "", "", Some(MERCHANT_KEY)), "r").await);
    assert!(!list.to_string().contains("bad-client"));
}

#[tokio::test]
async fn an_amazon_consent_state_works_once_for_its_merchant_and_marketplace() {
    let h = Harness::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/o2/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code=ANDGXVrfnPo"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "Atza|a", "refresh_token": "Atzr|new-seller", "token_type": "bearer", "expires_in": 3600
        })))
        .expect(1)
        .mount(&server)
        .await;
    let api = api(&h, &server.uri()).await;
    let seller = format!("A{}", &uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase());
    let start =
        serde_json::json!({"marketplace": "amazon", "sites": ["A1PA6795UKMFR9"], "account": seller}).to_string();
    assert_eq!(
        api.handle(call("POST", "/connections", "", r#"{"marketplace":"amazon"}"#, Some(MERCHANT_KEY)), "r")
            .await
            .status_code,
        422,
        "Amazon needs the marketplaces it sells on"
    );
    let resp = api.handle(call("POST", "/connections", "", &start, Some(MERCHANT_KEY)), "r").await;
    assert_eq!(resp.status_code, 201);
    let url = body_json(&resp)["consent_url"].as_str().unwrap().to_owned();
    assert!(url.contains("/apps/authorize/consent?application_id="), "{url}");
    let state = url.rsplit("state=").next().unwrap().to_owned();
    // The table holds the state's hash, never the state.
    let hash = nex_shared::usecases::connections::state_hash(&state);
    assert!(h.get(&table("ConnectionsTable"), &[("pk", &format!("state#{state}")), ("sk", "state")]).await.is_none());
    assert!(h.get(&table("ConnectionsTable"), &[("pk", &format!("state#{hash}")), ("sk", "state")]).await.is_some());

    // A consent link sent to another seller connects nothing: the state names the account it is for.
    let wrong = format!("spapi_oauth_code=ANDGXVrfnPo&selling_partner_id=AOTHERSELLER&state={state}");
    assert_eq!(api.handle(call("GET", "/connections/callback/amazon", &wrong, "", None), "r").await.status_code, 400);
    let resp = api.handle(call("POST", "/connections", "", &start, Some(MERCHANT_KEY)), "r").await;
    let url = body_json(&resp)["consent_url"].as_str().unwrap().to_owned();
    let state = url.rsplit("state=").next().unwrap().to_owned();
    let q = format!("spapi_oauth_code=ANDGXVrfnPo&selling_partner_id={seller}&state={state}");
    // A spent state is refused on either callback.
    let other = format!("code=x&state={state}");
    assert_eq!(
        api.handle(call("GET", "/connections/callback/amazon", "spapi_oauth_code=ANDGXVrfnPo&state=00", "", None), "r")
            .await
            .status_code,
        400
    );
    let resp = api.handle(call("GET", "/connections/callback/amazon", &q, "", None), "r").await;
    assert_eq!(resp.status_code, 201, "{:?}", resp.body);
    let id = body_json(&resp)["id"].as_str().unwrap().to_owned();
    // Once only.
    assert_eq!(api.handle(call("GET", "/connections/callback/amazon", &q, "", None), "r").await.status_code, 400);
    assert_eq!(api.handle(call("GET", "/connections/callback/ebay", &other, "", None), "r").await.status_code, 400);
    // Made for the merchant that asked, not for whoever brought the state back.
    let listed = body_json(&api.handle(call("GET", "/connections", "", "", Some(MERCHANT_KEY)), "r").await);
    assert!(listed.to_string().contains(&id));
    let theirs = body_json(&api.handle(call("GET", "/connections", "", "", Some(OTHER_MERCHANT_KEY)), "r").await);
    assert!(!theirs.to_string().contains(&id));
    let item = h.get(&table("ConnectionsTable"), &[("pk", &format!("conn#{id}")), ("sk", "conn")]).await.unwrap();
    assert_eq!(item["account"].as_s().unwrap(), &seller);
    let secrets = SecretsCredentials::new(h.aws.secrets_manager());
    let creds = secrets.load(item["secret_id"].as_s().unwrap()).await.unwrap();
    assert_eq!(creds.refresh_token.unwrap().expose_secret(), "Atzr|new-seller");
}

#[tokio::test]
async fn an_expired_consent_state_is_refused() {
    use nex_shared::adapters::dynamo_connections::{DynamoConnections, StateBinding};
    use nex_shared::domain::orders::Marketplace;
    let h = Harness::new().await;
    let api = api(&h, "http://127.0.0.1:9").await;
    let connections = DynamoConnections::new(h.ddb.clone(), table("ConnectionsTable"));
    let (state, hash) = nex_shared::usecases::connections::new_state();
    let binding = StateBinding {
        merchant: "merchant-demo-1".into(),
        marketplace: Marketplace::Amazon,
        sites: vec![],
        account: None,
    };
    connections.put_state(&hash, &binding, chrono::Utc::now() - chrono::Duration::seconds(1)).await.unwrap();
    let q = format!("spapi_oauth_code=c&selling_partner_id=A1&state={state}");
    assert_eq!(api.handle(call("GET", "/connections/callback/amazon", &q, "", None), "r").await.status_code, 400);
}

#[tokio::test]
async fn an_ebay_consent_connects_the_account_ebay_says_it_was_and_only_the_declared_one() {
    let h = Harness::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/identity/v1/oauth2/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "v^1.1#user", "refresh_token": "v^1.1#refresh", "expires_in": 7200, "refresh_token_expires_in": 47304000
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/commerce/identity/v1/user/"))
        .and(wiremock::matchers::header("authorization", "Bearer v^1.1#user"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"userId": "u-1", "username": "real_seller"})),
        )
        .mount(&server)
        .await;
    let api = h
        .function::<MerchantApi>(
            "ConsentApiFunction",
            &[("EBAY_AUTH_URL", &server.uri()), ("EBAY_IDENTITY_URL", &server.uri())],
            system(),
        )
        .await;
    let start = |account: &str| serde_json::json!({"marketplace": "ebay", "account": account}).to_string();
    let state = |resp: &aws_lambda_events::apigw::ApiGatewayV2httpResponse| {
        body_json(resp)["consent_url"].as_str().unwrap().rsplit("state=").next().unwrap().to_owned()
    };
    // Declared for another account than the one that consented: nothing is connected.
    let other =
        api.handle(call("POST", "/connections", "", &start("someone_else"), Some(OTHER_MERCHANT_KEY)), "r").await;
    let q = format!("code=v%5E1.1&state={}", state(&other));
    assert_eq!(api.handle(call("GET", "/connections/callback/ebay", &q, "", None), "r").await.status_code, 400);
    let theirs = body_json(&api.handle(call("GET", "/connections", "", "", Some(OTHER_MERCHANT_KEY)), "r").await);
    assert!(!theirs.to_string().contains("real_seller"));
    // Declared right: connected under the account eBay names.
    let mine = api.handle(call("POST", "/connections", "", &start("real_seller"), Some(MERCHANT_KEY)), "r").await;
    let q = format!("code=v%5E1.1&state={}", state(&mine));
    let resp = api.handle(call("GET", "/connections/callback/ebay", &q, "", None), "r").await;
    assert_eq!(resp.status_code, 201, "{:?}", resp.body);
    let listed = body_json(&api.handle(call("GET", "/connections", "", "", Some(MERCHANT_KEY)), "r").await);
    assert!(listed["connections"].as_array().unwrap().iter().any(|c| c["account"] == "real_seller"));
}

#[tokio::test]
async fn connecting_an_account_again_replaces_its_credentials_and_takes_the_lease_from_a_running_job() {
    use nex_shared::adapters::dynamo_connections::DynamoConnections;
    use nex_shared::ports::ConnectionStore;
    let h = Harness::new().await;
    let server = MockServer::start().await;
    bol_login(&server, true).await;
    let api = api(&h, &server.uri()).await;
    let client_id = format!("bol-{}", uuid::Uuid::new_v4().simple());
    let body = |secret: &str| {
        serde_json::json!({"marketplace": "bol", "client_id": client_id, "client_secret": secret}).to_string()
    };
    let first = body_json(&api.handle(call("POST", "/connections", "", &body("one"), Some(MERCHANT_KEY)), "r").await);
    let id = first["id"].as_str().unwrap().to_owned();
    // A job holds the lease when the merchant connects again.
    let connections = DynamoConnections::new(h.ddb.clone(), table("ConnectionsTable"));
    let now = chrono::Utc::now();
    let leased = connections.lease(&id, "old-job", now, now + chrono::Duration::minutes(2)).await.unwrap().unwrap();
    let again = body_json(&api.handle(call("POST", "/connections", "", &body("two"), Some(MERCHANT_KEY)), "r").await);
    assert_eq!(again["id"], id.as_str(), "the same account is the same connection");
    assert!(!connections.save(&leased, "old-job", true).await.unwrap(), "the old job can no longer save");
    let item = h.get(&table("ConnectionsTable"), &[("pk", &format!("conn#{id}")), ("sk", "conn")]).await.unwrap();
    let secrets = SecretsCredentials::new(h.aws.secrets_manager());
    let creds = secrets.load(item["secret_id"].as_s().unwrap()).await.unwrap();
    assert_eq!(creds.client_secret.unwrap().expose_secret(), "two");
}
