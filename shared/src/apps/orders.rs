//! Marketplace orders: the scheduler (one poll job per active connection), the poller (one connection
//! per job, see [`crate::usecases::poll`]) and eBay's Marketplace Account Deletion endpoint.

use std::collections::HashMap;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use p256::ecdsa::VerifyingKey;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tracing::{info, warn, Instrument};

use crate::adapters::aws::Aws;
use crate::adapters::dynamo_connections::{DynamoConnections, SecretsCredentials};
use crate::adapters::dynamo_orders::DynamoOrders;
use crate::adapters::dynamo_requests::DynamoDataRequests;
use crate::adapters::emf::EmfMetrics;
use crate::adapters::marketplaces::{http_client, AmazonSource, AppCredentials, BolSource, EbaySource};
use crate::adapters::secrets;
use crate::adapters::sqs_batch::{self, Failure};
use crate::adapters::sqs_queue::SqsQueue;
use crate::config;
use crate::config::InitError;
use crate::domain::envelope::Envelope;
use crate::domain::messages::PollJob;
use crate::domain::orders::connection::POLL_SHARDS;
use crate::domain::orders::ebay_deletion::{self, Notification, Refused};
use crate::domain::orders::Marketplace;
use crate::domain::subject::SubjectHasher;
use crate::function::{Function, HttpFunction, Invocation, Request, Response, ScheduleFunction, SqsFunction};
use crate::http;
use crate::ports::{ConnectionStore, InfraError, Metrics, SharedClock};
use crate::usecases::data_requests::{self, Intake, IntakeError, Origin};
use crate::usecases::poll::{PollOutcome, Poller};

/// An app's client id and secret, from its secret's JSON (`client_id`, `client_secret`).
fn app_credentials(value: &SecretString, name: &str) -> Result<AppCredentials, InitError> {
    AppCredentials::parse(value)
        .ok_or_else(|| InitError::Unusable(format!("{name}: not a JSON object with client_id and client_secret")))
}

/// A random number in `[0, 1)` for backoff jitter.
fn jitter() -> f64 {
    let b = uuid::Uuid::new_v4().as_u128();
    (b >> 75) as f64 / (1u64 << 53) as f64
}

// ----------------------------------------------------------------------------------------- scheduler

/// The schedule's fan-out: every active connection, found by the sparse `pollable` index (its shards read
/// in parallel, never a scan), gets one poll job. Jobs are idempotent (the poller leases the connection),
/// so a repeated or overlapping fan-out costs a lease check and nothing else.
pub struct MarketplaceScheduler {
    pub connections: DynamoConnections,
    pub polls: SqsQueue,
    pub clock: SharedClock,
    pub metrics: EmfMetrics,
    pub sm: aws_sdk_secretsmanager::Client,
    pub amazon_app_secret_id: String,
}

config! {
    MarketplaceSchedulerConfig {
        connections_table: String = "CONNECTIONS_TABLE",
        poll_queue_url: String = "POLL_QUEUE_URL",
        amazon_app_secret_id: String = "AMAZON_APP_SECRET_ID",
    }
}

impl Function for MarketplaceScheduler {
    const NAME: &'static str = "marketplace-scheduler";
    type Config = MarketplaceSchedulerConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        Ok(Self {
            connections: DynamoConnections::new(aws.dynamodb(), config.connections_table),
            polls: SqsQueue::new(aws.sqs(), config.poll_queue_url),
            clock,
            metrics: EmfMetrics::new("Nex", Self::NAME),
            sm: aws.secrets_manager(),
            amazon_app_secret_id: config.amazon_app_secret_id,
        })
    }
}

impl MarketplaceScheduler {
    /// Queues one job per active connection; returns how many.
    pub async fn fan_out(&self) -> Result<usize, InfraError> {
        let now = self.clock.now();
        let shards = (0..POLL_SHARDS).map(|shard| async move {
            let mut cursor = None;
            let mut sent = 0;
            loop {
                let (ids, next) = self.connections.pollable(shard, cursor.as_deref()).await?;
                let bodies: Vec<String> = ids
                    .into_iter()
                    .map(|id| {
                        let job_id = format!("poll:{id}:{}", now.timestamp());
                        Envelope::new(job_id.clone(), now, job_id, PollJob { connection: id }).encode()
                    })
                    .collect();
                self.polls.send_batch(&bodies).await?;
                sent += bodies.len();
                match next {
                    Some(n) => cursor = Some(n),
                    None => return Ok::<usize, InfraError>(sent),
                }
            }
        });
        let mut total = 0;
        for r in futures_util::future::join_all(shards).await {
            total += r?;
        }
        Ok(total)
    }

    /// The age of the Amazon app's LWA client secret, in days, as a metric: Amazon requires rotating it
    /// every 180 days, and an alarm fires well before.
    async fn lwa_secret_age(&self, now: DateTime<Utc>) {
        let Ok(d) = self.sm.describe_secret().secret_id(&self.amazon_app_secret_id).send().await else {
            warn!("the LWA app secret could not be described");
            return;
        };
        let changed = d.last_changed_date().or(d.created_date()).map(|t| t.secs()).unwrap_or(now.timestamp());
        let days = ((now.timestamp() - changed).max(0) / 86_400) as u64;
        self.metrics.count("LwaClientSecretAgeDays", days, None);
    }
}

impl ScheduleFunction for MarketplaceScheduler {
    async fn schedule(
        &self, _event: serde_json::Value, invocation: &Invocation,
    ) -> Result<serde_json::Value, InfraError> {
        let span = tracing::info_span!("marketplace_scheduler", request_id = %invocation.request_id);
        async {
            let queued = self.fan_out().await?;
            self.lwa_secret_age(self.clock.now()).await;
            self.metrics.count("PollJobsQueued", queued as u64, None);
            info!(queued, "poll jobs queued");
            Ok(serde_json::json!({ "queued": queued }))
        }
        .instrument(span)
        .await
    }
}

// -------------------------------------------------------------------------------------------- poller

/// The poll queue's consumer: one connection per record.
pub struct MarketplacePoller {
    pub connections: DynamoConnections,
    pub credentials: SecretsCredentials,
    pub orders: DynamoOrders,
    pub amazon: AmazonSource,
    pub ebay: EbaySource,
    pub bol: BolSource,
    pub hasher: SubjectHasher,
    pub metrics: EmfMetrics,
    pub clock: SharedClock,
}

config! {
    MarketplacePollerConfig {
        connections_table: String = "CONNECTIONS_TABLE",
        orders_table: String = "ORDERS_TABLE",
        pepper_secret_id: String = "SUBJECT_PEPPER_SECRET_ID",
        amazon_app_secret_id: String = "AMAZON_APP_SECRET_ID",
        ebay_app_secret_id: String = "EBAY_APP_SECRET_ID",
        amazon_lwa_url: String = "AMAZON_LWA_URL",
        amazon_api_url: String = "AMAZON_SP_API_URL",
        ebay_auth_url: String = "EBAY_AUTH_URL",
        ebay_api_url: String = "EBAY_API_URL",
        bol_login_url: String = "BOL_LOGIN_URL",
        bol_api_url: String = "BOL_API_URL",
        bol_orders_media_type: String = "BOL_ORDERS_MEDIA_TYPE" or "application/vnd.retailer.v10+json".to_owned(),
    }
}

impl Function for MarketplacePoller {
    const NAME: &'static str = "marketplace-poller";
    type Config = MarketplacePollerConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let sm = aws.secrets_manager();
        let (pepper, amazon_app, ebay_app) = tokio::try_join!(
            secrets::fetch(&sm, &config.pepper_secret_id),
            secrets::fetch(&sm, &config.amazon_app_secret_id),
            secrets::fetch(&sm, &config.ebay_app_secret_id),
        )?;
        let http = http_client();
        Ok(Self {
            connections: DynamoConnections::new(aws.dynamodb(), config.connections_table),
            credentials: SecretsCredentials::new(sm),
            orders: DynamoOrders::new(aws.dynamodb(), config.orders_table),
            amazon: AmazonSource {
                http: http.clone(),
                lwa_url: config.amazon_lwa_url,
                api_url: config.amazon_api_url,
                app: app_credentials(&amazon_app, "AMAZON_APP_SECRET_ID")?,
            },
            ebay: EbaySource {
                http: http.clone(),
                auth_url: config.ebay_auth_url,
                api_url: config.ebay_api_url,
                app: app_credentials(&ebay_app, "EBAY_APP_SECRET_ID")?,
            },
            bol: BolSource {
                http,
                login_url: config.bol_login_url,
                api_url: config.bol_api_url,
                orders_media_type: config.bol_orders_media_type,
            },
            hasher: SubjectHasher::new(&pepper),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            clock,
        })
    }
}

impl MarketplacePoller {
    /// Polls one connection with its marketplace's source.
    pub async fn poll(&self, id: &str, deadline: DateTime<Utc>) -> Result<PollOutcome, InfraError> {
        // The lease's answer is the connection: no read before it.
        let Some((c, lease)) = crate::usecases::poll::lease(&self.connections, &*self.clock, id, deadline).await?
        else {
            return Ok(PollOutcome::Skipped("leased_or_absent"));
        };
        macro_rules! with {
            ($source:expr) => {
                Poller {
                    connections: &self.connections,
                    credentials: &self.credentials,
                    orders: &self.orders,
                    source: $source,
                    hasher: &self.hasher,
                    metrics: &self.metrics,
                    clock: &*self.clock,
                }
                .poll_leased(c, lease, deadline, jitter())
                .await
            };
        }
        match c.marketplace {
            Marketplace::Amazon => with!(&self.amazon),
            Marketplace::Ebay => with!(&self.ebay),
            Marketplace::Bol => with!(&self.bol),
        }
    }
}

impl SqsFunction for MarketplacePoller {
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span = tracing::info_span!("marketplace_poller", request_id = %invocation.request_id, records = event.records.len());
        sqs_batch::process(event, invocation.deadline, |record| async move {
            let job = Envelope::<PollJob>::decode(record.body.as_deref().unwrap_or(""))?.payload;
            let outcome = self.poll(&job.connection, invocation.deadline).await?;
            info!(connection = %job.connection, outcome = ?outcome, "polled");
            Ok::<_, Failure>(())
        })
        .instrument(span)
        .await
    }
}

// ------------------------------------------------------------------------------ eBay account deletion

/// `GET`/`POST /webhooks/ebay/account-deletion`: eBay's endpoint check and its signed account-deletion
/// notices. A valid notice opens an erasure of that eBay user's data through the data-subject request
/// path (for every merchant) and is answered 204; a notice whose signature does not hold is answered 412
/// and leaves nothing behind.
pub struct EbayAccountDeletion {
    pub verification_token: SecretString,
    pub endpoint_url: String,
    pub http: reqwest::Client,
    pub auth_url: String,
    pub api_url: String,
    pub app: AppCredentials,
    pub hasher: SubjectHasher,
    pub requests: DynamoDataRequests,
    pub queue: SqsQueue,
    pub clock: SharedClock,
    pub metrics: EmfMetrics,
    pub max_body_bytes: usize,
    keys: Mutex<HashMap<String, VerifyingKey>>,
    unknown_kids: Mutex<HashMap<String, DateTime<Utc>>>,
    /// When this container last asked eBay for keys: at most five a minute, so forged notices with ever
    /// new key ids cannot spend eBay's quota (a real notice refused by it is retried by eBay).
    fetches: Mutex<std::collections::VecDeque<DateTime<Utc>>>,
    app_token: Mutex<Option<(SecretString, DateTime<Utc>)>>,
}

config! {
    EbayAccountDeletionConfig {
        ebay_app_secret_id: String = "EBAY_APP_SECRET_ID",
        endpoint_url: String = "EBAY_DELETION_ENDPOINT_URL",
        ebay_auth_url: String = "EBAY_AUTH_URL",
        ebay_api_url: String = "EBAY_API_URL",
        pepper_secret_id: String = "SUBJECT_PEPPER_SECRET_ID",
        data_requests_table: String = "DATA_REQUESTS_TABLE",
        data_requests_queue_url: String = "DATA_REQUESTS_QUEUE_URL",
        max_body_bytes: usize = "EBAY_MAX_BODY_BYTES" or 64 * 1024,
    }
}

impl Function for EbayAccountDeletion {
    const NAME: &'static str = "ebay-account-deletion";
    type Config = EbayAccountDeletionConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let sm = aws.secrets_manager();
        let (app, pepper) = tokio::try_join!(
            secrets::fetch(&sm, &config.ebay_app_secret_id),
            secrets::fetch(&sm, &config.pepper_secret_id)
        )?;
        #[derive(serde::Deserialize)]
        struct Token {
            verification_token: String,
        }
        let token: Token = serde_json::from_str(app.expose_secret())
            .map_err(|_| InitError::Unusable("EBAY_APP_SECRET_ID: no verification_token".into()))?;
        if !(32..=80).contains(&token.verification_token.len()) {
            return Err(InitError::Unusable(
                "EBAY_APP_SECRET_ID: the verification token must be 32-80 characters".into(),
            ));
        }
        Ok(Self {
            verification_token: SecretString::from(token.verification_token),
            endpoint_url: config.endpoint_url,
            http: http_client(),
            auth_url: config.ebay_auth_url,
            api_url: config.ebay_api_url,
            app: app_credentials(&app, "EBAY_APP_SECRET_ID")?,
            hasher: SubjectHasher::new(&pepper),
            requests: DynamoDataRequests::new(aws.dynamodb(), config.data_requests_table),
            queue: SqsQueue::new(aws.sqs(), config.data_requests_queue_url),
            clock,
            metrics: EmfMetrics::new("Nex", Self::NAME),
            max_body_bytes: config.max_body_bytes,
            keys: Mutex::new(HashMap::new()),
            unknown_kids: Mutex::new(HashMap::new()),
            fetches: Mutex::new(std::collections::VecDeque::new()),
            app_token: Mutex::new(None),
        })
    }
}

/// An eBay answer of at most 64 KB (a token or a key is a few hundred bytes), parsed.
async fn small_json<T: serde::de::DeserializeOwned>(res: reqwest::Response) -> Result<T, KeyError> {
    let body = res.bytes().await.map_err(|_| KeyError::Unavailable)?;
    if body.len() > 64 * 1024 {
        return Err(KeyError::Unavailable);
    }
    serde_json::from_slice(&body).map_err(|_| KeyError::Unavailable)
}

/// Why a key could not be had: eBay does not know it (the notice is not eBay's), or eBay could not be asked.
enum KeyError {
    Unknown,
    Unavailable,
}

impl EbayAccountDeletion {
    /// An application token (client-credentials grant), cached until a minute before it expires.
    async fn app_token(&self) -> Result<SecretString, KeyError> {
        let mut cached = self.app_token.lock().await;
        let now = self.clock.now();
        if let Some((t, _)) = cached.as_ref().filter(|(_, exp)| *exp - chrono::Duration::minutes(1) > now) {
            return Ok(t.clone());
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("grant_type", "client_credentials"), ("scope", "https://api.ebay.com/oauth/api_scope")])
            .finish();
        let res = self
            .http
            .post(format!("{}/identity/v1/oauth2/token", self.auth_url.trim_end_matches('/')))
            .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose_secret()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|_| KeyError::Unavailable)?;
        if !res.status().is_success() {
            return Err(KeyError::Unavailable);
        }
        #[derive(serde::Deserialize)]
        struct T {
            access_token: String,
            expires_in: Option<i64>,
        }
        let t: T = small_json(res).await?;
        let token = SecretString::from(t.access_token);
        *cached =
            Some((token.clone(), now + chrono::Duration::seconds(t.expires_in.unwrap_or(7200).clamp(60, 86_400))));
        Ok(token)
    }

    /// eBay's public key `kid`, fetched once per container and kept. A kid eBay does not know is
    /// remembered as unknown for ten minutes, so forged notices cannot spend eBay's key-call quota.
    async fn key(&self, kid: &str) -> Result<VerifyingKey, KeyError> {
        if let Some(k) = self.keys.lock().await.get(kid) {
            return Ok(*k);
        }
        let now = self.clock.now();
        {
            let mut unknown = self.unknown_kids.lock().await;
            unknown.retain(|_, until| *until > now);
            if unknown.contains_key(kid) {
                return Err(KeyError::Unknown);
            }
        }
        {
            let mut fetches = self.fetches.lock().await;
            while fetches.front().is_some_and(|t| now - *t >= chrono::Duration::minutes(1)) {
                fetches.pop_front();
            }
            if fetches.len() >= 5 {
                return Err(KeyError::Unavailable);
            }
            fetches.push_back(now);
        }
        let token = self.app_token().await?;
        let res = self
            .http
            .get(format!("{}/commerce/notification/v1/public_key/{kid}", self.api_url.trim_end_matches('/')))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|_| KeyError::Unavailable)?;
        match res.status().as_u16() {
            200 => {}
            400 | 404 => {
                let mut unknown = self.unknown_kids.lock().await;
                if unknown.len() < 10_000 {
                    unknown.insert(kid.to_owned(), now + chrono::Duration::minutes(10));
                }
                return Err(KeyError::Unknown);
            }
            _ => return Err(KeyError::Unavailable),
        }
        #[derive(serde::Deserialize)]
        struct K {
            key: String,
        }
        let k: K = small_json(res).await?;
        let key = ebay_deletion::public_key(&k.key).map_err(|_| KeyError::Unavailable)?;
        let mut keys = self.keys.lock().await;
        if keys.len() > 64 {
            keys.clear();
        }
        keys.insert(kid.to_owned(), key);
        Ok(key)
    }

    async fn notice(&self, req: &Request) -> Response {
        let body: &[u8] = req.body().as_ref();
        if body.len() > self.max_body_bytes {
            return http::refuse(413, "body_too_large");
        }
        let refused = |e: Refused| {
            self.metrics.count("EbayDeletionRefused", 1, None);
            warn!(reason = %e, "eBay notice refused");
            http::refuse(412, "signature_invalid")
        };
        let header = match ebay_deletion::parse_header(http::header(req, "x-ebay-signature")) {
            Ok(h) => h,
            Err(e) => return refused(e),
        };
        // Everything that needs no key first: a notice that could never verify costs no call to eBay.
        let signed = match ebay_deletion::prepare(&header, body) {
            Ok(s) => s,
            Err(e) => return refused(e),
        };
        let key = match self.key(&header.kid).await {
            Ok(k) => k,
            Err(KeyError::Unknown) => return refused(Refused::BadKey),
            Err(KeyError::Unavailable) => return http::refuse(503, "temporarily_unavailable"),
        };
        if let Err(e) = signed.verify(&key) {
            return refused(e);
        }
        // Verified: only now is the body read for its content.
        let Ok(n) = serde_json::from_slice::<Notification>(body) else {
            return http::refuse(400, "not_a_notification");
        };
        if n.metadata.topic != ebay_deletion::TOPIC {
            return http::json(204, serde_json::Value::Null);
        }
        let Some(username) = n.notification.data.username.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
            self.metrics.count("EbayDeletionUnmatched", 1, None);
            return http::json(204, serde_json::Value::Null);
        };
        let intake = Intake {
            kind: "deletion".into(),
            marketplace_buyer: Some(format!("ebay:{username}")),
            ..Intake::default()
        };
        let origin = Origin {
            id: data_requests::request_id("ebay", "ebay-account-deletion", Some(&n.notification.notification_id)),
            source: crate::ports::SOURCE_MARKETPLACE_DELETION.into(),
            merchant: None,
        };
        match data_requests::open(&self.requests, &self.queue, &self.hasher, &intake, origin, self.clock.now()).await {
            Ok(opened) => {
                self.metrics.count("EbayDeletionsOpened", u64::from(opened.new), None);
                info!(request = %opened.request.id, new = opened.new, "eBay account deletion opened");
                http::json(204, serde_json::Value::Null)
            }
            Err(IntakeError::Infra(e)) => http::unavailable(&e),
            Err(IntakeError::BadIdentifier(_) | IntakeError::NoIdentifier) => {
                self.metrics.count("EbayDeletionUnmatched", 1, None);
                http::json(204, serde_json::Value::Null)
            }
            Err(e) => {
                warn!(error = %e, "eBay account deletion not opened");
                http::refuse(409, "request_conflict")
            }
        }
    }
}

impl HttpFunction for EbayAccountDeletion {
    async fn http(&self, req: Request, invocation: &Invocation) -> Response {
        let span = tracing::info_span!("ebay_account_deletion", request_id = %invocation.request_id);
        async {
            match *req.method() {
                ::http::Method::GET => {
                    let code = http::query(&req).first("challenge_code").map(str::to_owned);
                    match code.filter(|c| !c.is_empty() && c.len() <= 512) {
                        Some(code) => {
                            let answer = ebay_deletion::challenge_response(
                                &code,
                                self.verification_token.expose_secret(),
                                &self.endpoint_url,
                            );
                            http::json(200, serde_json::json!({ "challengeResponse": answer }))
                        }
                        None => http::refuse(400, "challenge_code_missing"),
                    }
                }
                ::http::Method::POST => self.notice(&req).await,
                _ => http::refuse(405, "method_not_allowed"),
            }
        }
        .instrument(span)
        .await
    }
}
