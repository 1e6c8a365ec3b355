//! The consent API: `POST /consent/opt-ins` with `Authorization: Bearer <merchant API key>` and an
//! `OptIn` JSON body. The merchant comes from the key, never from the body, so a merchant can record
//! consent only for itself.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::Method;
use nex_shared::adapters::dynamo_messaging::{DynamoLedger, DynamoMerchants};
use nex_shared::adapters::secrets;
use nex_shared::config::{ConfigError, InitError, Vars};
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::http;
use nex_shared::ports::{Clock, MerchantKeys, SystemClock};
use nex_shared::usecases::opt_in::{self, OptIn, OptInError};
use sha2::{Digest, Sha256};
use tracing::Instrument;

/// Opt-in bodies are a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub messaging_table: String,
    pub pepper_secret_id: String,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            messaging_table: v.required("MESSAGING_TABLE")?,
            pepper_secret_id: v.required("SUBJECT_PEPPER_SECRET_ID")?,
        })
    }
}

pub struct App<C = SystemClock> {
    pub hasher: SubjectHasher,
    pub clock: C,
    pub ledger: DynamoLedger,
    pub keys: DynamoMerchants,
}

impl<C: Clock> App<C> {
    pub async fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Result<Self, InitError> {
        let pepper = secrets::fetch(&aws_sdk_secretsmanager::Client::new(sdk), &config.pepper_secret_id).await?;
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Ok(Self {
            hasher: SubjectHasher::new(&pepper),
            clock,
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table.clone()),
            keys: DynamoMerchants::new(ddb, config.messaging_table),
        })
    }

    pub async fn handle(&self, req: ApiGatewayV2httpRequest, request_id: &str) -> ApiGatewayV2httpResponse {
        let span = tracing::info_span!("consent_api", request_id = %request_id);
        self.opt_in(req).instrument(span).await
    }

    async fn opt_in(&self, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        if req.request_context.http.method != Method::POST {
            return http::refuse(405, "method_not_allowed");
        }
        let key = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let Some(key) = key else {
            return http::refuse(401, "missing_api_key");
        };
        let merchant = match self
            .keys
            .merchant_for_key(&hex::encode(Sha256::digest(key.as_bytes())))
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => return http::refuse(401, "unknown_api_key"),
            Err(e) => {
                tracing::error!(error = %e, "api key lookup failed");
                return http::refuse(503, "temporarily_unavailable");
            }
        };
        let Some(body) = http::raw_body(&req) else {
            return http::refuse(400, "invalid_base64_body");
        };
        if body.len() > MAX_BODY {
            return http::refuse(413, "body_too_large");
        }
        let Ok(request) = serde_json::from_slice::<OptIn>(&body) else {
            return http::refuse(400, "invalid_opt_in");
        };
        match opt_in::record(&self.ledger, &self.hasher, &merchant, &request, self.clock.now()).await {
            Ok(n) => {
                tracing::info!(merchant = %merchant, source = %request.source, identifiers = n, "opt-in recorded");
                http::json(201, serde_json::json!({ "status": "recorded", "identifiers": n }))
            }
            Err(OptInError::Infra(e)) => {
                tracing::error!(error = %e, "opt-in not recorded");
                http::refuse(503, "temporarily_unavailable")
            }
            Err(e) => http::refuse(422, e.reason()),
        }
    }
}
