//! Per-record processing of an SQS batch with a partial-batch response.
//!
//! Each record is decoded and handled on its own, in its own span; a record that fails (including one
//! that cannot be decoded) is reported in `batchItemFailures` and only it is redelivered, until the queue's
//! redrive policy moves it to the DLQ. The rest of the batch is never held back by it.

use std::future::Future;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::{error, Instrument};

use crate::domain::envelope::EnvelopeError;
use crate::ports::InfraError;

/// An error that can fail a record, with a stable type name for logs and metrics.
pub trait RecordError: std::fmt::Display {
    fn error_type(&self) -> &'static str;
}

/// Why a record failed: what every consumer's `?` turns a [`RecordError`] into.
#[derive(Debug)]
pub struct Failure {
    pub error_type: &'static str,
    pub cause: String,
}

impl Failure {
    pub fn new(error_type: &'static str, cause: impl std::fmt::Display) -> Self {
        Self { error_type, cause: cause.to_string() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cause)
    }
}

impl<E: RecordError> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::new(e.error_type(), &e)
    }
}

impl RecordError for EnvelopeError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Malformed => "MalformedEnvelope",
            Self::Unsupported { .. } => "UnsupportedMessage",
            Self::BadPayload => "BadPayload",
        }
    }
}

impl RecordError for InfraError {
    fn error_type(&self) -> &'static str {
        "Infrastructure"
    }
}

/// Runs `handle` on every record and reports the ones that failed.
pub async fn process<F, Fut>(event: SqsEvent, mut handle: F) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("record", message_id = %message_id);
        if let Err(e) = handle(record).instrument(span.clone()).await {
            span.in_scope(|| error!(error_type = e.error_type, error = %e, "record failed; left for redelivery"));
            response.batch_item_failures.push(failure(message_id));
        }
    }
    response
}

/// [`process`] with every record of the batch handled side by side: for consumers whose records wait on
/// outside systems (a webhook attempt may take its full 15 s), so one slow record delays no other.
pub async fn process_concurrently<F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let runs = event.records.into_iter().map(|record| {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("record", message_id = %message_id);
        let fut = handle(record).instrument(span.clone());
        async move {
            let result = fut.await;
            if let Err(e) = &result {
                span.in_scope(|| error!(error_type = e.error_type, error = %e, "record failed; left for redelivery"));
            }
            (message_id, result.is_ok())
        }
    });
    let mut response = SqsBatchResponse::default();
    for (message_id, ok) in futures_util::future::join_all(runs).await {
        if !ok {
            response.batch_item_failures.push(failure(message_id));
        }
    }
    response
}

/// The entry of `batchItemFailures` that leaves the record `message_id` for redelivery.
pub fn failure(message_id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = message_id;
    f
}

/// Counts the batch's failed records as `metric` (nothing when none failed).
pub fn count_failed(metrics: &impl crate::ports::Metrics, metric: &'static str, response: &SqsBatchResponse) {
    let failed = response.batch_item_failures.len() as u64;
    if failed > 0 {
        metrics.count(metric, failed, None);
    }
}
