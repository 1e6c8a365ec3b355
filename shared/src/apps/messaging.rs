//! Messaging: the WhatsApp webhook (Meta's handshake and signed deliveries into the inbox), the messaging
//! worker (transcripts, receipts, storefront opt-ins, `DATA`) and the notifications sender (consent-checked
//! sends through the Cloud API).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, Instrument};

use crate::adapters::aws::Aws;
use crate::adapters::dynamo_conversations::DynamoConversations;
use crate::adapters::dynamo_idempotency::{DynamoIdempotency, DynamoInbox};
use crate::adapters::dynamo_ledger::DynamoLedger;
use crate::adapters::dynamo_merchants::DynamoMerchants;
use crate::adapters::dynamo_requests::DynamoDataRequests;
use crate::adapters::emf::EmfMetrics;
use crate::adapters::secrets;
use crate::adapters::sqs_batch::{self, Failure};
use crate::adapters::sqs_queue::SqsQueue;
use crate::adapters::whatsapp_cloud::CloudApi;
use crate::config;
use crate::config::InitError;
use crate::domain::envelope::Envelope;
use crate::domain::subject::SubjectHasher;
use crate::domain::whatsapp::handshake;
use crate::domain::whatsapp::signature::HubVerifier;
use crate::function::{Function, HttpFunction, Invocation, Request, Response, SqsFunction};
use crate::http;
use crate::ports::{Clock, SharedClock};
use crate::usecases::conversation::Conversation;
use crate::usecases::inbox;
use crate::usecases::send_notification::{SendNotification, SendRequest};
use crate::usecases::whatsapp_ingest::{WhatsAppIngest, WhatsAppSettings};

/// `GET` and `POST /webhooks/whatsapp`.
pub struct WhatsAppWebhook {
    pub verifier: HubVerifier,
    pub verify_token: SecretString,
    pub hasher: SubjectHasher,
    pub clock: SharedClock,
    /// The one write per item, handed by the table's stream to the messaging queue.
    pub inbox: DynamoInbox,
    pub ledger: DynamoLedger,
    pub merchants: DynamoMerchants,
    pub metrics: EmfMetrics,
    pub settings: WhatsAppSettings,
}

config! {
    WhatsAppWebhookConfig {
        platform_table: String = "PLATFORM_TABLE",
        messaging_table: String = "MESSAGING_TABLE",
        app_secret_id: String = "WHATSAPP_APP_SECRET_ID",
        verify_token_secret_id: String = "WHATSAPP_VERIFY_TOKEN_SECRET_ID",
        pepper_secret_id: String = "SUBJECT_PEPPER_SECRET_ID",
        max_body_bytes: usize = "WHATSAPP_MAX_BODY_BYTES" or 1024 * 1024,
    }
}

impl Function for WhatsAppWebhook {
    const NAME: &'static str = "whatsapp-webhook";
    type Config = WhatsAppWebhookConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let sm = aws.secrets_manager();
        let (app_secret, verify_token, pepper) = tokio::try_join!(
            secrets::fetch(&sm, &config.app_secret_id),
            secrets::fetch(&sm, &config.verify_token_secret_id),
            secrets::fetch(&sm, &config.pepper_secret_id)
        )?;
        // An empty token would let anyone complete the handshake; refuse to start instead.
        if verify_token.expose_secret().trim().is_empty() {
            return Err(InitError::Unusable("the WhatsApp verify token is empty".into()));
        }
        let ddb = aws.dynamodb();
        Ok(Self {
            verifier: HubVerifier::new(&secrets::whatsapp_app_secrets(&app_secret))
                .ok_or_else(|| InitError::Unusable("the WhatsApp app secret holds no usable secret".into()))?,
            verify_token,
            hasher: SubjectHasher::new(&pepper),
            clock,
            inbox: DynamoInbox::new(ddb.clone(), config.platform_table),
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table.clone()),
            merchants: DynamoMerchants::new(ddb, config.messaging_table),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            settings: WhatsAppSettings { max_body_bytes: config.max_body_bytes },
        })
    }
}

impl HttpFunction for WhatsAppWebhook {
    /// No AWS call starts that could outlast the invocation's deadline.
    async fn http(&self, req: Request, invocation: &Invocation) -> Response {
        let span = tracing::info_span!("whatsapp_webhook", request_id = %invocation.request_id);
        async {
            match *req.method() {
                ::http::Method::GET => {
                    let q = http::query(&req);
                    let answer = handshake::answer(
                        q.first("hub.mode"),
                        q.first("hub.verify_token"),
                        q.first("hub.challenge"),
                        self.verify_token.expose_secret(),
                    );
                    http::handshake_response(answer)
                }
                ::http::Method::POST => {
                    let ingest = WhatsAppIngest {
                        verifier: &self.verifier,
                        hasher: &self.hasher,
                        clock: &self.clock,
                        inbox: &self.inbox,
                        ledger: &self.ledger,
                        merchants: &self.merchants,
                        metrics: &self.metrics,
                        settings: &self.settings,
                        deadline: Some(invocation.deadline),
                    };
                    let signature = http::header(&req, "x-hub-signature-256");
                    http::whatsapp_response(&ingest.handle(signature, req.body(), &invocation.request_id).await)
                }
                _ => http::refuse(405, "method_not_allowed"),
            }
        }
        .instrument(span)
        .await
    }
}

/// The messaging queue, one record at a time (see [`Conversation`]), partial batch failures reported.
pub struct MessagingWorker {
    pub clock: SharedClock,
    pub hasher: SubjectHasher,
    pub ledger: DynamoLedger,
    pub conversations: DynamoConversations,
    pub requests: DynamoDataRequests,
    /// Where the WhatsApp webhook's items wait; the queue carries references to them.
    pub inbox: DynamoInbox,
    /// The notifications sender's claims (the same table), confirmed by status webhooks.
    pub sends: DynamoIdempotency,
    pub data_requests_queue: SqsQueue,
    pub notifications_queue: SqsQueue,
    pub metrics: EmfMetrics,
}

config! {
    MessagingWorkerConfig {
        messaging_table: String = "MESSAGING_TABLE",
        platform_table: String = "PLATFORM_TABLE",
        data_requests_table: String = "DATA_REQUESTS_TABLE",
        data_requests_queue_url: String = "DATA_REQUESTS_QUEUE_URL",
        notifications_queue_url: String = "NOTIFICATIONS_QUEUE_URL",
        pepper_secret_id: String = "SUBJECT_PEPPER_SECRET_ID",
    }
}

impl Function for MessagingWorker {
    const NAME: &'static str = "messaging-worker";
    type Config = MessagingWorkerConfig;

    /// Fetches the subject-hash pepper once, for the container's life.
    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let pepper = secrets::fetch(&aws.secrets_manager(), &config.pepper_secret_id).await?;
        let ddb = aws.dynamodb();
        let sqs = aws.sqs();
        Ok(Self {
            clock,
            hasher: SubjectHasher::new(&pepper),
            ledger: DynamoLedger::new(ddb.clone(), config.messaging_table.clone()),
            conversations: DynamoConversations::new(ddb.clone(), config.messaging_table),
            requests: DynamoDataRequests::new(ddb.clone(), config.data_requests_table),
            inbox: DynamoInbox::new(ddb.clone(), config.platform_table.clone()),
            sends: DynamoIdempotency::new(ddb, config.platform_table),
            data_requests_queue: SqsQueue::new(sqs.clone(), config.data_requests_queue_url),
            notifications_queue: SqsQueue::new(sqs, config.notifications_queue_url),
            metrics: EmfMetrics::new("Nex", Self::NAME),
        })
    }
}

impl SqsFunction for MessagingWorker {
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span =
            tracing::info_span!("messaging_worker", request_id = %invocation.request_id, records = event.records.len());
        let conversation = Conversation {
            clock: &self.clock,
            hasher: &self.hasher,
            ledger: &self.ledger,
            transcripts: &self.conversations,
            requests: &self.requests,
            data_requests_queue: &self.data_requests_queue,
            notifications_queue: &self.notifications_queue,
            metrics: &self.metrics,
            sends: &self.sends,
        };
        let response = sqs_batch::process(event, invocation.deadline, |record| {
            let conversation = &conversation;
            async move {
                let resolved =
                    inbox::resolve(&self.inbox, record.body.as_deref().unwrap_or(""), self.clock.now()).await?;
                let Some(body) = resolved.body() else {
                    info!("webhook item applied before (its inbox body is gone); nothing to do");
                    return Ok(());
                };
                conversation.apply(body).await?;
                inbox::settle(&self.inbox, &resolved).await?;
                Ok::<_, Failure>(())
            }
        })
        .instrument(span)
        .await;
        sqs_batch::count_failed(&self.metrics, "messaging_records_failed", &response);
        response
    }
}

/// The notifications queue: one `notification.send_request` per record, decided and sent by
/// [`SendNotification`]; records that must be retried are reported as batch item failures.
pub struct NotificationsSender {
    pub hasher: SubjectHasher,
    pub clock: SharedClock,
    pub idempotency: DynamoIdempotency,
    pub conversations: DynamoConversations,
    pub cloud: CloudApi,
    pub metrics: EmfMetrics,
    pub confirm_wait: chrono::Duration,
}

config! {
    NotificationsSenderConfig {
        platform_table: String = "PLATFORM_TABLE",
        messaging_table: String = "MESSAGING_TABLE",
        api_base_url: String = "WHATSAPP_API_BASE_URL",
        api_version: String = "WHATSAPP_API_VERSION",
        token_secret_id: String = "WHATSAPP_TOKEN_SECRET_ID",
        pepper_secret_id: String = "SUBJECT_PEPPER_SECRET_ID",
        /// How long a send that may have reached Meta waits for its status webhook before it is sent again
        /// (30..=1200 s).
        confirm_wait_secs: i64 = "NOTIFY_CONFIRM_WAIT_SECS" or 600,
    }
}

impl Function for NotificationsSender {
    const NAME: &'static str = "notifications-sender";
    type Config = NotificationsSenderConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let sm = aws.secrets_manager();
        let (token, pepper) = tokio::try_join!(
            secrets::fetch(&sm, &config.token_secret_id),
            secrets::fetch(&sm, &config.pepper_secret_id)
        )?;
        let ddb = aws.dynamodb();
        Ok(Self {
            hasher: SubjectHasher::new(&pepper),
            clock,
            idempotency: DynamoIdempotency::new(ddb.clone(), config.platform_table),
            conversations: DynamoConversations::new(ddb, config.messaging_table),
            cloud: CloudApi::new(&config.api_base_url, &config.api_version, token)
                .map_err(|e| InitError::Unusable(format!("cannot build the HTTP client: {e}")))?,
            metrics: EmfMetrics::new("Nex", Self::NAME),
            // At most 20 minutes: the queue redelivers every 180 s and gives a message 20 receives.
            confirm_wait: chrono::Duration::seconds(config.confirm_wait_secs.clamp(30, 1_200)),
        })
    }
}

impl SqsFunction for NotificationsSender {
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span = tracing::info_span!("notifications_sender", request_id = %invocation.request_id, records = event.records.len());
        let use_case = SendNotification {
            hasher: &self.hasher,
            clock: &self.clock,
            idempotency: &self.idempotency,
            context: &self.conversations,
            transcripts: &self.conversations,
            cloud: &self.cloud,
            metrics: &self.metrics,
            confirm_wait: self.confirm_wait,
        };
        sqs_batch::process(event, invocation.deadline, |record| {
            let use_case = &use_case;
            async move {
                let env = Envelope::<SendRequest>::decode(record.body.as_deref().unwrap_or(""))?;
                use_case.handle(&env.payload, invocation.deadline).await?;
                Ok::<_, Failure>(())
            }
        })
        .instrument(span)
        .await
    }
}
