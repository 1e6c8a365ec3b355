//! The merchant API, every route with `Authorization: Bearer <merchant API key>`. The merchant comes from
//! the key, never from the body, so a merchant acts only for itself:
//! - `POST /consent/opt-ins`: an `OptIn` JSON body records marketing opt-ins;
//! - `POST /data-requests`: a support team opens a data-subject request for a customer
//!   (`{"kind": "access"|"export"|"deletion"|"correction", "phone"|"email"|"bsuid"|"marketplace_buyer": ..,
//!   "reference": <their ticket, optional, makes the call idempotent>}`), answered 202 with its id;
//! - `GET /data-requests/{id}`: its status, outcome and, for an export, a link valid 15 minutes.
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
}

config! {
    MerchantApiConfig {
        messaging_table: String = "MESSAGING_TABLE",
        pepper_secret_id: String = "SUBJECT_PEPPER_SECRET_ID",
        data_requests_table: String = "DATA_REQUESTS_TABLE",
        data_requests_queue_url: String = "DATA_REQUESTS_QUEUE_URL",
        exports_bucket: String = "EXPORTS_BUCKET",
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
}

impl Function for MerchantApi {
    const NAME: &'static str = "merchant-api";
    type Config = MerchantApiConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let pepper = secrets::fetch(&aws.secrets_manager(), &config.pepper_secret_id).await?;
        let ddb = aws.dynamodb();
        Ok(Self {
            hasher: SubjectHasher::new(&pepper),
            clock,
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table.clone()),
            keys: DynamoMerchants::new(ddb.clone(), config.messaging_table),
            requests: DynamoDataRequests::new(ddb, config.data_requests_table),
            requests_queue: SqsQueue::new(aws.sqs(), config.data_requests_queue_url),
            exports: S3Objects::new(aws.s3(), config.exports_bucket),
        })
    }
}

impl HttpFunction for MerchantApi {
    async fn http(&self, req: Request, invocation: &Invocation) -> Response {
        let span = tracing::info_span!("merchant_api", request_id = %invocation.request_id);
        async {
            let route = match (req.method(), req.uri().path()) {
                (&::http::Method::POST, "/consent/opt-ins") => Route::OptIn,
                (&::http::Method::POST, "/data-requests") => Route::OpenRequest,
                (&::http::Method::GET, p) if p.len() > "/data-requests/".len() && p.starts_with("/data-requests/") => {
                    Route::ShowRequest(p["/data-requests/".len()..].to_owned())
                }
                (_, "/consent/opt-ins" | "/data-requests") => return http::refuse(405, "method_not_allowed"),
                _ => return http::refuse(404, "not_found"),
            };
            let merchant = match merchant_api::merchant(&self.keys, http::header(&req, "authorization")).await {
                Ok(m) => m,
                Err(e) => return http::key_refused(&e),
            };
            let body = req.body().as_ref();
            if !matches!(route, Route::ShowRequest(_)) && body.len() > MAX_BODY {
                return http::refuse(413, "body_too_large");
            }
            match route {
                Route::OptIn => self.opt_in(&merchant, body).await,
                Route::OpenRequest => self.open_request(&merchant, body).await,
                Route::ShowRequest(id) => {
                    let shown = merchant_api::shown_to(&self.requests, &self.exports, &merchant, &id).await;
                    http::request_shown(&shown)
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
