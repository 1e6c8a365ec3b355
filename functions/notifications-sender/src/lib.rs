//! The notifications sender: one `notification.send_request` per SQS record, decided and sent by the
//! `SendNotification` use case; records that must be retried are reported as batch item failures.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use nex_shared::adapters::dynamo_idempotency::DynamoIdempotency;
use nex_shared::adapters::dynamo_messaging::DynamoConversations;
use nex_shared::adapters::emf::EmfMetrics;
use nex_shared::adapters::secrets;
use nex_shared::adapters::sqs_batch::{self, RecordError};
use nex_shared::adapters::whatsapp_cloud::CloudApi;
use nex_shared::config::{ConfigError, InitError, Vars};
use nex_shared::domain::envelope::{Envelope, EnvelopeError};
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::ports::{Clock, SystemClock};
use nex_shared::usecases::send_notification::{NotifyError, SendNotification, SendRequest};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct Config {
    pub platform_table: String,
    pub messaging_table: String,
    pub api_base_url: String,
    pub api_version: String,
    pub token_secret_id: String,
    pub pepper_secret_id: String,
}

impl Config {
    pub fn from_vars(v: &impl Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            platform_table: v.required("PLATFORM_TABLE")?,
            messaging_table: v.required("MESSAGING_TABLE")?,
            api_base_url: v.required("WHATSAPP_API_BASE_URL")?,
            api_version: v.required("WHATSAPP_API_VERSION")?,
            token_secret_id: v.required("WHATSAPP_TOKEN_SECRET_ID")?,
            pepper_secret_id: v.required("SUBJECT_PEPPER_SECRET_ID")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

impl RecordError for SenderError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Envelope(_) => "BadEnvelope",
            Self::Notify(e) => e.error_type(),
        }
    }
}

pub struct App<C = SystemClock> {
    pub hasher: SubjectHasher,
    pub clock: C,
    pub idempotency: DynamoIdempotency,
    pub conversations: DynamoConversations,
    pub cloud: CloudApi,
    pub metrics: EmfMetrics,
}

impl<C: Clock> App<C> {
    pub async fn build(sdk: &aws_config::SdkConfig, config: Config, clock: C) -> Result<Self, InitError> {
        let sm = aws_sdk_secretsmanager::Client::new(sdk);
        let (token, pepper) = tokio::try_join!(
            secrets::fetch(&sm, &config.token_secret_id),
            secrets::fetch(&sm, &config.pepper_secret_id)
        )?;
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Ok(Self {
            hasher: SubjectHasher::new(&pepper),
            clock,
            idempotency: DynamoIdempotency::new(ddb.clone(), config.platform_table),
            conversations: DynamoConversations::new(ddb, config.messaging_table),
            cloud: CloudApi::new(&config.api_base_url, &config.api_version, token)
                .map_err(|e| InitError::Unusable(format!("cannot build the HTTP client: {e}")))?,
            metrics: EmfMetrics::new("Nex", "notifications-sender"),
        })
    }

    pub async fn handle(&self, event: SqsEvent, request_id: &str, deadline: DateTime<Utc>) -> SqsBatchResponse {
        let span = tracing::info_span!("notifications_sender", request_id = %request_id, records = event.records.len());
        let use_case = SendNotification {
            hasher: &self.hasher,
            clock: &self.clock,
            idempotency: &self.idempotency,
            context: &self.conversations,
            transcripts: &self.conversations,
            cloud: &self.cloud,
            metrics: &self.metrics,
        };
        sqs_batch::process(event, |record| {
            let use_case = &use_case;
            async move {
                let env = Envelope::<SendRequest>::decode(record.body.as_deref().unwrap_or(""))?;
                use_case.handle(&env.payload, deadline).await?;
                Ok::<_, SenderError>(())
            }
        })
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

impl nex_shared::function::SqsFunction for App {
    async fn sqs(
        &self,
        event: aws_lambda_events::sqs::SqsEvent,
        invocation: &nex_shared::function::Invocation,
    ) -> aws_lambda_events::sqs::SqsBatchResponse {
        self.handle(event, &invocation.request_id, invocation.deadline).await
    }
}
