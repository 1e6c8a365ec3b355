//! Payments: the Stripe webhook (verify, hand to the inbox, answer) and the payments worker (apply each
//! event to its order's payment record, then queue the customer's notification).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tracing::{info, Instrument};

use crate::adapters::aws::Aws;
use crate::adapters::dynamo_idempotency::{DynamoIdempotency, DynamoInbox};
use crate::adapters::dynamo_payments::DynamoPayments;
use crate::adapters::emf::EmfMetrics;
use crate::adapters::secrets;
use crate::adapters::sqs_batch::{self, Failure};
use crate::adapters::sqs_queue::SqsQueue;
use crate::config;
use crate::config::InitError;
use crate::domain::envelope::Envelope;
use crate::domain::stripe::event::PaymentEvent;
use crate::domain::stripe::signature::Verifier;
use crate::domain::subject::SubjectHasher;
use crate::function::{Function, HttpFunction, Invocation, Request, Response, SqsFunction};
use crate::http;
use crate::ports::{Clock, SharedClock};
use crate::usecases::apply_payment::{Applied, ApplyPayment};
use crate::usecases::inbox;
use crate::usecases::stripe_ingest::{Ingest, IngestSettings};

/// `POST /webhooks/stripe`.
pub struct StripeWebhook {
    pub verifier: Verifier,
    pub hasher: SubjectHasher,
    pub clock: SharedClock,
    /// The one write of a new event, which the table's stream hands to the payments queue.
    pub inbox: DynamoInbox,
    pub metrics: EmfMetrics,
    pub settings: IngestSettings,
}

config! {
    /// The Stripe webhook's variables.
    StripeWebhookConfig {
        platform_table: String = "PLATFORM_TABLE",
        stripe_secret_id: String = "STRIPE_WEBHOOK_SECRET_ID",
        pepper_secret_id: String = "SUBJECT_PEPPER_SECRET_ID",
        max_body_bytes: usize = "STRIPE_MAX_BODY_BYTES" or 256 * 1024,
        tolerance_secs: u64 = "STRIPE_TOLERANCE_SECS" or 300,
        pinned_api_version: Option<String> = "STRIPE_API_VERSION",
    }
}

impl Function for StripeWebhook {
    const NAME: &'static str = "stripe-webhook";
    type Config = StripeWebhookConfig;

    /// Fetches both secrets once: they are kept for the container's life.
    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let sm = aws.secrets_manager();
        let (stripe, pepper) = tokio::try_join!(
            secrets::fetch(&sm, &config.stripe_secret_id),
            secrets::fetch(&sm, &config.pepper_secret_id)
        )?;
        Ok(Self {
            verifier: Verifier::new(&secrets::stripe_endpoint_secrets(&stripe))
                .map_err(|e| InitError::Unusable(e.to_string()))?,
            hasher: SubjectHasher::new(&pepper),
            clock,
            inbox: DynamoInbox::new(aws.dynamodb(), config.platform_table),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            settings: IngestSettings {
                max_body_bytes: config.max_body_bytes,
                tolerance_secs: config.tolerance_secs,
                pinned_api_version: config.pinned_api_version,
            },
        })
    }
}

impl HttpFunction for StripeWebhook {
    async fn http(&self, req: Request, invocation: &Invocation) -> Response {
        let span = tracing::info_span!("stripe_webhook", request_id = %invocation.request_id);
        async {
            if req.method() != ::http::Method::POST {
                return http::refuse(405, "method_not_allowed");
            }
            let ingest = Ingest {
                verifier: &self.verifier,
                hasher: &self.hasher,
                clock: &self.clock,
                inbox: &self.inbox,
                metrics: &self.metrics,
                settings: &self.settings,
            };
            let result =
                ingest.handle(http::header(&req, "stripe-signature"), req.body(), &invocation.request_id).await;
            http::stripe_response(&result)
        }
        .instrument(span)
        .await
    }
}

/// The payment events queue: one `ApplyPayment` per record; failed records are reported, so only they are
/// redelivered (and, after the queue's `maxReceiveCount`, moved to the DLQ).
pub struct PaymentsWorker {
    pub clock: SharedClock,
    pub idempotency: DynamoIdempotency,
    /// Where the webhook's events wait; the queue carries references to them.
    pub inbox: DynamoInbox,
    pub payments: DynamoPayments,
    pub notifications: SqsQueue,
    /// The order events queue: payment changes, for forwarding to the merchant's endpoints.
    pub forward: SqsQueue,
    pub metrics: EmfMetrics,
}

config! {
    PaymentsWorkerConfig {
        platform_table: String = "PLATFORM_TABLE",
        payments_table: String = "PAYMENTS_TABLE",
        notifications_queue_url: String = "NOTIFICATIONS_QUEUE_URL",
        order_events_queue_url: String = "ORDER_EVENTS_QUEUE_URL",
    }
}

impl Function for PaymentsWorker {
    const NAME: &'static str = "payments-worker";
    type Config = PaymentsWorkerConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        let ddb = aws.dynamodb();
        Ok(Self {
            clock,
            idempotency: DynamoIdempotency::new(ddb.clone(), config.platform_table.clone()),
            inbox: DynamoInbox::new(ddb.clone(), config.platform_table),
            payments: DynamoPayments::new(ddb, config.payments_table),
            notifications: SqsQueue::new(aws.sqs(), config.notifications_queue_url),
            forward: SqsQueue::new(aws.sqs(), config.order_events_queue_url),
            metrics: EmfMetrics::new("Nex", Self::NAME),
        })
    }
}

impl SqsFunction for PaymentsWorker {
    /// The invocation's deadline bounds the idempotency locks.
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span =
            tracing::info_span!("payments_worker", request_id = %invocation.request_id, records = event.records.len());
        let use_case = ApplyPayment {
            clock: &self.clock,
            idempotency: &self.idempotency,
            payments: &self.payments,
            notifications: &self.notifications,
            forward: Some(&self.forward),
        };
        let response = sqs_batch::process(event, invocation.deadline, |record| {
            let use_case = &use_case;
            async move {
                let resolved = inbox::resolve(&self.inbox, record.body.as_deref().unwrap_or(""), self.clock.now()).await?;
                let Some(body) = resolved.body() else {
                    info!("payment event applied before (its inbox body is gone); nothing to do");
                    return Ok(());
                };
                let envelope = Envelope::<PaymentEvent>::decode(body)?;
                let outcome = use_case.handle(&envelope.payload, invocation.deadline).await?;
                inbox::settle(&self.inbox, &resolved).await?;
                let (status, effect) = match &outcome {
                    Applied::Updated { status } => (status.as_str(), "updated"),
                    Applied::Unchanged { status } => (status.as_str(), "unchanged"),
                    Applied::AlreadyDone => ("", "already_done"),
                    Applied::PastDeadline => ("", "past_retention_deadline_not_stored"),
                };
                info!(event_id = %envelope.id, trace_id = %envelope.trace_id, event_type = %envelope.payload.event_type, effect, status, "payment event applied");
                Ok::<_, Failure>(())
            }
        })
        .instrument(span)
        .await;
        sqs_batch::count_failed(&self.metrics, "payment_records_failed", &response);
        response
    }
}
