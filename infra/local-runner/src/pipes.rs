//! EventBridge Pipes from a DynamoDB stream to SQS, as `template.yaml` declares them, for the local stack
//! and the tests (moto keeps streams but runs no pipe): every new image with a `body` whose key starts
//! with one of the pipe's prefixes becomes `{"inbox": <key>}` on the target queue.
//!
//! Like the real pipe, a shard's position moves only past records that were forwarded (or filtered out),
//! so a failed send is retried on the next pump, and a record may be forwarded twice but never lost.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{OperationType, Record, ShardIteratorType};
use tokio::sync::Mutex;

use crate::manifest::PipeSpec;

pub struct Pipes {
    streams: aws_sdk_dynamodbstreams::Client,
    sqs: aws_sdk_sqs::Client,
    pipes: Vec<PipeSpec>,
    /// (pipe, shard) -> the iterator to read next.
    positions: Mutex<HashMap<(String, String), String>>,
}

impl Pipes {
    pub fn new(sdk: &aws_config::SdkConfig, sqs: aws_sdk_sqs::Client, pipes: Vec<PipeSpec>) -> Self {
        Self {
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            sqs,
            pipes,
            positions: Mutex::new(HashMap::new()),
        }
    }

    /// Reads every shard of every pipe from where it stopped; returns how many references it queued.
    pub async fn pump(&self) -> Result<usize, String> {
        let mut positions = self.positions.lock().await;
        let mut sent = 0;
        for pipe in &self.pipes {
            let shards = self
                .streams
                .describe_stream()
                .stream_arn(&pipe.stream_arn)
                .send()
                .await
                .map_err(|e| format!("{}: DescribeStream: {e}", pipe.name))?
                .stream_description
                .and_then(|d| d.shards)
                .unwrap_or_default();
            for shard in shards {
                let Some(shard_id) = shard.shard_id else { continue };
                let slot = (pipe.name.clone(), shard_id.clone());
                let mut iterator = match positions.get(&slot) {
                    Some(i) => i.clone(),
                    None => self
                        .streams
                        .get_shard_iterator()
                        .stream_arn(&pipe.stream_arn)
                        .shard_id(&shard_id)
                        .shard_iterator_type(ShardIteratorType::TrimHorizon)
                        .send()
                        .await
                        .map_err(|e| format!("{}: GetShardIterator: {e}", pipe.name))?
                        .shard_iterator
                        .unwrap_or_default(),
                };
                loop {
                    let out = self
                        .streams
                        .get_records()
                        .shard_iterator(&iterator)
                        .send()
                        .await
                        .map_err(|e| format!("{}: GetRecords: {e}", pipe.name))?;
                    let records = out.records.unwrap_or_default();
                    for record in &records {
                        if let Some(key) = forwarded_key(pipe, record) {
                            let body = serde_json::json!({ "inbox": key }).to_string();
                            if let Err(e) = self
                                .sqs
                                .send_message()
                                .queue_url(&pipe.target_url)
                                .message_body(body)
                                .send()
                                .await
                            {
                                // Stay before this batch: it is read and sent again on the next pump.
                                positions.insert(slot, iterator);
                                return Err(format!("{}: SendMessage: {e}", pipe.name));
                            }
                            sent += 1;
                        }
                    }
                    match out.next_shard_iterator {
                        Some(next) if !records.is_empty() => iterator = next,
                        Some(next) => {
                            iterator = next;
                            break;
                        }
                        None => break,
                    }
                }
                positions.insert(slot, iterator);
            }
        }
        Ok(sent)
    }
}

/// The key a record is forwarded under, if the pipe's filter lets it through.
fn forwarded_key(pipe: &PipeSpec, record: &Record) -> Option<String> {
    if !matches!(record.event_name, Some(OperationType::Insert | OperationType::Modify)) {
        return None;
    }
    let change = record.dynamodb.as_ref()?;
    let image = change.new_image.as_ref()?;
    image.get("body")?.as_s().ok()?;
    let key = image.get("pk")?.as_s().ok()?;
    pipe.key_prefixes
        .iter()
        .any(|p| key.starts_with(p.as_str()))
        .then(|| key.clone())
}
