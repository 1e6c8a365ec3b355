//! EventBridge Pipes from a DynamoDB stream to SQS, as `template.yaml` declares them, for the local stack
//! and the tests (moto keeps streams but runs no pipe): every record of the filter's event names whose
//! key starts with one of its prefixes (and, where the filter says so, whose new image has a `body`)
//! becomes the template's message on the target queue: `{"inbox": pk}`, `{"ledger": {pk, sk}}` or
//! `{"order_event": {pk, sk}}`.
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
        Self { streams: aws_sdk_dynamodbstreams::Client::new(sdk), sqs, pipes, positions: Mutex::new(HashMap::new()) }
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
                        if let Some(body) = forwarded_key(pipe, record) {
                            if let Err(e) =
                                self.sqs.send_message().queue_url(&pipe.target_url).message_body(body).send().await
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

/// The message a record becomes, if the pipe's filter lets it through.
fn forwarded_key(pipe: &PipeSpec, record: &Record) -> Option<String> {
    let event = match record.event_name.as_ref()? {
        OperationType::Insert => "INSERT",
        OperationType::Modify => "MODIFY",
        _ => return None,
    };
    if !pipe.event_names.iter().any(|e| e == event) {
        return None;
    }
    let change = record.dynamodb.as_ref()?;
    if pipe.require_body {
        change.new_image.as_ref()?.get("body")?.as_s().ok()?;
    }
    let keys = change.keys.as_ref()?;
    let matched = keys.get(&pipe.key_attr)?.as_s().ok()?;
    if !pipe.key_prefixes.iter().any(|p| matched.starts_with(p.as_str())) {
        return None;
    }
    let key = |k: &str| keys.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(
        match pipe.message.as_str() {
            "ledger" => serde_json::json!({ "ledger": { "pk": key("pk")?, "sk": key("sk")? } }),
            "order_event" => serde_json::json!({ "order_event": { "pk": key("pk")?, "sk": key("sk")? } }),
            _ => serde_json::json!({ "inbox": key("pk")? }),
        }
        .to_string(),
    )
}
