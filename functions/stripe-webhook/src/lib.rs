//! The Stripe webhook function: translates an API Gateway HTTP API v2 request into the ingest use case
//! and its outcome into a response. Everything else lives in `nex_shared`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use nex_shared::adapters::dynamo_idempotency::DynamoInbox;
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::adapters::secrets;
use nex_shared::config::{ConfigError, InitError, Vars};
use nex_shared::domain::stripe::signature::Verifier;
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::http;
use nex_shared::ports::{Clock, SystemClock};
use nex_shared::usecases::stripe_ingest::{Ingest, IngestSettings};
use tracing::Instrument;

/// Typed configuration; variable names are the ones `template.yaml` sets.
#[derive(Debug, Clone)]
pub struct Config {
    /// The inbox: the one write of a new event, which the table's stream hands to the payments queue.
    pub platform_table: String,
    pub stripe_secret_id: String,
    pub pepper_secret_id: String,
    pub settings: IngestSettings,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            platform_table: v.required("PLATFORM_TABLE")?,
            stripe_secret_id: v.required("STRIPE_WEBHOOK_SECRET_ID")?,
            pepper_secret_id: v.required("SUBJECT_PEPPER_SECRET_ID")?,
            settings: IngestSettings {
                max_body_bytes: v.parsed_or("STRIPE_MAX_BODY_BYTES", 256 * 1024)?,
                tolerance_secs: v.parsed_or("STRIPE_TOLERANCE_SECS", 300)?,
                pinned_api_version: v.optional("STRIPE_API_VERSION"),
            },
        })
    }
}

/// Everything built once per process and lent to every invocation.
pub struct App<C = SystemClock> {
    pub verifier: Verifier,
    pub hasher: SubjectHasher,
    pub clock: C,
    pub inbox: DynamoInbox,
    pub metrics: EmfMetrics,
    pub settings: IngestSettings,
}

impl<C: Clock> App<C> {
    /// Builds the clients and fetches both secrets (once: they are kept for the container's life).
    pub async fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Result<Self, InitError> {
        let sm = aws_sdk_secretsmanager::Client::new(sdk);
        let (stripe, pepper) = tokio::try_join!(
            secrets::fetch(&sm, &config.stripe_secret_id),
            secrets::fetch(&sm, &config.pepper_secret_id)
        )?;
        Ok(Self {
            verifier: Verifier::new(&secrets::stripe_endpoint_secrets(&stripe))
                .map_err(|e| InitError::Unusable(e.to_string()))?,
            hasher: SubjectHasher::new(&pepper),
            clock,
            inbox: DynamoInbox::new(aws_sdk_dynamodb::Client::new(sdk), config.platform_table),
            metrics: EmfMetrics::new("Nex", "stripe-webhook"),
            settings: config.settings,
        })
    }

    /// Handles one request. Never fails: every outcome, expected or not, is a response.
    pub async fn handle(&self, req: ApiGatewayV2httpRequest, request_id: &str) -> ApiGatewayV2httpResponse {
        let span = tracing::info_span!("stripe_webhook", request_id = %request_id);
        async {
            if req.request_context.http.method != aws_lambda_events::http::Method::POST {
                return http::refuse(405, "method_not_allowed");
            }
            let Some(body) = http::raw_body(&req) else {
                return http::refuse(400, "invalid_base64_body");
            };
            let signature = req.headers.get("stripe-signature").and_then(|v| v.to_str().ok());
            let ingest = Ingest {
                verifier: &self.verifier,
                hasher: &self.hasher,
                clock: &self.clock,
                inbox: &self.inbox,
                metrics: &self.metrics,
                settings: &self.settings,
            };
            let result = ingest.handle(signature, &body, request_id).await;
            let response = http::stripe_response(&result);
            match &result {
                Err(nex_shared::usecases::stripe_ingest::IngestError::Unavailable(e)) => {
                    tracing::error!(error = %e, retryable = e.retryable, status = response.status_code, "stripe delivery not saved; asking Stripe to retry");
                }
                Err(e) => tracing::warn!(reason = %e, status = response.status_code, "stripe delivery refused"),
                Ok(_) => {}
            }
            response
        }
        .instrument(span)
        .await
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
