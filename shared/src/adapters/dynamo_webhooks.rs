//! [`WebhookStore`] on the webhooks table (`pk` = `merchant#<id>`). No personal data, no secrets, no
//! bodies.
//!
//! - `endpoint#<id>`: the endpoint (URL, event types, status, its secret's id and version, health).
//! - `delivery#<endpoint>#<event id>`: one event for one endpoint: state, round, attempts, step, next
//!   attempt; while pending, `due_shard` / `due_at`, the keys of the sparse `next_due` index the delivery
//!   scheduler reads. TTL `expires_at` (the policy's delivery window).
//! - `attempt#<endpoint>#<at ms>#<event id>#<round>#<n>`: one attempt (time, status, latency, error).
//!   Sorted by time per endpoint, so recent attempts are one query.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::aws::{infra_error, is_condition_failed};
use super::dynamo_attrs::{get, n, num, put, put_if_absent, query, s, text, update, Item};
use crate::ports::{Attempt, Delivery, DeliveryRef, DeliveryState, Endpoint, InfraError, Transition, WebhookStore};

/// Shards of the due index, so one minute's deliveries do not all land on one partition.
pub const DUE_SHARDS: u32 = 4;
/// The due index.
pub const DUE_INDEX: &str = "next_due";

#[derive(Debug, Clone)]
pub struct DynamoWebhooks {
    client: Client,
    table: String,
}

fn pk(merchant: &str) -> String {
    format!("merchant#{merchant}")
}

fn endpoint_sk(id: &str) -> String {
    format!("endpoint#{id}")
}

fn delivery_sk(endpoint: &str, event_id: &str) -> String {
    format!("delivery#{endpoint}#{event_id}")
}

fn shard(event_id: &str) -> String {
    format!("due#{}", crate::domain::webhooks::stable_hash(event_id) % DUE_SHARDS)
}

fn codec(operation: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> InfraError {
    InfraError { service: "dynamodb", operation, retryable: false, source: Some(Box::new(e)) }
}

fn to_item<T: serde::Serialize>(v: &T, pk: String, sk: String) -> Result<Item, InfraError> {
    let mut item: Item = serde_dynamo::to_item(v).map_err(|e| codec("PutItem(encode)", e))?;
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(sk));
    Ok(item)
}

fn from_item<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, InfraError> {
    serde_dynamo::from_item(item).map_err(|e| codec("GetItem(decode)", e))
}

fn opt_n(v: Option<i64>) -> AttributeValue {
    v.map_or(AttributeValue::Null(true), n)
}

impl DynamoWebhooks {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Registers a new endpoint (`false` if its id is taken).
    pub async fn put_endpoint(&self, e: &Endpoint) -> Result<bool, InfraError> {
        let item = to_item(e, pk(&e.merchant), endpoint_sk(&e.id))?;
        put_if_absent(&self.client, &self.table, item, "PutItem(endpoint)").await
    }

    /// Writes the merchant's editable fields (URL, types, description, enabled) of an endpoint that is still
    /// enabled or disabled as `was_enabled` says (so a 410 or a 5-day disable made meanwhile is not undone
    /// from a stale read). Re-enabling (`was_enabled` false, `e.enabled` true) clears its failure history;
    /// any other change leaves the health fields alone. `false` if it is gone or changed meanwhile.
    pub async fn update_endpoint(&self, e: &Endpoint, was_enabled: bool) -> Result<bool, InfraError> {
        let mut req = update(&self.client, &self.table, s(pk(&e.merchant)), s(endpoint_sk(&e.id)))
            .condition_expression("attribute_exists(sk) AND enabled = :was")
            .expression_attribute_values(":was", AttributeValue::Bool(was_enabled))
            .expression_attribute_values(":url", s(&e.url))
            .expression_attribute_values(
                ":types",
                AttributeValue::L(e.event_types.iter().map(|t| s(t.as_str())).collect()),
            )
            .expression_attribute_values(":d", s(&e.description))
            .expression_attribute_values(":en", AttributeValue::Bool(e.enabled));
        let mut set = "SET #url = :url, event_types = :types, description = :d, enabled = :en".to_owned();
        if e.enabled && !was_enabled {
            set.push_str(" REMOVE disabled_reason, failing_since, paused_until");
        } else if !e.enabled {
            set.push_str(", disabled_reason = :why");
            req = req.expression_attribute_values(":why", s(e.disabled_reason.as_deref().unwrap_or("merchant")));
        }
        match req.update_expression(set).expression_attribute_names("#url", "url").send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(endpoint)", e)),
        }
    }

    /// One more secret version (after a rotation), so every sender reloads the keys.
    pub async fn bump_secret_version(&self, merchant: &str, id: &str) -> Result<bool, InfraError> {
        let req = update(&self.client, &self.table, s(pk(merchant)), s(endpoint_sk(id)))
            .update_expression("SET secret_version = if_not_exists(secret_version, :zero) + :one")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1));
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(secret version)", e)),
        }
    }

    /// Removes an endpoint (its deliveries and attempts age out with their TTL).
    pub async fn delete_endpoint(&self, merchant: &str, id: &str) -> Result<(), InfraError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk(merchant)))
            .key("sk", s(endpoint_sk(id)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("dynamodb", "DeleteItem(endpoint)", e))
    }

    async fn query_prefix(
        &self, merchant: &str, prefix: &str, newest_first: bool, limit: usize,
    ) -> Result<Vec<Item>, InfraError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = query(&self.client, &self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(pk(merchant)))
                .expression_attribute_values(":p", s(prefix))
                .scan_index_forward(!newest_first)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", "Query(webhooks)", e))?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    /// An endpoint's deliveries in `states` (all if empty) whose event was created in `created_ms` (both
    /// ends included), read to the end of the endpoint's deliveries, at most `limit`; `true` if more match.
    pub async fn deliveries_where(
        &self, merchant: &str, endpoint: &str, states: &[DeliveryState], created_ms: Option<(i64, i64)>, limit: usize,
    ) -> Result<(Vec<Delivery>, bool), InfraError> {
        let mut filters = Vec::new();
        let mut values =
            vec![(":pk".to_owned(), s(pk(merchant))), (":p".to_owned(), s(format!("delivery#{endpoint}#")))];
        if !states.is_empty() {
            let names: Vec<String> = (0..states.len()).map(|i| format!(":s{i}")).collect();
            filters.push(format!("#state IN ({})", names.join(", ")));
            values.extend(names.into_iter().zip(states.iter().map(|st| s(st.as_str()))));
        }
        if let Some((a, b)) = created_ms {
            filters.push("created_ms BETWEEN :a AND :b".to_owned());
            values.push((":a".into(), n(a)));
            values.push((":b".into(), n(b)));
        }
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut q = query(&self.client, &self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .consistent_read(true)
                .set_exclusive_start_key(start);
            if !filters.is_empty() {
                q = q.filter_expression(filters.join(" AND "));
                if !states.is_empty() {
                    q = q.expression_attribute_names("#state", "state");
                }
            }
            for (k, v) in &values {
                q = q.expression_attribute_values(k, v.clone());
            }
            let page = q.send().await.map_err(|e| infra_error("dynamodb", "Query(deliveries)", e))?;
            for item in page.items.unwrap_or_default() {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(from_item(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok((out, false));
            }
        }
    }

    /// An endpoint's most recent attempts, newest first.
    pub async fn attempts(&self, merchant: &str, endpoint: &str, limit: usize) -> Result<Vec<Attempt>, InfraError> {
        let items = self.query_prefix(merchant, &format!("attempt#{endpoint}#"), true, limit).await?;
        items.into_iter().map(from_item).collect()
    }
}

impl WebhookStore for DynamoWebhooks {
    async fn endpoints(&self, merchant: &str) -> Result<Vec<Endpoint>, InfraError> {
        let items = self.query_prefix(merchant, "endpoint#", false, 1000).await?;
        items.into_iter().map(from_item).collect()
    }

    async fn endpoint(&self, merchant: &str, id: &str) -> Result<Option<Endpoint>, InfraError> {
        let out = get(&self.client, &self.table, s(pk(merchant)), s(endpoint_sk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem(endpoint)", e))?;
        out.item.map(from_item).transpose()
    }

    async fn create(&self, d: &Delivery, due_at: Option<i64>) -> Result<bool, InfraError> {
        let mut item = to_item(d, pk(&d.merchant), delivery_sk(&d.endpoint, &d.event_id))?;
        if let Some(due) = due_at {
            item.insert("due_shard".into(), s(shard(&d.event_id)));
            item.insert("due_at".into(), n(due));
        }
        put_if_absent(&self.client, &self.table, item, "PutItem(delivery)").await
    }

    async fn delivery(&self, merchant: &str, endpoint: &str, event_id: &str) -> Result<Option<Delivery>, InfraError> {
        let out = get(&self.client, &self.table, s(pk(merchant)), s(delivery_sk(endpoint, event_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem(delivery)", e))?;
        out.item.map(from_item).transpose()
    }

    async fn claim(&self, d: &Delivery, due_at: i64) -> Result<bool, InfraError> {
        let req = update(&self.client, &self.table, s(pk(&d.merchant)), s(delivery_sk(&d.endpoint, &d.event_id)))
            .update_expression("SET #step = :next, due_at = :due, stuck = if_not_exists(stuck, :zero) + :one")
            .condition_expression("#step = :step AND #state = :pending")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_names("#step", "step")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":step", n(d.step as i64))
            .expression_attribute_values(":next", n(d.step as i64 + 1))
            .expression_attribute_values(":due", n(due_at))
            .expression_attribute_values(":pending", s("pending"));
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(claim)", e)),
        }
    }

    async fn advance(&self, d: &Delivery, t: &Transition) -> Result<bool, InfraError> {
        let mut set = vec![
            "#state = :st",
            "attempts = :a",
            "next_at = :na",
            "#step = :next",
            "last_status = :ls",
            "last_error = :le",
            "stuck = :zero",
        ];
        let mut req = update(&self.client, &self.table, s(pk(&d.merchant)), s(delivery_sk(&d.endpoint, &d.event_id)))
            .condition_expression("#step = :step")
            .expression_attribute_names("#step", "step")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":st", s(t.state.as_str()))
            .expression_attribute_values(":a", n(i64::from(t.attempts)))
            .expression_attribute_values(":na", n(t.next_at))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":step", n(d.step as i64))
            .expression_attribute_values(":next", n(d.step as i64 + 1))
            .expression_attribute_values(":ls", opt_n(t.last_status.map(i64::from)))
            .expression_attribute_values(":le", t.last_error.as_deref().map_or(AttributeValue::Null(true), s));
        let expr = match t.due_at {
            Some(due) => {
                set.push("due_at = :due");
                set.push("due_shard = :shard");
                req = req
                    .expression_attribute_values(":due", n(due))
                    .expression_attribute_values(":shard", s(shard(&d.event_id)));
                format!("SET {}", set.join(", "))
            }
            None => format!("SET {} REMOVE due_at, due_shard", set.join(", ")),
        };
        match req.update_expression(expr).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(advance)", e)),
        }
    }

    async fn record_attempt(&self, a: &Attempt) -> Result<(), InfraError> {
        let sk = format!("attempt#{}#{:013}#{}#{}#{}", a.endpoint, a.at_ms.max(0), a.event_id, a.round, a.n);
        let item = to_item(a, pk(&a.merchant), sk)?;
        put(&self.client, &self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("dynamodb", "PutItem(attempt)", e))
    }

    async fn reopen(
        &self, d: &Delivery, now: i64, due_at: i64, expires_at: i64,
    ) -> Result<Option<Delivery>, InfraError> {
        let req = update(&self.client, &self.table, s(pk(&d.merchant)), s(delivery_sk(&d.endpoint, &d.event_id)))
            .update_expression(
                "SET #state = :pending, round = round + :one, attempts = :zero, #step = #step + :one, \
                 next_at = :now, due_at = :due, due_shard = :shard, expires_at = :exp, stuck = :zero REMOVE last_error",
            )
            .condition_expression("#step = :step AND #state <> :pending")
            .expression_attribute_names("#step", "step")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":due", n(due_at))
            .expression_attribute_values(":shard", s(shard(&d.event_id)))
            .expression_attribute_values(":exp", n(expires_at))
            .expression_attribute_values(":step", n(d.step as i64))
            .return_values(ReturnValue::AllNew);
        match req.send().await {
            Ok(out) => out.attributes.map(from_item).transpose(),
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(reopen)", e)),
        }
    }

    async fn due(&self, now: i64, limit: usize) -> Result<Vec<DeliveryRef>, InfraError> {
        let mut out = Vec::new();
        // Each shard its share, so one busy shard never starves the others.
        let per_shard = limit.div_ceil(DUE_SHARDS as usize);
        for shard in 0..DUE_SHARDS {
            let limit = out.len() + per_shard;
            let mut start = None;
            loop {
                let page = query(&self.client, &self.table)
                    .index_name(DUE_INDEX)
                    .key_condition_expression("due_shard = :sh AND due_at <= :now")
                    .expression_attribute_values(":sh", s(format!("due#{shard}")))
                    .expression_attribute_values(":now", n(now))
                    .limit((limit - out.len()).clamp(1, 1000) as i32)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| infra_error("dynamodb", "Query(next_due)", e))?;
                for item in page.items.unwrap_or_default() {
                    if let (Some(merchant), Some(endpoint), Some(event_id), Some(step)) =
                        (text(&item, "merchant"), text(&item, "endpoint"), text(&item, "event_id"), num(&item, "step"))
                    {
                        out.push(DeliveryRef { merchant, endpoint, event_id, step: step.max(0) as u64 });
                    }
                }
                start = page.last_evaluated_key;
                if start.is_none() || out.len() >= limit {
                    break;
                }
            }
            out.truncate(limit);
        }
        Ok(out)
    }

    async fn defer(&self, job: &DeliveryRef, due_at: i64) -> Result<(), InfraError> {
        let req = update(&self.client, &self.table, s(pk(&job.merchant)), s(delivery_sk(&job.endpoint, &job.event_id)))
            .update_expression("SET due_at = :due")
            .condition_expression("#step = :step AND #state = :pending")
            .expression_attribute_names("#step", "step")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":due", n(due_at))
            .expression_attribute_values(":step", n(job.step as i64))
            .expression_attribute_values(":pending", s("pending"));
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(defer)", e)),
        }
    }

    async fn save_health(&self, e: &Endpoint) -> Result<(), InfraError> {
        let mut req = update(&self.client, &self.table, s(pk(&e.merchant)), s(endpoint_sk(&e.id)))
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":fs", opt_n(e.failing_since))
            .expression_attribute_values(":ls", opt_n(e.last_success_at))
            .expression_attribute_values(":lf", opt_n(e.last_failure_at))
            .expression_attribute_values(":pu", opt_n(e.paused_until));
        let mut expr =
            "SET failing_since = :fs, last_success_at = :ls, last_failure_at = :lf, paused_until = :pu".to_owned();
        if !e.enabled {
            // Only ever disables: a merchant's re-enable is theirs to make.
            expr.push_str(", enabled = :f, disabled_reason = :why");
            req = req
                .expression_attribute_values(":f", AttributeValue::Bool(false))
                .expression_attribute_values(":why", s(e.disabled_reason.as_deref().unwrap_or("failing")));
        }
        match req.update_expression(expr).send().await {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failed(&err) => Ok(()),
            Err(err) => Err(infra_error("dynamodb", "UpdateItem(endpoint health)", err)),
        }
    }
}
