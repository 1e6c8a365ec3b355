//! [`IdempotencyStore`] and [`Inbox`] on the platform bookkeeping table (`pk` string key).
//!
//! Claims: `pk` = `source#id`, `status` (`INPROGRESS` | `COMPLETED`), `lock_until` (epoch milliseconds,
//! in-progress only), `owner` (a random mark of the claiming call), `expires_at` (epoch seconds, the TTL
//! attribute), `result` (optional). No personal data: ids only.
//!
//! Inbox records: `pk` = `source#id`, `status` = `RECEIVED`, `body` (the message envelope, removed by
//! its consumer once applied), `merchant` and `subject` where known, `expires_at`. The table's stream (new images) feeds the pipes that hand
//! a reference to every new record with a body to its consumer's queue.

use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::aws::{infra_error, is_condition_failed};
use super::dynamo_attrs::{n, put, s};
use crate::ports::{Claim, IdempotencyStore, Inbox, InfraError, Owner, Recorded};

const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";
/// An inbox record.
const RECEIVED: &str = "RECEIVED";

#[derive(Debug, Clone)]
pub struct DynamoIdempotency {
    client: Client,
    table: String,
}

impl DynamoIdempotency {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl IdempotencyStore for DynamoIdempotency {
    async fn claim(
        &self, key: &str, now: DateTime<Utc>, lock_until: DateTime<Utc>, expires_at: DateTime<Utc>,
    ) -> Result<Claim, InfraError> {
        // This call's own mark: when the claim is applied but its answer is lost, the SDK's retry finds
        // the record taken, and the mark says by whom (the soak found such claims read as someone else's).
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let res = put(&self.client, &self.table)
            .item("pk", s(key))
            .item("status", s(IN_PROGRESS))
            .item("owner", s(&owner))
            .item("lock_until", n(lock_until.timestamp_millis()))
            .item("expires_at", n(expires_at.timestamp()))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now OR (#status = :inprogress AND lock_until <= :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
            .expression_attribute_values(":inprogress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) if is_condition_failed(&e) => {
                let old = e.as_service_error().and_then(|se| match se {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        c.item.clone()
                    }
                    _ => None,
                });
                let Some(old) = old else {
                    return Ok(Claim::InProgress);
                };
                let status = old.get("status").and_then(|v| v.as_s().ok()).map(String::as_str);
                if status == Some(IN_PROGRESS) && old.get("owner").and_then(|v| v.as_s().ok()) == Some(&owner) {
                    return Ok(Claim::Acquired);
                }
                if status == Some(COMPLETED) {
                    let result = old.get("result").and_then(|v| v.as_s().ok()).cloned();
                    Ok(Claim::Completed(result))
                } else {
                    Ok(Claim::InProgress)
                }
            }
            Err(e) => Err(infra_error("dynamodb", "PutItem", e)),
        }
    }

    async fn complete(&self, key: &str, result: Option<&str>) -> Result<(), InfraError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", s(COMPLETED));
        req = match result {
            Some(r) => req
                .update_expression("SET #status = :completed, #result = :result REMOVE lock_until")
                .expression_attribute_names("#result", "result")
                .expression_attribute_values(":result", s(r)),
            None => req.update_expression("SET #status = :completed REMOVE lock_until"),
        };
        req.send().await.map(|_| ()).map_err(|e| infra_error("dynamodb", "UpdateItem", e))
    }

    async fn release(&self, key: &str) -> Result<(), InfraError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .condition_expression("#status = :inprogress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":inprogress", s(IN_PROGRESS))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(infra_error("dynamodb", "DeleteItem", e)),
        }
    }

    async fn confirm(&self, key: &str, result: &str) -> Result<bool, InfraError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .update_expression("SET #status = :completed, #result = :result REMOVE lock_until")
            .condition_expression("#status = :inprogress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#result", "result")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":inprogress", s(IN_PROGRESS))
            .expression_attribute_values(":result", s(result))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem", e)),
        }
    }
}

/// [`Inbox`] on the same table (its records are keyed like claims, by source prefixes of their own).
#[derive(Debug, Clone)]
pub struct DynamoInbox {
    client: Client,
    table: String,
}

impl DynamoInbox {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl Inbox for DynamoInbox {
    async fn hand_off(
        &self, key: &str, body: &str, owner: &Owner<'_>, now: DateTime<Utc>, expires_at: DateTime<Utc>,
    ) -> Result<Recorded, InfraError> {
        let mut put = put(&self.client, &self.table)
            .item("pk", s(key))
            .item("status", s(RECEIVED))
            .item("body", s(body))
            .item("expires_at", n(expires_at.timestamp()))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now.timestamp()));
        if let Some(m) = owner.merchant {
            put = put.item("merchant", s(m));
        }
        if let Some(sub) = owner.subject {
            put = put.item("subject", s(sub));
        }
        let res = put.send().await;
        match res {
            Ok(_) => Ok(Recorded::New),
            Err(e) if is_condition_failed(&e) => Ok(Recorded::Duplicate),
            Err(e) => Err(infra_error("dynamodb", "PutItem", e)),
        }
    }

    async fn load(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem", e))?;
        let Some(item) = out.item else { return Ok(None) };
        let live = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|e| e > now.timestamp());
        Ok(live.then(|| item.get("body").and_then(|v| v.as_s().ok()).cloned()).flatten())
    }

    async fn done(&self, key: &str) -> Result<(), InfraError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .update_expression("REMOVE body")
            .condition_expression("attribute_exists(body)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem", e)),
        }
    }
}
