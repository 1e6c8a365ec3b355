//! Per-record processing of an SQS batch with a partial-batch response.
//!
//! Each record is decoded and handled on its own, in its own span; a record that fails (including one
//! that cannot be decoded) is reported in `batchItemFailures` and only it is redelivered, until the queue's
//! redrive policy moves it to the DLQ. The rest of the batch is never held back by it.

use std::future::Future;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use tracing::{error, warn, Instrument};

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

/// Runs `handle` on every record, one after another, and reports the ones that failed. A record is
/// started only while the invocation has at least as long left before `deadline` as its slowest record
/// so far took: the rest are reported without being touched, so that what was done is kept (deleted from
/// the queue) and the rest is redelivered, instead of Lambda stopping the invocation at its time limit
/// and the whole batch coming back.
pub async fn process<F, Fut>(event: SqsEvent, deadline: DateTime<Utc>, mut handle: F) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut response = SqsBatchResponse::default();
    // The slowest record so far; none before the first has run (which therefore always runs).
    let mut slowest: Option<chrono::Duration> = None;
    let mut records = event.records.into_iter();
    while let Some(record) = records.next() {
        let message_id = record.message_id.clone().unwrap_or_default();
        if slowest.is_some_and(|took| Utc::now() + took > deadline) {
            let left: Vec<String> =
                std::iter::once(message_id).chain(records.map(|r| r.message_id.unwrap_or_default())).collect();
            warn!(
                left = left.len(),
                "the invocation's time is nearly up; the rest of the batch is left for redelivery"
            );
            response.batch_item_failures.extend(left.into_iter().map(failure));
            break;
        }
        let started = Utc::now();
        let span = tracing::info_span!("record", message_id = %message_id);
        if let Err(e) = handle(record).instrument(span.clone()).await {
            span.in_scope(|| error!(error_type = e.error_type, error = %e, "record failed; left for redelivery"));
            response.batch_item_failures.push(failure(message_id));
        }
        slowest = slowest.max(Some(Utc::now() - started));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = (0..n)
            .map(|i| {
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("m-{i}"));
                m
            })
            .collect();
        event
    }

    fn ids(response: &SqsBatchResponse) -> Vec<&str> {
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    #[tokio::test]
    async fn every_record_runs_while_there_is_time_and_only_failures_are_reported() {
        let mut seen = Vec::new();
        let response = process(batch(3), Utc::now() + chrono::Duration::seconds(60), |m| {
            let id = m.message_id.unwrap_or_default();
            seen.push(id.clone());
            async move {
                if id == "m-1" {
                    Err(Failure::new("Test", "no"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(seen, ["m-0", "m-1", "m-2"]);
        assert_eq!(ids(&response), ["m-1"]);
    }

    #[tokio::test]
    async fn a_record_that_would_not_fit_before_the_deadline_is_left_untouched_with_the_rest() {
        let mut seen = Vec::new();
        // The first record takes 300 ms; 400 ms are left for the second, not 300 ms after it.
        let response = process(batch(4), Utc::now() + chrono::Duration::milliseconds(700), |m| {
            seen.push(m.message_id.unwrap_or_default());
            async {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Ok(())
            }
        })
        .await;
        assert_eq!(seen, ["m-0", "m-1"], "started only while the slowest so far still fitted");
        assert_eq!(ids(&response), ["m-2", "m-3"], "the untouched records are redelivered, the done ones kept");
    }

    #[tokio::test]
    async fn the_first_record_always_runs_even_past_the_deadline() {
        let mut seen = 0;
        let response = process(batch(2), Utc::now() - chrono::Duration::seconds(1), |_| {
            seen += 1;
            async { Ok(()) }
        })
        .await;
        assert_eq!(seen, 1, "nothing to measure a record by yet: the first one runs, the second does not");
        assert_eq!(ids(&response), ["m-1"]);
    }
}
