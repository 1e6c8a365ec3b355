//! [`AuditLog`] in the data-requests table: `audit` / `<seq, 12 digits>` entries and an `audit` / `head`
//! item holding the newest entry's number and hash. An append writes the entry and moves the head in one
//! transaction conditional on the head it read, so concurrent writers cannot fork the chain (the loser
//! reads the new head and tries again). Entries carry their own deadline (`AuditLogEntry`); the head has
//! none.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::aws::{batch_get, infra_error};
use super::dynamo_attrs::s;
use super::dynamo_attrs::{get, query};
use crate::domain::audit::{Entry, NewEntry, GENESIS};
use crate::domain::retention::{self, DataClass};
use crate::ports::{AuditLog, InfraError};

const PK: &str = "audit";
const HEAD: &str = "head";
/// Attempts at an append that races other writers, with a growing, jittered pause between them.
const APPEND_ATTEMPTS: u32 = 20;

#[derive(Debug, Clone)]
pub struct DynamoAudit {
    client: Client,
    table: String,
}

impl DynamoAudit {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn seq_key(seq: u64) -> String {
    format!("{seq:012}")
}

fn decode(item: &HashMap<String, AttributeValue>) -> Option<Entry> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(Entry {
        seq: text("sk")?.parse().ok()?,
        at: text("at")?.parse().ok()?,
        actor: text("actor")?,
        action: text("action")?,
        subject: text("subject_ref"),
        detail: text("detail")?,
        prev: text("prev")?,
        hash: text("hash")?,
    })
}

fn build(what: &'static str) -> impl Fn(aws_sdk_dynamodb::error::BuildError) -> InfraError {
    move |e| InfraError { service: "dynamodb", operation: what, retryable: false, source: Some(Box::new(e)) }
}

/// Entries chained in one transaction: each is its Put and, if keyed, its marker's Put, plus the head's
/// Update: 25 items, the emulator's limit (DynamoDB allows 100), so both run the same code.
const CHAIN_STEP: usize = 12;

impl DynamoAudit {
    fn marker(&self, key: &str, at: DateTime<Utc>) -> Result<Put, InfraError> {
        let keep =
            retention::stamp(DataClass::IdempotencyRecord, at, key).ok_or_else(InfraError::deadline_out_of_range)?;
        Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("audit-key#{key}")))
            .item("sk", s("-"))
            .item("expires_at", AttributeValue::N(keep.expires_at.to_string()))
            .item("due_bucket", s(&keep.due_bucket))
            .item("due_action", s("delete"))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build("Put"))
    }

    fn entry_put(&self, entry: &Entry, at: DateTime<Utc>) -> Result<Put, InfraError> {
        let keep = retention::stamp(DataClass::AuditLogEntry, at, &seq_key(entry.seq))
            .ok_or_else(InfraError::deadline_out_of_range)?;
        // The subject reference is not named `subject`, so audit entries stay out of the subject index
        // (and out of exports and erasures).
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(PK))
            .item("sk", s(seq_key(entry.seq)))
            .item("at", s(entry.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
            .item("actor", s(&entry.actor))
            .item("action", s(&entry.action))
            .item("detail", s(&entry.detail))
            .item("prev", s(&entry.prev))
            .item("hash", s(&entry.hash))
            .item("expires_at", AttributeValue::N(keep.expires_at.to_string()))
            .item("due_bucket", s(&keep.due_bucket))
            .item("due_action", s("delete"))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(sub) = &entry.subject {
            put = put.item("subject_ref", s(sub));
        }
        put.build().map_err(build("Put"))
    }

    /// Which of `keys` were appended before (their markers exist).
    async fn appended(&self, keys: &[&str]) -> Result<std::collections::HashSet<String>, InfraError> {
        let markers = keys
            .iter()
            .map(|k| HashMap::from([("pk".to_owned(), s(format!("audit-key#{k}"))), ("sk".to_owned(), s("-"))]))
            .collect();
        Ok(batch_get(&self.client, &self.table, markers, "BatchGetItem(audit keys)")
            .await?
            .iter()
            .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()))
            .map(|k| k.trim_start_matches("audit-key#").to_owned())
            .collect())
    }

    /// Chains `news` (none of them appended before, as far as the caller knows) after the head, in one
    /// transaction. `Ok(None)`: cancelled (the head moved, or a concurrent writer appended one of the
    /// keys): read again and retry.
    async fn try_chain(&self, news: &[NewEntry], at: DateTime<Utc>) -> Result<Option<Vec<Entry>>, InfraError> {
        let head = self.head().await?;
        let (mut seq, mut prev) = head.clone().map_or((1, GENESIS.to_owned()), |(n, h)| (n + 1, h));
        let mut tx = self.client.transact_write_items();
        let mut entries = Vec::with_capacity(news.len());
        for new in news {
            let entry = Entry::chain(new.clone(), seq, at, &prev);
            tx = tx.transact_items(TransactWriteItem::builder().put(self.entry_put(&entry, at)?).build());
            if let Some(k) = &new.key {
                tx = tx.transact_items(TransactWriteItem::builder().put(self.marker(k, at)?).build());
            }
            seq += 1;
            prev = entry.hash.clone();
            entries.push(entry);
        }
        let last = entries.last().map_or(0, |e| e.seq);
        let mut head_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(PK))
            .key("sk", s(HEAD))
            .update_expression("SET seq = :n, #h = :h")
            .expression_attribute_names("#h", "hash")
            .expression_attribute_values(":n", AttributeValue::N(last.to_string()))
            .expression_attribute_values(":h", s(&prev));
        head_update = match head {
            None => head_update.condition_expression("attribute_not_exists(seq)"),
            Some((old, _)) => head_update
                .condition_expression("seq = :old")
                .expression_attribute_values(":old", AttributeValue::N(old.to_string())),
        };
        tx = tx
            .transact_items(TransactWriteItem::builder().update(head_update.build().map_err(build("Update"))?).build());
        match tx.send().await {
            Ok(_) => Ok(Some(entries)),
            Err(e)
                if matches!(e.as_service_error(), Some(TransactWriteItemsError::TransactionCanceledException(_))) =>
            {
                Ok(None)
            }
            Err(e) => Err(infra_error("dynamodb", "TransactWriteItems", e)),
        }
    }
}

impl AuditLog for DynamoAudit {
    async fn append(&self, new: NewEntry, at: DateTime<Utc>) -> Result<Option<Entry>, InfraError> {
        Ok(self.append_many(vec![new], at).await?.pop())
    }

    /// Appends in chain steps of [`CHAIN_STEP`]; a keyed entry whose marker exists is left out. Each step
    /// is one transaction conditional on the head it read, so concurrent writers cannot fork the chain
    /// (the loser reads the new head, and which keys were appended meanwhile, and tries again).
    async fn append_many(&self, news: Vec<NewEntry>, at: DateTime<Utc>) -> Result<Vec<Entry>, InfraError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // One entry per key, even within a batch.
        let mut news: Vec<NewEntry> =
            news.into_iter().filter(|n| n.key.as_ref().is_none_or(|k| seen.insert(k.clone()))).collect();
        let mut check_keys = true;
        let mut attempt = 0;
        while !news.is_empty() {
            if check_keys {
                let keys: Vec<&str> = news.iter().filter_map(|n| n.key.as_deref()).collect();
                if !keys.is_empty() {
                    let done = self.appended(&keys).await?;
                    news.retain(|n| n.key.as_ref().is_none_or(|k| !done.contains(k)));
                }
                check_keys = false;
                if news.is_empty() {
                    break;
                }
            }
            let step = news.len().min(CHAIN_STEP);
            match self.try_chain(&news[..step], at).await? {
                Some(entries) => {
                    out.extend(entries);
                    news.drain(..step);
                    attempt = 0;
                }
                None => {
                    attempt += 1;
                    if attempt >= APPEND_ATTEMPTS {
                        return Err(InfraError {
                            service: "dynamodb",
                            operation: "TransactWriteItems(audit)",
                            retryable: true,
                            source: Some("the audit head kept moving".into()),
                        });
                    }
                    check_keys = true;
                    // Jitter from a fresh random id: writers that collided do not collide again in step.
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 20;
                    let pause = 5 * u64::from(attempt.min(10)) + jitter;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
            }
        }
        Ok(out)
    }

    async fn entries(&self, after_seq: u64, limit: usize) -> Result<Vec<Entry>, InfraError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = query(&self.client, &self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(PK))
                .expression_attribute_values(":from", s(seq_key(after_seq.saturating_add(1))))
                .expression_attribute_values(":to", s(seq_key(999_999_999_999)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", "Query", e))?;
            for item in page.items() {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(decode(item).ok_or(InfraError {
                    service: "dynamodb",
                    operation: "Query(decode audit entry)",
                    retryable: false,
                    source: Some("an audit entry is missing fields".into()),
                })?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() && out.len() < limit => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    async fn head(&self) -> Result<Option<(u64, String)>, InfraError> {
        let out = get(&self.client, &self.table, s(PK), s(HEAD))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem", e))?;
        Ok(out.item.and_then(|i| {
            let seq = i.get("seq")?.as_n().ok()?.parse().ok()?;
            let hash = i.get("hash")?.as_s().ok()?.clone();
            Some((seq, hash))
        }))
    }
}
