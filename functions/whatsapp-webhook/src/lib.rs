//! The WhatsApp webhook function: Meta's GET verification handshake (no signature, by Meta's design) and
//! signed POST deliveries, translated into the ingest use case. Everything else lives in `nex_shared`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::Method;
use nex_shared::adapters::dynamo_idempotency::DynamoInbox;
use nex_shared::adapters::dynamo_messaging::{DynamoLedger, DynamoMerchants};
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::adapters::secrets;
use nex_shared::config::{ConfigError, InitError, Vars};
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::domain::whatsapp::signature::HubVerifier;
use nex_shared::http;
use nex_shared::ports::{Clock, SystemClock};
use nex_shared::usecases::whatsapp_ingest::{WhatsAppError, WhatsAppIngest, WhatsAppSettings};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct Config {
    pub platform_table: String,
    pub messaging_table: String,
    pub app_secret_id: String,
    pub verify_token_secret_id: String,
    pub pepper_secret_id: String,
    pub settings: WhatsAppSettings,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            platform_table: v.required("PLATFORM_TABLE")?,
            messaging_table: v.required("MESSAGING_TABLE")?,
            app_secret_id: v.required("WHATSAPP_APP_SECRET_ID")?,
            verify_token_secret_id: v.required("WHATSAPP_VERIFY_TOKEN_SECRET_ID")?,
            pepper_secret_id: v.required("SUBJECT_PEPPER_SECRET_ID")?,
            settings: WhatsAppSettings {
                max_body_bytes: v.parsed_or("WHATSAPP_MAX_BODY_BYTES", 1024 * 1024)?,
            },
        })
    }
}

/// The app secret's JSON shape: every App Secret currently valid (two while rotating). A plain string is
/// taken as a single secret.
#[derive(serde::Deserialize)]
struct AppSecrets {
    app_secrets: Vec<String>,
}

fn app_secrets(value: &SecretString) -> Vec<SecretString> {
    let raw = value.expose_secret().trim();
    match serde_json::from_str::<AppSecrets>(raw) {
        Ok(s) => s.app_secrets.into_iter().map(SecretString::from).collect(),
        Err(_) => vec![SecretString::from(raw.to_owned())],
    }
}

pub struct App<C = SystemClock> {
    pub verifier: HubVerifier,
    pub verify_token: SecretString,
    pub hasher: SubjectHasher,
    pub clock: C,
    /// The one write per item, handed by the table's stream to the messaging queue.
    pub inbox: DynamoInbox,
    pub ledger: DynamoLedger,
    pub merchants: DynamoMerchants,
    pub metrics: EmfMetrics,
    pub settings: WhatsAppSettings,
}

impl<C: Clock> App<C> {
    pub async fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Result<Self, InitError> {
        let sm = aws_sdk_secretsmanager::Client::new(sdk);
        let (app_secret, verify_token, pepper) = tokio::try_join!(
            secrets::fetch(&sm, &config.app_secret_id),
            secrets::fetch(&sm, &config.verify_token_secret_id),
            secrets::fetch(&sm, &config.pepper_secret_id)
        )?;
        // An empty token would let anyone complete the handshake; refuse to start instead.
        if verify_token.expose_secret().trim().is_empty() {
            return Err(InitError::Unusable("the WhatsApp verify token is empty".into()));
        }
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Ok(Self {
            verifier: HubVerifier::new(&app_secrets(&app_secret))
                .ok_or_else(|| InitError::Unusable("the WhatsApp app secret holds no usable secret".into()))?,
            verify_token,
            hasher: SubjectHasher::new(&pepper),
            clock,
            inbox: DynamoInbox::new(ddb.clone(), config.platform_table),
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table.clone()),
            merchants: DynamoMerchants::new(ddb, config.messaging_table),
            metrics: EmfMetrics::new("Nex", "whatsapp-webhook"),
            settings: config.settings,
        })
    }

    pub async fn handle(&self, req: ApiGatewayV2httpRequest, request_id: &str) -> ApiGatewayV2httpResponse {
        self.handle_until(req, request_id, None).await
    }

    /// Handles one request that is cut off at `deadline` (Lambda's), if known: no AWS call starts that
    /// could outlast it.
    pub async fn handle_until(
        &self,
        req: ApiGatewayV2httpRequest,
        request_id: &str,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> ApiGatewayV2httpResponse {
        let span = tracing::info_span!("whatsapp_webhook", request_id = %request_id);
        async {
            match req.request_context.http.method {
                Method::GET => self.handshake(&req),
                Method::POST => self.delivery(&req, request_id, deadline).await,
                _ => http::refuse(405, "method_not_allowed"),
            }
        }
        .instrument(span)
        .await
    }

    /// `hub.mode=subscribe` with the right `hub.verify_token` echoes `hub.challenge` if it looks like
    /// Meta's (digits only, so the echo can never be markup or script), as `text/plain` with `nosniff`;
    /// anything else is 403.
    fn handshake(&self, req: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let q = &req.query_string_parameters;
        let mode = q.first("hub.mode");
        let token = q.first("hub.verify_token").unwrap_or("");
        let challenge = q.first("hub.challenge").unwrap_or("");
        let token_ok: bool = token
            .as_bytes()
            .ct_eq(self.verify_token.expose_secret().as_bytes())
            .into();
        let looks_like_meta = (1..=64).contains(&challenge.len()) && challenge.bytes().all(|b| b.is_ascii_digit());
        if mode == Some("subscribe") && token_ok && looks_like_meta {
            tracing::info!("webhook verification handshake accepted");
            let mut r = http::plain(200, challenge);
            r.headers.insert(
                "x-content-type-options",
                aws_lambda_events::http::HeaderValue::from_static("nosniff"),
            );
            r
        } else {
            tracing::warn!("webhook verification handshake refused");
            http::refuse(403, "verification_failed")
        }
    }

    async fn delivery(
        &self,
        req: &ApiGatewayV2httpRequest,
        request_id: &str,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> ApiGatewayV2httpResponse {
        let Some(body) = http::raw_body(req) else {
            return http::refuse(400, "invalid_base64_body");
        };
        let signature = req.headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
        let ingest = WhatsAppIngest {
            verifier: &self.verifier,
            hasher: &self.hasher,
            clock: &self.clock,
            inbox: &self.inbox,
            ledger: &self.ledger,
            merchants: &self.merchants,
            metrics: &self.metrics,
            settings: &self.settings,
            deadline,
        };
        let result = ingest.handle(signature, &body, request_id).await;
        let response = http::whatsapp_response(&result);
        match &result {
            Err(WhatsAppError::Unavailable(e)) => {
                tracing::error!(error = %e, retryable = e.retryable, "whatsapp delivery not saved; asking Meta to retry")
            }
            Err(e) => tracing::warn!(reason = %e, status = response.status_code, "whatsapp delivery refused"),
            Ok(_) => {}
        }
        response
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
        self.handle_until(request, &invocation.request_id, Some(invocation.deadline))
            .await
    }
}
