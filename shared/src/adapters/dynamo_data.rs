//! [`DataStore`] over the suite's tables: the `due` index for the retention sweep, the `by_subject` index
//! for data-subject requests, batched deletes, conditional deletes and anonymising updates.
//! [`Checkpoints`] on the platform table.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, ReturnValue, WriteRequest};
use aws_sdk_dynamodb::Client;

use super::aws::{infra_error, is_condition_failed, query_all};
use super::dynamo_attrs::put;
use crate::ports::{Attrs, Checkpoints, DataStore, DueEntry, DuePage, InfraError, ItemKey, Store};

/// BatchWriteItem takes at most 25 requests.
const WRITE_BATCH: usize = 25;
/// Attempts for what a batch call leaves unprocessed (throttling), with doubling backoff from 25 ms.
const BATCH_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone)]
pub struct DynamoData {
    client: Client,
    tables: BTreeMap<Store, String>,
}

impl DynamoData {
    /// `tables`: the table name of each store this deployment has.
    pub fn new(client: Client, tables: BTreeMap<Store, String>) -> Self {
        Self { client, tables }
    }

    fn table(&self, store: Store) -> Result<&str, InfraError> {
        self.tables.get(&store).map(String::as_str).ok_or(InfraError {
            service: "config",
            operation: "table",
            retryable: false,
            source: Some(format!("no table configured for {}", store.name()).into()),
        })
    }

    fn key(store: Store, key: &ItemKey) -> HashMap<String, AttributeValue> {
        let (pk, sk) = store.key_names();
        let mut out = HashMap::from([(pk.to_owned(), AttributeValue::S(key.pk.clone()))]);
        if let (Some(name), Some(v)) = (sk, &key.sk) {
            out.insert(name.to_owned(), AttributeValue::S(v.clone()));
        }
        out
    }

    fn key_of(store: Store, item: &HashMap<String, AttributeValue>) -> Option<ItemKey> {
        let (pk, sk) = store.key_names();
        Some(ItemKey {
            pk: item.get(pk)?.as_s().ok()?.clone(),
            sk: sk.and_then(|n| item.get(n)).and_then(|v| v.as_s().ok()).cloned(),
        })
    }

    /// Reads whole items by key (BatchGetItem, retrying unprocessed keys).
    async fn get_many(&self, store: Store, keys: &[ItemKey]) -> Result<Vec<(ItemKey, Attrs)>, InfraError> {
        let keys = keys.iter().map(|k| Self::key(store, k)).collect();
        Ok(super::aws::batch_get(&self.client, self.table(store)?, keys, "BatchGetItem")
            .await?
            .into_iter()
            .filter_map(|item| Some((Self::key_of(store, &item)?, to_json(item))))
            .collect())
    }
}

fn build_error(operation: &'static str, e: aws_sdk_dynamodb::error::BuildError) -> InfraError {
    InfraError { service: "dynamodb", operation, retryable: false, source: Some(Box::new(e)) }
}

/// Sleeps before another attempt at what a batch call left unprocessed; fails (retryably) after the last.
async fn backoff(attempt: &mut u32, more: bool, operation: &'static str) -> Result<(), InfraError> {
    if !more {
        return Ok(());
    }
    *attempt += 1;
    if *attempt >= BATCH_ATTEMPTS {
        return Err(InfraError {
            service: "dynamodb",
            operation,
            retryable: true,
            source: Some("items still unprocessed after retries".into()),
        });
    }
    tokio::time::sleep(Duration::from_millis(25 << (*attempt).min(6))).await;
    Ok(())
}

/// An attribute value as JSON: numbers as numbers when they fit, sets and lists as arrays.
pub fn value_to_json(v: AttributeValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AttributeValue::S(s) => Value::String(s),
        AttributeValue::N(n) => {
            n.parse::<i64>().map(Value::from).or_else(|_| n.parse::<f64>().map(Value::from)).unwrap_or(Value::String(n))
        }
        AttributeValue::Bool(b) => Value::Bool(b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Ss(v) => Value::from(v),
        AttributeValue::Ns(v) => Value::from(v),
        AttributeValue::L(v) => Value::Array(v.into_iter().map(value_to_json).collect()),
        AttributeValue::M(m) => Value::Object(m.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()),
        AttributeValue::B(b) => {
            Value::String(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b.into_inner()))
        }
        other => Value::String(format!("{other:?}")),
    }
}

pub fn to_json(item: HashMap<String, AttributeValue>) -> Attrs {
    item.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()
}

/// A `LastEvaluatedKey` as an opaque string (the due index's keys are strings and numbers).
fn encode_cursor(key: &HashMap<String, AttributeValue>) -> String {
    let m: BTreeMap<&str, String> = key
        .iter()
        .filter_map(|(k, v)| match v {
            AttributeValue::S(s) => Some((k.as_str(), format!("S:{s}"))),
            AttributeValue::N(n) => Some((k.as_str(), format!("N:{n}"))),
            _ => None,
        })
        .collect();
    serde_json::to_string(&m).unwrap_or_default()
}

fn decode_cursor(cursor: &str) -> Result<HashMap<String, AttributeValue>, InfraError> {
    let bad = || InfraError {
        service: "dynamodb",
        operation: "Query(cursor)",
        retryable: false,
        source: Some("malformed cursor".into()),
    };
    let m: BTreeMap<String, String> = serde_json::from_str(cursor).map_err(|_| bad())?;
    m.into_iter()
        .map(|(k, v)| match v.split_once(':') {
            Some(("S", s)) => Ok((k, AttributeValue::S(s.to_owned()))),
            Some(("N", n)) => Ok((k, AttributeValue::N(n.to_owned()))),
            _ => Err(bad()),
        })
        .collect()
}

impl DataStore for DynamoData {
    fn stores(&self) -> Vec<Store> {
        self.tables.keys().copied().collect()
    }

    async fn due(&self, store: Store, bucket: &str, now: i64, cursor: Option<&str>) -> Result<DuePage, InfraError> {
        let start = cursor.map(decode_cursor).transpose()?;
        let out = self
            .client
            .query()
            .table_name(self.table(store)?)
            .index_name("due")
            .key_condition_expression("due_bucket = :b AND expires_at <= :now")
            .expression_attribute_values(":b", AttributeValue::S(bucket.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "Query(due)", e))?;
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| {
                Some(DueEntry {
                    key: Self::key_of(store, &i)?,
                    expires_at: i.get("expires_at")?.as_n().ok()?.parse().ok()?,
                    action: i.get("due_action").and_then(|v| v.as_s().ok()).cloned().unwrap_or_else(|| "delete".into()),
                })
            })
            .collect();
        Ok(DuePage { items, next: out.last_evaluated_key.filter(|k| !k.is_empty()).map(|k| encode_cursor(&k)) })
    }

    async fn delete(&self, store: Store, keys: &[ItemKey]) -> Result<(), InfraError> {
        let table = self.table(store)?;
        for chunk in keys.chunks(WRITE_BATCH) {
            let mut pending = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(Self::key(store, k)))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| build_error("BatchWriteItem", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                let res = self
                    .client
                    .batch_write_item()
                    .request_items(table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| infra_error("dynamodb", "BatchWriteItem", e))?;
                pending = res.unprocessed_items.and_then(|mut u| u.remove(table)).unwrap_or_default();
                backoff(&mut attempt, !pending.is_empty(), "BatchWriteItem").await?;
            }
        }
        Ok(())
    }

    async fn delete_if_due(&self, store: Store, key: &ItemKey, now: i64) -> Result<Option<Attrs>, InfraError> {
        let res = self
            .client
            .delete_item()
            .table_name(self.table(store)?)
            .set_key(Some(Self::key(store, key)))
            .condition_expression("expires_at <= :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match res {
            Ok(out) => Ok(out.attributes.map(to_json)),
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(infra_error("dynamodb", "DeleteItem", e)),
        }
    }

    async fn remove_fields(
        &self, store: Store, key: &ItemKey, fields: &[&str], due_at: Option<i64>,
    ) -> Result<bool, InfraError> {
        let mut names: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        if due_at.is_some() {
            names.extend(["expires_at", "due_bucket", "due_action"].map(str::to_owned));
        }
        if names.is_empty() {
            return Ok(false);
        }
        let placeholders: Vec<String> = (0..names.len()).map(|i| format!("#f{i}")).collect();
        let (pk, _) = store.key_names();
        let mut req = self
            .client
            .update_item()
            .table_name(self.table(store)?)
            .set_key(Some(Self::key(store, key)))
            .update_expression(format!("REMOVE {}", placeholders.join(", ")))
            .expression_attribute_names("#pk", pk);
        for (p, n) in placeholders.iter().zip(&names) {
            req = req.expression_attribute_names(p, n);
        }
        req = match due_at {
            Some(now) => req
                .condition_expression("attribute_exists(#pk) AND expires_at <= :now")
                .expression_attribute_values(":now", AttributeValue::N(now.to_string())),
            None => req.condition_expression("attribute_exists(#pk)"),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem", e)),
        }
    }

    async fn partition(&self, store: Store, pk: &str, sk_prefix: &str) -> Result<Vec<(ItemKey, Attrs)>, InfraError> {
        let (pk_name, sk_name) = store.key_names();
        let q = self
            .client
            .query()
            .table_name(self.table(store)?)
            .consistent_read(true)
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()));
        let q = match sk_name {
            Some(sk) if !sk_prefix.is_empty() => q
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :p)")
                .expression_attribute_names("#sk", sk)
                .expression_attribute_values(":p", AttributeValue::S(sk_prefix.to_owned())),
            _ => q.key_condition_expression("#pk = :pk"),
        };
        Ok(query_all(q, "Query")
            .await?
            .into_iter()
            .filter_map(|item| Some((Self::key_of(store, &item)?, to_json(item))))
            .collect())
    }

    async fn about(&self, store: Store, subject: &str) -> Result<Vec<(ItemKey, Attrs)>, InfraError> {
        let q = self
            .client
            .query()
            .table_name(self.table(store)?)
            .index_name("by_subject")
            .key_condition_expression("subject = :s")
            .expression_attribute_values(":s", AttributeValue::S(subject.to_owned()));
        let mut keys: Vec<ItemKey> =
            query_all(q, "Query(by_subject)").await?.iter().filter_map(|i| Self::key_of(store, i)).collect();
        keys.sort();
        keys.dedup();
        self.get_many(store, &keys).await
    }
}

/// [`Checkpoints`] as `checkpoint#<name>` items of the platform table.
#[derive(Debug, Clone)]
pub struct DynamoCheckpoints {
    client: Client,
    table: String,
}

impl DynamoCheckpoints {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl Checkpoints for DynamoCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<String>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("checkpoint#{name}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem", e))?;
        Ok(out.item.and_then(|i| i.get("value").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn save(&self, name: &str, value: &str) -> Result<(), InfraError> {
        put(&self.client, &self.table)
            .item("pk", AttributeValue::S(format!("checkpoint#{name}")))
            .item("value", AttributeValue::S(value.to_owned()))
            .item("updated_at", AttributeValue::S(chrono::Utc::now().to_rfc3339()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("dynamodb", "PutItem", e))
    }
}
