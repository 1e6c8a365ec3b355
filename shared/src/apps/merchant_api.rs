//! The merchant API, every route with `Authorization: Bearer <merchant API key>`. The merchant comes from
//! the key, never from the body, so a merchant acts only for itself:
//! - `POST /consent/opt-ins`: an `OptIn` JSON body records marketing opt-ins;
//! - `POST /data-requests`: a support team opens a data-subject request for a customer
//!   (`{"kind": "access"|"export"|"deletion"|"correction", "phone"|"email"|"bsuid"|"marketplace_buyer": ..,
//!   "reference": <their ticket, optional, makes the call idempotent>}`), answered 202 with its id;
//! - `GET /data-requests/{id}`: its status, outcome and, for an export, a link valid 15 minutes;
//! - `POST /connections` (`{"marketplace": "amazon", "sites": [..]}` or `"ebay"`): a consent URL with a
//!   single-use `state` bound to the merchant, valid 15 minutes; for bol (`"client_id"`, `"client_secret"`)
//!   the credentials are checked at bol and the connection made at once;
//! - `GET /connections`: the merchant's connections and their health; `POST /connections/{id}/pause`,
//!   `POST /connections/{id}/resume`, `DELETE /connections/{id}` (its secret goes, its orders keep their
//!   deadlines);
//! - `GET /connections/callback/amazon` and `/ebay`: where the marketplace sends the merchant's browser
//!   back. No key: the `state` says for whom, once.
//!
//! Every outcome becomes a response in [`crate::http`].

use tracing::Instrument;

use crate::adapters::aws::Aws;
use crate::adapters::dynamo_ledger::DynamoLedger;
use crate::adapters::dynamo_merchants::DynamoMerchants;
use crate::adapters::dynamo_requests::DynamoDataRequests;
use crate::adapters::s3_objects::S3Objects;
use crate::adapters::secrets;
use crate::adapters::sqs_queue::SqsQueue;
use crate::config;
use crate::config::InitError;
use crate::domain::subject::SubjectHasher;
use crate::function::{Function, HttpFunction, Invocation, Request, Response};
use crate::http;
use crate::ports::{Clock, SharedClock};
use crate::usecases::data_requests::{self, Intake, Origin};
use crate::usecases::{merchant_api, opt_in};

use crate::adapters::dynamo_connections::{DynamoConnections, SecretsCredentials, StateBinding};
use crate::adapters::marketplaces::{http_client, AmazonSource, AppCredentials, BolSource, EbaySource};
use crate::domain::orders::connection::Connection;
use crate::domain::orders::Marketplace;
use crate::ports::{Credentials, OrderSource, SourceError};
use crate::usecases::connections;

/// Opt-in and request bodies are a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

pub struct MerchantApi {
    pub hasher: SubjectHasher,
    pub clock: SharedClock,
    pub ledger: DynamoLedger,
    pub keys: DynamoMerchants,
    pub requests: DynamoDataRequests,
    pub requests_queue: SqsQueue,
    pub exports: S3Objects,
    pub connections: DynamoConnections,
    pub secrets: SecretsCredentials,
    sm: aws_sdk_secretsmanager::Client,
    pub marketplaces: MarketplaceSettings,
    /// The webhook endpoint routes.
    pub endpoints: crate::apps::webhooks::EndpointRoutes,
    /// The ad performance routes.
    pub ads: crate::apps::insights::AdRoutes,
    /// The marketplace clients, built on the first connection route (their app secrets are fetched then, not
    /// at every cold start).
    clients: tokio::sync::OnceCell<Clients>,
}

/// What the connection routes need to know about the marketplaces.
#[derive(Debug, Clone)]
pub struct MarketplaceSettings {
    pub secret_prefix: String,
    pub amazon_app_secret_id: String,
    pub ebay_app_secret_id: String,
    pub amazon_lwa_url: String,
    pub ebay_auth_url: String,
    pub bol_login_url: String,
    pub amazon_consent_url: String,
    pub amazon_application_id: String,
    pub ebay_consent_url: String,
    pub ebay_ru_name: String,
    pub ebay_identity_url: String,
}

struct Clients {
    amazon: AmazonSource,
    ebay: EbaySource,
    bol: BolSource,
    consent: connections::ConsentSettings,
}

config! {
    MerchantApiConfig {
        messaging_table: String = "MESSAGING_TABLE",
        pepper_secret_id: String = "SUBJECT_PEPPER_SECRET_ID",
        data_requests_table: String = "DATA_REQUESTS_TABLE",
        data_requests_queue_url: String = "DATA_REQUESTS_QUEUE_URL",
        exports_bucket: String = "EXPORTS_BUCKET",
        connections_table: String = "CONNECTIONS_TABLE",
        connection_secret_prefix: String = "CONNECTION_SECRET_PREFIX",
        amazon_app_secret_id: String = "AMAZON_APP_SECRET_ID",
        ebay_app_secret_id: String = "EBAY_APP_SECRET_ID",
        amazon_lwa_url: String = "AMAZON_LWA_URL",
        ebay_auth_url: String = "EBAY_AUTH_URL",
        bol_login_url: String = "BOL_LOGIN_URL",
        amazon_consent_url: String = "AMAZON_CONSENT_URL",
        amazon_application_id: String = "AMAZON_APPLICATION_ID",
        ebay_consent_url: String = "EBAY_CONSENT_URL",
        ebay_ru_name: String = "EBAY_RU_NAME",
        ebay_identity_url: String = "EBAY_IDENTITY_URL",
        webhooks_table: String = "WEBHOOKS_TABLE",
        webhook_secret_prefix: String = "WEBHOOK_SECRET_PREFIX",
        deliveries_queue_url: String = "DELIVERIES_QUEUE_URL",
        allow_loopback: bool = "WEBHOOK_ALLOW_LOOPBACK" or false,
        insights_table: String = "INSIGHTS_TABLE",
    }
}

#[derive(serde::Deserialize)]
struct RequestBody {
    #[serde(flatten)]
    intake: Intake,
    #[serde(default)]
    reference: Option<String>,
}

enum Route {
    OptIn,
    OpenRequest,
    ShowRequest(String),
    StartConnection,
    ListConnections,
    Pause(String, bool),
    Remove(String),
    /// `/ad-performance`, `/ad-campaigns`: routed on by [`crate::apps::insights::AdRoutes`].
    Ads,
    /// `/endpoints...`, `/events/...`: routed on by [`crate::apps::webhooks::EndpointRoutes`].
    Endpoints,
}

impl Function for MerchantApi {
    const NAME: &'static str = "merchant-api";
    type Config = MerchantApiConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let pepper = secrets::fetch(&aws.secrets_manager(), &config.pepper_secret_id).await?;
        let ddb = aws.dynamodb();
        Ok(Self {
            hasher: SubjectHasher::new(&pepper),
            clock: clock.clone(),
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table.clone()),
            keys: DynamoMerchants::new(ddb.clone(), config.messaging_table),
            requests: DynamoDataRequests::new(ddb, config.data_requests_table),
            requests_queue: SqsQueue::new(aws.sqs(), config.data_requests_queue_url),
            exports: S3Objects::new(aws.s3(), config.exports_bucket),
            connections: DynamoConnections::new(aws.dynamodb(), config.connections_table),
            secrets: SecretsCredentials::new(aws.secrets_manager()),
            marketplaces: MarketplaceSettings {
                secret_prefix: config.connection_secret_prefix,
                amazon_app_secret_id: config.amazon_app_secret_id,
                ebay_app_secret_id: config.ebay_app_secret_id,
                amazon_lwa_url: config.amazon_lwa_url,
                ebay_auth_url: config.ebay_auth_url,
                bol_login_url: config.bol_login_url,
                amazon_consent_url: config.amazon_consent_url,
                amazon_application_id: config.amazon_application_id,
                ebay_consent_url: config.ebay_consent_url,
                ebay_ru_name: config.ebay_ru_name,
                ebay_identity_url: config.ebay_identity_url,
            },
            endpoints: crate::apps::webhooks::EndpointRoutes {
                clock: clock.clone(),
                webhooks: crate::adapters::dynamo_webhooks::DynamoWebhooks::new(aws.dynamodb(), config.webhooks_table),
                signing: crate::adapters::webhook_delivery::SecretsSigning::new(aws.secrets_manager()),
                deliveries: SqsQueue::new(aws.sqs(), config.deliveries_queue_url),
                policy: crate::domain::webhooks::AddressPolicy { allow_loopback: config.allow_loopback },
                secret_prefix: config.webhook_secret_prefix,
                timing: Default::default(),
            },
            ads: crate::apps::insights::AdRoutes {
                clock: clock.clone(),
                store: crate::adapters::dynamo_insights::DynamoInsights::new(aws.dynamodb(), config.insights_table),
            },
            clients: tokio::sync::OnceCell::new(),
            sm: aws.secrets_manager(),
        })
    }
}

impl HttpFunction for MerchantApi {
    async fn http(&self, req: Request, invocation: &Invocation) -> Response {
        let span = tracing::info_span!("merchant_api", request_id = %invocation.request_id);
        async {
            let path = req.uri().path().to_owned();
            // The marketplaces send the merchant's browser back here: no key, the state says for whom.
            if req.method() == ::http::Method::GET {
                if let Some(market) = path.strip_prefix("/connections/callback/") {
                    return self.callback(market, &req).await;
                }
            }
            fn id_route(rest: &str) -> Option<&str> {
                rest.strip_prefix("/connections/").filter(|id| connections::is_account(id) && id.len() == 24)
            }
            let route = match (req.method(), path.as_str()) {
                // Their own tables of routes, after the key (an unknown one there is 404/405 to a merchant).
                (_, p) if crate::apps::insights::AdRoutes::owns(p) => Route::Ads,
                (_, p) if crate::apps::webhooks::EndpointRoutes::owns(p) => Route::Endpoints,
                (&::http::Method::POST, "/connections") => Route::StartConnection,
                (&::http::Method::GET, "/connections") => Route::ListConnections,
                (&::http::Method::POST, p) if p.ends_with("/pause") && id_route(&p[..p.len() - 6]).is_some() => {
                    Route::Pause(id_route(&p[..p.len() - 6]).unwrap_or_default().to_owned(), true)
                }
                (&::http::Method::POST, p) if p.ends_with("/resume") && id_route(&p[..p.len() - 7]).is_some() => {
                    Route::Pause(id_route(&p[..p.len() - 7]).unwrap_or_default().to_owned(), false)
                }
                (&::http::Method::DELETE, p) if id_route(p).is_some() => {
                    Route::Remove(id_route(p).unwrap_or_default().to_owned())
                }
                (&::http::Method::POST, "/consent/opt-ins") => Route::OptIn,
                (&::http::Method::POST, "/data-requests") => Route::OpenRequest,
                (&::http::Method::GET, p) if p.len() > "/data-requests/".len() && p.starts_with("/data-requests/") => {
                    Route::ShowRequest(p["/data-requests/".len()..].to_owned())
                }
                (_, "/consent/opt-ins" | "/data-requests" | "/connections") => {
                    return http::refuse(405, "method_not_allowed")
                }
                _ => return http::refuse(404, "not_found"),
            };
            let merchant = match merchant_api::merchant(&self.keys, http::header(&req, "authorization")).await {
                Ok(m) => m,
                Err(e) => return http::key_refused(&e),
            };
            let body = req.body().as_ref();
            if body.len() > MAX_BODY {
                return http::refuse(413, "body_too_large");
            }
            match route {
                Route::OptIn => self.opt_in(&merchant, body).await,
                Route::OpenRequest => self.open_request(&merchant, body).await,
                Route::ShowRequest(id) => {
                    let shown = merchant_api::shown_to(&self.requests, &self.exports, &merchant, &id).await;
                    http::request_shown(&shown)
                }
                Route::StartConnection => self.start_connection(&merchant, body).await,
                Route::ListConnections => match self.connections.for_merchant(&merchant).await {
                    Ok(list) => http::json(
                        200,
                        serde_json::json!({ "connections": list.iter().map(shown).collect::<Vec<_>>() }),
                    ),
                    Err(e) => http::unavailable(&e),
                },
                Route::Pause(id, paused) => match self.connections.set_paused(&id, Some(&merchant), paused).await {
                    Ok(true) => http::json(
                        200,
                        serde_json::json!({ "id": id, "status": if paused { "paused" } else { "active" } }),
                    ),
                    // Another merchant's connection is as absent as an unknown one.
                    Ok(false) => http::refuse(404, "no_such_connection_in_that_state"),
                    Err(e) => http::unavailable(&e),
                },
                Route::Remove(id) => self.remove(&merchant, &id).await,
                Route::Ads => self.ads.handle(&merchant, req.method(), &path, &http::query(&req), body).await,
                Route::Endpoints => {
                    self.endpoints.handle(&merchant, req.method(), &path, &http::query(&req), body).await
                }
            }
        }
        .instrument(span)
        .await
    }
}

impl MerchantApi {
    async fn opt_in(&self, merchant: &str, body: &[u8]) -> Response {
        let Ok(request) = serde_json::from_slice::<opt_in::OptIn>(body) else {
            return http::refuse(400, "invalid_opt_in");
        };
        let result = opt_in::record(&self.ledger, &self.hasher, merchant, &request, self.clock.now()).await;
        if let Ok(n) = &result {
            tracing::info!(merchant = %merchant, source = %request.source, identifiers = n, "opt-in recorded");
        }
        http::opt_in_response(&result)
    }

    async fn open_request(&self, merchant: &str, body: &[u8]) -> Response {
        let Ok(asked) = serde_json::from_slice::<RequestBody>(body) else {
            return http::refuse(400, "invalid_data_request");
        };
        if asked.reference.as_deref().is_some_and(|r| !crate::domain::validate::is_id(r)) {
            return http::refuse(422, "invalid_reference");
        }
        let origin = Origin {
            id: data_requests::request_id("api", merchant, asked.reference.as_deref()),
            source: crate::ports::SOURCE_MERCHANT_API.into(),
            merchant: Some(merchant.to_owned()),
        };
        let result = data_requests::open(
            &self.requests,
            &self.requests_queue,
            &self.hasher,
            &asked.intake,
            origin,
            self.clock.now(),
        )
        .await;
        if let Ok(o) = &result {
            tracing::info!(merchant = %merchant, request = %o.request.id, kind = %o.request.kind, new = o.new, "data-subject request opened");
        }
        http::request_opened(&result)
    }
}

/// A connection as its merchant sees it: no secret, no lease.
fn shown(c: &Connection) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "marketplace": c.marketplace,
        "account": c.account,
        "sites": c.sites,
        "status": c.status.as_str(),
        "watermark": c.watermark,
        "last_success": c.last_success,
        "last_error": c.last_error,
        "throttled_until": c.throttle_until,
        "created_at": c.created_at,
    })
}

#[derive(serde::Deserialize)]
struct StartBody {
    marketplace: String,
    #[serde(default)]
    sites: Vec<String>,
    /// Amazon: the selling partner id being connected (the callback must bring the same).
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

impl MerchantApi {
    async fn clients(&self) -> Result<&Clients, crate::ports::InfraError> {
        self.clients
            .get_or_try_init(|| async {
                let m = &self.marketplaces;
                let (amazon, ebay) = tokio::try_join!(
                    secrets::fetch(&self.sm, &m.amazon_app_secret_id),
                    secrets::fetch(&self.sm, &m.ebay_app_secret_id)
                )?;
                let app = |v: &secrecy::SecretString| {
                    AppCredentials::parse(v).ok_or_else(|| crate::ports::InfraError {
                        service: "secretsmanager",
                        operation: "GetSecretValue(app)",
                        retryable: false,
                        source: Some("an app secret is not its JSON".into()),
                    })
                };
                let (amazon, ebay) = (app(&amazon)?, app(&ebay)?);
                let http = http_client();
                Ok(Clients {
                    consent: connections::ConsentSettings {
                        amazon_consent_url: m.amazon_consent_url.clone(),
                        amazon_application_id: m.amazon_application_id.clone(),
                        ebay_consent_url: m.ebay_consent_url.clone(),
                        ebay_client_id: ebay.client_id.clone(),
                        ebay_ru_name: m.ebay_ru_name.clone(),
                    },
                    amazon: AmazonSource {
                        http: http.clone(),
                        lwa_url: m.amazon_lwa_url.clone(),
                        api_url: String::new(),
                        app: amazon,
                    },
                    ebay: EbaySource {
                        http: http.clone(),
                        auth_url: m.ebay_auth_url.clone(),
                        api_url: String::new(),
                        app: ebay,
                    },
                    bol: BolSource {
                        http,
                        login_url: m.bol_login_url.clone(),
                        api_url: String::new(),
                        orders_media_type: String::new(),
                    },
                })
            })
            .await
    }

    async fn start_connection(&self, merchant: &str, body: &[u8]) -> Response {
        let Ok(b) = serde_json::from_slice::<StartBody>(body) else {
            return http::refuse(400, "invalid_connection_request");
        };
        let Some(marketplace) = Marketplace::parse(&b.marketplace) else {
            return http::refuse(422, "unknown_marketplace");
        };
        if b.sites.len() > 20 || !b.sites.iter().all(|s| connections::is_account(s)) {
            return http::refuse(422, "invalid_sites");
        }
        if marketplace == Marketplace::Amazon && b.sites.is_empty() {
            return http::refuse(422, "amazon_needs_sites");
        }
        // The account being connected: its callback must bring that one, so a consent link sent to
        // another seller connects nothing (Amazon: the selling partner id; eBay: the username).
        if matches!(marketplace, Marketplace::Amazon | Marketplace::Ebay)
            && !b.account.as_deref().is_some_and(connections::is_account)
        {
            return http::refuse(422, "account_required");
        }
        let clients = match self.clients().await {
            Ok(c) => c,
            Err(e) => return http::unavailable(&e),
        };
        let now = self.clock.now();
        if marketplace == Marketplace::Bol {
            let (Some(id), Some(secret)) = (b.client_id, b.client_secret) else {
                return http::refuse(422, "bol_needs_client_id_and_secret");
            };
            if !connections::is_account(&id) || secret.is_empty() || secret.len() > 512 {
                return http::refuse(422, "invalid_bol_credentials");
            }
            let creds = Credentials {
                client_id: Some(id.clone()),
                client_secret: Some(secrecy::SecretString::from(secret)),
                ..Credentials::default()
            };
            // Checked before they are kept: a token now, kept for the first poll.
            let mut creds = creds;
            match clients.bol.token(&creds).await {
                Ok(t) => {
                    creds.access_token = Some(t.token);
                    creds.access_expires_at = Some(t.expires_at);
                }
                Err(SourceError::Unauthorized) => return http::refuse(422, "bol_refused_the_credentials"),
                Err(_) => return http::refuse(503, "marketplace_unavailable"),
            }
            return self.connected(merchant, marketplace, &id, &id, b.sites, creds).await;
        }
        let (state, hash) = connections::new_state();
        let binding = StateBinding { merchant: merchant.to_owned(), marketplace, sites: b.sites, account: b.account };
        let expires = connections::state_expires(now);
        if let Err(e) = self.connections.put_state(&hash, &binding, expires).await {
            return http::unavailable(&e);
        }
        let url = connections::consent_url(&clients.consent, marketplace, &state).unwrap_or_default();
        http::json(201, serde_json::json!({ "consent_url": url, "state_expires_at": expires }))
    }

    async fn connected(
        &self, merchant: &str, marketplace: Marketplace, account: &str, key: &str, sites: Vec<String>,
        creds: Credentials,
    ) -> Response {
        let now = self.clock.now();
        // The account's stable id (eBay's userId: usernames can change) names the connection.
        let id = connections::connection_id(merchant, marketplace, key);
        let name = format!("{}{id}", self.marketplaces.secret_prefix);
        let secret_id = match self.secrets.put(&name, &creds).await {
            Ok(s) => s,
            Err(e) => return http::unavailable(&e),
        };
        let c =
            Connection::new(id.clone(), merchant.to_owned(), marketplace, account.to_owned(), sites, secret_id, now);
        match self.connections.connect(&c).await {
            Ok(()) => {
                tracing::info!(merchant = %merchant, marketplace = %marketplace, connection = %id, "connected");
                http::json(201, serde_json::json!({ "id": id, "marketplace": marketplace, "status": "active" }))
            }
            Err(e) => http::unavailable(&e),
        }
    }

    /// Removes a connection of `merchant`'s: its secret first (a failure leaves the connection to remove
    /// again, never a secret without its connection), then its record. Its orders keep their deadlines.
    async fn remove(&self, merchant: &str, id: &str) -> Response {
        use crate::ports::ConnectionStore;
        let c = match self.connections.get(id).await {
            Ok(Some(c)) if c.merchant == merchant => c,
            Ok(_) => return http::refuse(404, "no_such_connection"),
            Err(e) => return http::unavailable(&e),
        };
        if let Err(e) = self.secrets.delete(&c.secret_id).await {
            // Already gone (a removal that stopped halfway): the record goes now. Anything else keeps both.
            if !e.is_not_found() {
                return http::unavailable(&e);
            }
        }
        match self.connections.remove(id, Some(merchant)).await {
            Ok(_) => http::json(200, serde_json::json!({ "id": id, "status": "removed" })),
            Err(e) => http::unavailable(&e),
        }
    }

    /// The marketplace's redirect after consent: the state taken once, the code exchanged, the connection made.
    async fn callback(&self, market: &str, req: &Request) -> Response {
        let q = http::query(req);
        let Some(state) = q.first("state").filter(|s| connections::is_state(s)) else {
            return http::refuse(400, "invalid_state");
        };
        let (code, account) = match market {
            "amazon" => (q.first("spapi_oauth_code"), q.first("selling_partner_id")),
            "ebay" => (q.first("code"), None),
            _ => return http::refuse(404, "not_found"),
        };
        let Some(code) = code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
            return http::refuse(400, "no_authorization_code");
        };
        if market == "amazon" && !account.is_some_and(connections::is_account) {
            return http::refuse(400, "invalid_selling_partner_id");
        }
        let now = self.clock.now();
        let binding = match self.connections.take_state(&connections::state_hash(state), now).await {
            Ok(Some(b)) if b.marketplace.as_str() == market => b,
            Ok(_) => return http::refuse(400, "state_unknown_used_or_expired"),
            Err(e) => return http::unavailable(&e),
        };
        let clients = match self.clients().await {
            Ok(c) => c,
            Err(e) => return http::unavailable(&e),
        };
        // Amazon names the account in the callback: checked before the code is spent at LWA.
        if binding.marketplace == Marketplace::Amazon
            && !binding.account.as_deref().zip(account).is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            tracing::warn!(merchant = %binding.merchant, marketplace = %binding.marketplace, "consent for another account than declared");
            return http::refuse(400, "not_the_declared_account");
        }
        let got = match binding.marketplace {
            Marketplace::Amazon => {
                let a = account.unwrap_or_default().to_owned();
                clients.amazon.exchange(code).await.map(|r| (r, a.clone(), a))
            }
            // eBay's callback names no account: the Identity API says whose it is.
            _ => {
                let m = &self.marketplaces;
                clients.ebay.connect(code, &m.ebay_ru_name, &m.ebay_identity_url).await
            }
        };
        let (refresh, account, key) = match got {
            Ok(r) => r,
            Err(SourceError::Unauthorized) => return http::refuse(400, "authorization_code_refused"),
            Err(_) => return http::refuse(503, "marketplace_unavailable"),
        };
        if binding.account.as_deref().is_some_and(|a| !a.eq_ignore_ascii_case(&account))
            || !connections::is_account(&account)
        {
            tracing::warn!(merchant = %binding.merchant, marketplace = %binding.marketplace, "consent for another account than declared");
            return http::refuse(400, "not_the_declared_account");
        }
        let creds = Credentials { refresh_token: Some(refresh), ..Credentials::default() };
        self.connected(&binding.merchant, binding.marketplace, &account, &key, binding.sites, creds).await
    }
}
