//! [`OrderStore`] on the orders table (`pk` = `merchant#<id>`).
//!
//! - `order#<marketplace>#<id>`: `order` (the normalised order as JSON, no buyer data), `updated_ms` (the
//!   version), `shipped_at`, `status`, `merchant`, `subject`, and the deadline (`expires_at`, `due_bucket`,
//!   `due_action` = anonymise).
//! - `buyer#<marketplace>#<id>`: `buyer` (JSON), `merchant`, `subject` and its own deadline (delete).
//! - `event#<marketplace>#<id>#<version>`: `merchant`, `order_sk`, `event_id`, `event_type`
//!   (`order.created` for an order's first stored version, else `order.updated`), `version`; no personal data, kept as
//!   long as an idempotency record. Its insert is the order's event: the table's stream (keys only) and
//!   OrderEventsPipe hand it to the order events queue.
//!
//! A new version is one transaction: the order (only if the stored version is older), its buyer and its
//! event. So a version is stored with its event or not at all, and no crash can leave an order whose
//! event is never queued.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::aws::infra_error;
use super::dynamo_attrs::{get, n, num, s, text, Item};
use crate::domain::orders::{Buyer, Order};
use crate::domain::retention::{self, Action, Stamp};
use crate::ports::{BuyerWrite, InfraError, OrderStore, OrderWrite, StoredVersion};

#[derive(Debug, Clone)]
pub struct DynamoOrders {
    client: Client,
    table: String,
}

impl DynamoOrders {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn pk(merchant: &str) -> String {
    format!("merchant#{merchant}")
}

/// `order#<m>#<id>` -> `buyer#<m>#<id>`.
pub fn buyer_key(order_sk: &str) -> String {
    format!("buyer#{}", order_sk.strip_prefix("order#").unwrap_or(order_sk))
}

fn stamped(mut item: Item, stamp: &Stamp) -> Item {
    item.insert("expires_at".into(), n(stamp.expires_at));
    item.insert("due_bucket".into(), s(&stamp.due_bucket));
    let action = match stamp.due_action {
        Action::Delete => "delete",
        Action::Anonymise => "anonymise",
        Action::AnswerBy => "answer_by",
    };
    item.insert("due_action".into(), s(action));
    item
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> InfraError {
    InfraError {
        service: "dynamodb",
        operation: "TransactWriteItems(order)",
        retryable: false,
        source: Some(Box::new(e)),
    }
}

fn time_attr(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    text(item, name).and_then(|t| t.parse().ok())
}

enum Outcome {
    Written,
    /// A same or newer version is stored.
    Stale,
    /// The buyer to restamp is no longer there.
    BuyerGone,
}

impl DynamoOrders {
    async fn transact(&self, w: &OrderWrite<'_>) -> Result<Outcome, InfraError> {
        let order = w.order;
        let pk = pk(w.merchant);
        let sk = order.sort_key();
        let version = order.updated_at.timestamp_millis();
        let mut item: Item = HashMap::from([
            ("pk".into(), s(&pk)),
            ("sk".into(), s(&sk)),
            ("merchant".into(), s(w.merchant)),
            ("marketplace".into(), s(order.marketplace.as_str())),
            ("status".into(), s(order.status.as_str())),
            ("updated_ms".into(), n(version)),
            ("order".into(), s(serde_json::to_string(order).map_err(invalid)?)),
        ]);
        if w.buyer_held {
            item.insert("buyer_held".into(), AttributeValue::Bool(true));
        }
        if let Some(t) = order.shipped_at {
            item.insert("shipped_at".into(), s(t.to_rfc3339()));
        }
        if let Some(stamp) = &w.stamp {
            item = stamped(item, stamp);
            if let Some(subject) = &w.subject {
                item.insert("subject".into(), s(subject));
            }
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk) OR updated_ms < :v")
            .expression_attribute_values(":v", n(version))
            .build()
            .map_err(invalid)?;
        let mut ops = vec![TransactWriteItem::builder().put(put).build()];
        let buyer_sk = buyer_key(&sk);
        match &w.buyer {
            BuyerWrite::Put(buyer, stamp) => {
                let mut b: Item = HashMap::from([
                    ("pk".into(), s(&pk)),
                    ("sk".into(), s(&buyer_sk)),
                    ("merchant".into(), s(w.merchant)),
                    ("buyer".into(), s(serde_json::to_string(buyer).map_err(invalid)?)),
                ]);
                if let Some(subject) = &w.subject {
                    b.insert("subject".into(), s(subject));
                }
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(stamped(b, stamp)))
                    .build()
                    .map_err(invalid)?;
                ops.push(TransactWriteItem::builder().put(put).build());
            }
            BuyerWrite::Restamp(stamp) => {
                let update = Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s(&buyer_sk))
                    .update_expression("SET expires_at = :e, due_bucket = :b")
                    .condition_expression("attribute_exists(sk)")
                    .expression_attribute_values(":e", n(stamp.expires_at))
                    .expression_attribute_values(":b", s(&stamp.due_bucket))
                    .build()
                    .map_err(invalid)?;
                ops.push(TransactWriteItem::builder().update(update).build());
            }
            BuyerWrite::Delete => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s(&buyer_sk))
                    .build()
                    .map_err(invalid)?;
                ops.push(TransactWriteItem::builder().delete(delete).build());
            }
            BuyerWrite::Keep => {}
        }
        let event: Item = HashMap::from([
            ("pk".into(), s(&pk)),
            ("sk".into(), s(format!("event#{}#{}#{version}", order.marketplace, order.order_id))),
            ("merchant".into(), s(w.merchant)),
            ("order_sk".into(), s(&sk)),
            ("event_id".into(), s(&w.event_id)),
            ("event_type".into(), s(if w.first { "order.created" } else { "order.updated" })),
            ("version".into(), n(version)),
            ("expires_at".into(), n(w.event_expires_at)),
        ]);
        let put = Put::builder().table_name(&self.table).set_item(Some(event)).build().map_err(invalid)?;
        ops.push(TransactWriteItem::builder().put(put).build());
        let restamp = matches!(w.buyer, BuyerWrite::Restamp(_));
        match self.client.transact_write_items().set_transact_items(Some(ops)).send().await {
            Ok(_) => Ok(Outcome::Written),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(tc)) = e.as_service_error() {
                    let code = |i: usize| tc.cancellation_reasons().get(i).and_then(|r| r.code()).unwrap_or("None");
                    if code(0) == "ConditionalCheckFailed" {
                        return Ok(Outcome::Stale);
                    }
                    if restamp && code(1) == "ConditionalCheckFailed" {
                        return Ok(Outcome::BuyerGone);
                    }
                }
                Err(infra_error("dynamodb", "TransactWriteItems(order)", e))
            }
        }
    }
}

impl OrderStore for DynamoOrders {
    async fn versions(
        &self, merchant: &str, sort_keys: &[String],
    ) -> Result<HashMap<String, StoredVersion>, InfraError> {
        let mut out = HashMap::new();
        let mut buyers = HashSet::new();
        // Two keys per order (the order and its buyer), 100 keys per call.
        for chunk in sort_keys.chunks(50) {
            let keys = chunk
                .iter()
                .flat_map(|sk| [sk.clone(), buyer_key(sk)])
                .collect::<HashSet<_>>()
                .into_iter()
                .map(|k| HashMap::from([("pk".to_owned(), s(pk(merchant))), ("sk".to_owned(), s(k))]))
                .collect::<Vec<_>>();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .projection_expression("sk, updated_ms, shipped_at, buyer_held")
                    .consistent_read(true)
                    .build()
                    .map_err(invalid)?,
            );
            let mut attempt = 0u32;
            while let Some(req) = request.take() {
                let res = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| infra_error("dynamodb", "BatchGetItem(orders)", e))?;
                for item in res.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    let Some(sk) = text(&item, "sk") else { continue };
                    if let Some(rest) = sk.strip_prefix("buyer#") {
                        buyers.insert(format!("order#{rest}"));
                    } else if let Some(updated_at) = num(&item, "updated_ms").and_then(DateTime::from_timestamp_millis)
                    {
                        let shipped_at = time_attr(&item, "shipped_at");
                        let held = item.get("buyer_held").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
                        out.insert(sk, StoredVersion { updated_at, shipped_at, buyer: false, buyer_removed: held });
                    }
                }
                request = res.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
                if request.is_some() {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(InfraError {
                            service: "dynamodb",
                            operation: "BatchGetItem(orders)",
                            retryable: true,
                            source: Some("keys left unprocessed".into()),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(6))).await;
                }
            }
        }
        for (sk, v) in &mut out {
            v.buyer = buyers.contains(sk);
            v.buyer_removed = v.buyer_removed && !v.buyer;
        }
        Ok(out)
    }

    async fn write(&self, w: &OrderWrite<'_>) -> Result<bool, InfraError> {
        match self.transact(w).await? {
            Outcome::Written => Ok(true),
            Outcome::Stale => Ok(false),
            // The buyer was deleted meanwhile (its deadline, an erasure): nothing left to restamp.
            Outcome::BuyerGone => Ok(matches!(
                self.transact(&OrderWrite { buyer: BuyerWrite::Keep, ..w.clone() }).await?,
                Outcome::Written
            )),
        }
    }

    async fn get(
        &self, merchant: &str, sort_key: &str, now: DateTime<Utc>,
    ) -> Result<Option<(Order, Option<Buyer>)>, InfraError> {
        let read = |sk: String| async move {
            get(&self.client, &self.table, s(pk(merchant)), s(sk))
                .consistent_read(true)
                .send()
                .await
                .map(|o| o.item)
                .map_err(|e| infra_error("dynamodb", "GetItem(order)", e))
        };
        let (order, buyer) = tokio::try_join!(read(sort_key.to_owned()), read(buyer_key(sort_key)))?;
        let Some(order) = order.and_then(|i| text(&i, "order")).and_then(|j| serde_json::from_str::<Order>(&j).ok())
        else {
            return Ok(None);
        };
        let buyer = buyer
            .filter(|b| num(b, "expires_at").is_some_and(|e| !retention::is_past(e, now)))
            .and_then(|b| text(&b, "buyer"))
            .and_then(|j| serde_json::from_str::<Buyer>(&j).ok());
        Ok(Some((order, buyer)))
    }
}

/// An order event item, as the forwarder reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    pub merchant: String,
    pub order_sk: String,
    pub event_id: String,
    pub event_type: String,
    /// The order version's time (epoch milliseconds).
    pub version: i64,
}

impl DynamoOrders {
    /// The event item `pk` / `sk` (`None` once it has expired or never existed).
    pub async fn event(&self, pk: &str, sk: &str) -> Result<Option<OrderEvent>, InfraError> {
        let item = super::dynamo_attrs::get_item(&self.client, &self.table, pk.to_owned(), sk, true).await?;
        Ok(item.and_then(|i| {
            Some(OrderEvent {
                merchant: text(&i, "merchant")?,
                order_sk: text(&i, "order_sk")?,
                event_id: text(&i, "event_id")?,
                event_type: text(&i, "event_type").unwrap_or_else(|| "order.updated".into()),
                version: num(&i, "version").or_else(|| sk.rsplit('#').next()?.parse().ok())?,
            })
        }))
    }
}
