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
