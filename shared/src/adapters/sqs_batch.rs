//! Per-record processing of an SQS batch with a partial-batch response.
//!
//! Each record is decoded and handled on its own, in its own span; a record that fails (including one
//! that cannot be decoded) is reported in `batchItemFailures` and only it is redelivered, until the queue's
//! redrive policy moves it to the DLQ. The rest of the batch is never held back by it.

use std::future::Future;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::{error, Instrument};

/// A record-level failure with a stable type name for logs and metrics.
pub trait RecordError: std::fmt::Display {
    fn error_type(&self) -> &'static str;
}

/// Runs `handle` on every record and reports the ones that failed.
pub async fn process<F, Fut, E>(event: SqsEvent, mut handle: F) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: RecordError,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("record", message_id = %message_id);
        if let Err(e) = handle(record).instrument(span.clone()).await {
            span.in_scope(|| error!(error_type = e.error_type(), error = %e, "record failed; left for redelivery"));
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}
