//! The merchant API, every route with `Authorization: Bearer <merchant API key>`. The merchant comes from
//! the key, never from the body, so a merchant acts only for itself:
//! - `POST /consent/opt-ins`: an `OptIn` JSON body records marketing opt-ins;
//! - `POST /data-requests`: a support team opens a data-subject request for a customer
//!   (`{"kind": "access"|"export"|"deletion"|"correction", "phone"|"email"|"bsuid"|"marketplace_buyer": ..,
//!   "reference": <their ticket, optional, makes the call idempotent>}`), answered 202 with its id;
//! - `GET /data-requests/{id}`: its status, outcome and, for an export, a link valid 15 minutes.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::Method;
use nex_shared::adapters::aws::s3_path_style;
use nex_shared::adapters::dynamo_messaging::{DynamoLedger, DynamoMerchants};
use nex_shared::adapters::dynamo_requests::DynamoDataRequests;
use nex_shared::adapters::s3_objects::S3Objects;
use nex_shared::adapters::secrets;
use nex_shared::adapters::sqs_queue::SqsQueue;
use nex_shared::config::{ConfigError, InitError, Vars};
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::http;
use nex_shared::ports::{Clock, DataRequests, MerchantKeys, ObjectStore, SystemClock};
use nex_shared::usecases::data_requests::{self, Intake, IntakeError, Origin};
use nex_shared::usecases::opt_in::{self, OptIn, OptInError};
use sha2::{Digest, Sha256};
use tracing::Instrument;

/// Opt-in bodies are a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub messaging_table: String,
    pub pepper_secret_id: String,
    pub data_requests_table: String,
    pub data_requests_queue_url: String,
    pub exports_bucket: String,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            messaging_table: v.required("MESSAGING_TABLE")?,
            pepper_secret_id: v.required("SUBJECT_PEPPER_SECRET_ID")?,
            data_requests_table: v.required("DATA_REQUESTS_TABLE")?,
            data_requests_queue_url: v.required("DATA_REQUESTS_QUEUE_URL")?,
            exports_bucket: v.required("EXPORTS_BUCKET")?,
        })
    }
}

pub struct App<C = SystemClock> {
    pub hasher: SubjectHasher,
    pub clock: C,
    pub ledger: DynamoLedger,
    pub keys: DynamoMerchants,
    pub requests: DynamoDataRequests,
    pub requests_queue: SqsQueue,
    pub exports: S3Objects,
}

/// A refusal: status and reason, made into a response by `http::refuse`.
struct Refused(u16, &'static str);

enum Route {
    OptIn,
    OpenRequest,
    ShowRequest(String),
}

/// How long an export link works.
const LINK_VALID: std::time::Duration = std::time::Duration::from_secs(15 * 60);

#[derive(serde::Deserialize)]
struct RequestBody {
    #[serde(flatten)]
    intake: Intake,
    #[serde(default)]
    reference: Option<String>,
}

impl<C: Clock> App<C> {
    pub async fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Result<Self, InitError> {
        let pepper = secrets::fetch(&aws_sdk_secretsmanager::Client::new(sdk), &config.pepper_secret_id).await?;
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Ok(Self {
            hasher: SubjectHasher::new(&pepper),
            clock,
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table.clone()),
            keys: DynamoMerchants::new(ddb.clone(), config.messaging_table),
            requests: DynamoDataRequests::new(ddb.clone(), config.data_requests_table.clone()),
            requests_queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.data_requests_queue_url),
            exports: S3Objects::new(sdk, config.exports_bucket, s3_path_style()),
        })
    }

    pub async fn handle(&self, req: ApiGatewayV2httpRequest, request_id: &str) -> ApiGatewayV2httpResponse {
        let span = tracing::info_span!("merchant_api", request_id = %request_id);
        self.route(req).instrument(span).await
    }

    async fn route(&self, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let path = req.request_context.http.path.clone().unwrap_or_default();
        let method = req.request_context.http.method.clone();
        let route = match (&method, path.as_str()) {
            (&Method::POST, "/consent/opt-ins") => Route::OptIn,
            (&Method::POST, "/data-requests") => Route::OpenRequest,
            (&Method::GET, p) if p.len() > "/data-requests/".len() && p.starts_with("/data-requests/") => {
                Route::ShowRequest(p["/data-requests/".len()..].to_owned())
            }
            (_, "/consent/opt-ins" | "/data-requests") => return http::refuse(405, "method_not_allowed"),
            _ => return http::refuse(404, "not_found"),
        };
        let merchant = match self.merchant(&req).await {
            Ok(m) => m,
            Err(refused) => return refused,
        };
        match route {
            Route::OptIn => self.opt_in(&merchant, req).await,
            Route::OpenRequest => self.open_request(&merchant, req).await,
            Route::ShowRequest(id) => self.show_request(&merchant, &id).await,
        }
    }

    /// The merchant owning the request's API key, or the response refusing it.
    async fn merchant(&self, req: &ApiGatewayV2httpRequest) -> Result<String, ApiGatewayV2httpResponse> {
        let key = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|k| !k.is_empty());
        let Some(key) = key else {
            return Err(http::refuse(401, "missing_api_key"));
        };
        match self
            .keys
            .merchant_for_key(&hex::encode(Sha256::digest(key.as_bytes())))
            .await
        {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(http::refuse(401, "unknown_api_key")),
            // Nothing was done yet: a retryable failure is "try again" (429 with Retry-After).
            Err(e) => {
                tracing::error!(error = %e, "api key lookup failed");
                Err(http::unavailable(e.retryable))
            }
        }
    }

    fn body(req: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, Refused> {
        let Some(body) = http::raw_body(req) else {
            return Err(Refused(400, "invalid_base64_body"));
        };
        if body.len() > MAX_BODY {
            return Err(Refused(413, "body_too_large"));
        }
        Ok(body)
    }

    async fn open_request(&self, merchant: &str, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let body = match Self::body(&req) {
            Ok(b) => b,
            Err(Refused(status, reason)) => return http::refuse(status, reason),
        };
        let Ok(asked) = serde_json::from_slice::<RequestBody>(&body) else {
            return http::refuse(400, "invalid_data_request");
        };
        if asked
            .reference
            .as_deref()
            .is_some_and(|r| !nex_shared::domain::validate::is_id(r))
        {
            return http::refuse(422, "invalid_reference");
        }
        let now = self.clock.now();
        let origin = Origin {
            id: data_requests::request_id("api", merchant, asked.reference.as_deref()),
            source: nex_shared::ports::SOURCE_MERCHANT_API.into(),
            merchant: Some(merchant.to_owned()),
        };
        match data_requests::open(
            &self.requests,
            &self.requests_queue,
            &self.hasher,
            &asked.intake,
            origin,
            now,
        )
        .await
        {
            Ok(o) => {
                tracing::info!(merchant = %merchant, request = %o.request.id, kind = %o.request.kind, new = o.new, "data-subject request opened");
                http::json(
                    202,
                    serde_json::json!({
                        "id": o.request.id,
                        "kind": o.request.kind,
                        "answer_by": o.request.answer_by,
                        "status": if o.new { "received" } else { "already_open" },
                    }),
                )
            }
            Err(IntakeError::Infra(e)) => {
                tracing::error!(error = %e, "data-subject request not opened");
                http::unavailable(e.retryable)
            }
            Err(IntakeError::Kind) => http::refuse(422, "unknown_kind"),
            Err(IntakeError::NoIdentifier) => http::refuse(422, "no_identifier"),
            Err(IntakeError::BadIdentifier(which)) => http::refuse(
                422,
                match which {
                    "phone" => "invalid_phone",
                    "email" => "invalid_email",
                    "bsuid" => "invalid_bsuid",
                    _ => "invalid_marketplace_buyer",
                },
            ),
            Err(IntakeError::ReferenceReused) => http::refuse(409, "reference_reused"),
        }
    }

    async fn show_request(&self, merchant: &str, id: &str) -> ApiGatewayV2httpResponse {
        let rec = match self.requests.get(id).await {
            // Only a request this merchant opened through this API: never a person's own request or an
            // operator's, even one that names the merchant.
            Ok(Some(r))
                if r.request.source == nex_shared::ports::SOURCE_MERCHANT_API
                    && r.request.merchant.as_deref() == Some(merchant) =>
            {
                r
            }
            // Another merchant's request is as absent as an unknown one.
            Ok(_) => return http::refuse(404, "not_found"),
            Err(e) => {
                tracing::error!(error = %e, "data-subject request not read");
                return http::refuse(503, "temporarily_unavailable");
            }
        };
        let link = match &rec.export_key {
            Some(k) => match self.exports.presigned_get(k, LINK_VALID).await {
                Ok(url) => Some(url),
                Err(e) => {
                    tracing::error!(error = %e, "export link not signed");
                    return http::refuse(503, "temporarily_unavailable");
                }
            },
            None => None,
        };
        let result = rec
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok());
        http::json(
            200,
            serde_json::json!({
                "id": rec.request.id,
                "kind": rec.request.kind,
                "status": rec.status,
                "received_at": rec.request.received_at,
                "answer_by": rec.request.answer_by,
                "completed_at": rec.completed_at,
                "result": result,
                "export_url": link,
                "export_url_valid_seconds": link.as_ref().map(|_| LINK_VALID.as_secs()),
            }),
        )
    }

    async fn opt_in(&self, merchant: &str, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let body = match Self::body(&req) {
            Ok(b) => b,
            Err(Refused(status, reason)) => return http::refuse(status, reason),
        };
        let Ok(request) = serde_json::from_slice::<OptIn>(&body) else {
            return http::refuse(400, "invalid_opt_in");
        };
        match opt_in::record(&self.ledger, &self.hasher, merchant, &request, self.clock.now()).await {
            Ok(n) => {
                tracing::info!(merchant = %merchant, source = %request.source, identifiers = n, "opt-in recorded");
                http::json(201, serde_json::json!({ "status": "recorded", "identifiers": n }))
            }
            Err(OptInError::Infra(e)) => {
                tracing::error!(error = %e, "opt-in not recorded");
                http::unavailable(e.retryable)
            }
            Err(e) => http::refuse(422, e.reason()),
        }
    }
}

/// The function's shape (see `nex_shared::function`): its configuration, its app, its trigger.
impl nex_shared::function::Function for App {
    type Config = Config;

    fn config(vars: &impl nex_shared::config::Vars) -> Result<Config, nex_shared::config::ConfigError> {
        Config::from_vars(vars)
    }

    async fn build(sdk: &aws_config::SdkConfig, config: Config) -> Result<Self, nex_shared::config::InitError> {
        App::build(sdk, config, SystemClock).await
    }
}

impl nex_shared::function::HttpFunction for App {
    async fn http(
        &self,
        request: aws_lambda_events::apigw::ApiGatewayV2httpRequest,
        invocation: &nex_shared::function::Invocation,
    ) -> aws_lambda_events::apigw::ApiGatewayV2httpResponse {
        self.handle(request, &invocation.request_id).await
    }
}
