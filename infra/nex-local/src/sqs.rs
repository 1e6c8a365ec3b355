//! One round of what Lambda's SQS poller does: receive a batch, invoke the consumer with an SQS event,
//! delete what succeeded and leave what failed for redelivery (and, after `maxReceiveCount`, the DLQ).

use std::collections::HashSet;
use std::future::Future;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::MessageSystemAttributeName;

pub struct Target<'a> {
    pub queue_url: &'a str,
    pub queue_arn: &'a str,
    pub region: &'a str,
    pub batch_size: i32,
    pub report_batch_item_failures: bool,
    /// Overrides the queue's visibility timeout for received messages (tests use a short one so that
    /// redelivery happens in seconds, not minutes).
    pub visibility_timeout: Option<i32>,
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub received: usize,
    pub failed: usize,
}

pub async fn deliver_once<F, Fut>(sqs: &aws_sdk_sqs::Client, target: &Target<'_>, invoke: F) -> Result<Round, String>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    // Like Lambda's poller with a batching window: batches larger than one receive (10) are gathered
    // from receives in a row while the queue keeps giving full ones.
    let mut messages = Vec::new();
    let want = target.batch_size.max(1) as usize;
    while messages.len() < want {
        let received = sqs
            .receive_message()
            .queue_url(target.queue_url)
            .max_number_of_messages((want - messages.len()).clamp(1, 10) as i32)
            .wait_time_seconds(if messages.is_empty() { 1 } else { 0 })
            .set_visibility_timeout(target.visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| format!("ReceiveMessage: {e}"))?;
        let got = received.messages.unwrap_or_default();
        let full = got.len() == 10;
        messages.extend(got);
        if !full {
            break;
        }
    }
    if messages.is_empty() {
        return Ok(Round::default());
    }
    let response = invoke(crate::events::sqs(&messages, target.queue_arn, target.region)).await;
    let failed: HashSet<String> = if target.report_batch_item_failures {
        response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
    } else if response.batch_item_failures.is_empty() {
        HashSet::new()
    } else {
        // Without ReportBatchItemFailures, any failure fails the whole batch.
        messages.iter().filter_map(|m| m.message_id.clone()).collect()
    };
    for m in messages.iter().filter(|m| !failed.contains(m.message_id().unwrap_or_default())) {
        if let Some(handle) = m.receipt_handle() {
            sqs.delete_message()
                .queue_url(target.queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| format!("DeleteMessage (the message will be redelivered): {e}"))?;
        }
    }
    Ok(Round { received: messages.len(), failed: failed.len() })
}
