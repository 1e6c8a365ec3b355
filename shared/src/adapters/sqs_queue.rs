//! [`Queue`] on an SQS queue URL. Bodies only; no message attributes, so nothing personal travels there.

use aws_sdk_sqs::Client;

use super::aws::infra_error;
use crate::ports::{InfraError, Queue};

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

impl Queue for SqsQueue {
    async fn send(&self, body: &str) -> Result<(), InfraError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("sqs", "SendMessage", e))
    }
}

impl SqsQueue {
    /// Sends `bodies` ten at a time, sending again what a batch leaves failed (a few times, then an error:
    /// a caller that fans out is itself retried, and its messages are idempotent).
    pub async fn send_batch(&self, bodies: &[String]) -> Result<(), InfraError> {
        self.send_batch_delayed(bodies, 0).await
    }

    /// [`Self::send_batch`], each message visible only after `delay_secs` (SQS's limit: 900).
    pub async fn send_batch_delayed(&self, bodies: &[String], delay_secs: i32) -> Result<(), InfraError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        for chunk in bodies.chunks(10) {
            let mut pending: Vec<(String, &String)> =
                chunk.iter().enumerate().map(|(i, b)| (i.to_string(), b)).collect();
            for attempt in 0..4u32 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body.as_str())
                            .set_delay_seconds((delay_secs > 0).then_some(delay_secs.min(900)))
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| InfraError {
                        service: "sqs",
                        operation: "SendMessageBatch",
                        retryable: false,
                        source: Some(Box::new(e)),
                    })?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| infra_error("sqs", "SendMessageBatch", e))?;
                let failed: std::collections::HashSet<&str> = out.failed().iter().map(|f| f.id()).collect();
                pending.retain(|(id, _)| failed.contains(id.as_str()));
            }
            if !pending.is_empty() {
                return Err(InfraError {
                    service: "sqs",
                    operation: "SendMessageBatch",
                    retryable: true,
                    source: Some("entries left unsent".into()),
                });
            }
        }
        Ok(())
    }
}
