//! [`DataRequests`] on the data-requests table (`pk`/`sk`): `dsr#<id>` / `request`, with its `answer_by`
//! deadline (30 days) and, like every item, its own retention as TTL and on the due-date index.
//! While a request is open, `dsr-open` / `<answer_by>#<id>` marks it, so the deadline alarm reads one
//! partition instead of scanning requests.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::aws::{infra_error, query_all};
use super::dynamo_attrs::query;
use crate::domain::retention::{self, DataClass};
use crate::ports::{DataRequest, DataRequests, InfraError, RequestRecord};

const OPEN: &str = "dsr-open";

fn marker(answer_by: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", answer_by.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `needs_operator` is not final: such a request stays open, listed and alarmed until an operator closes it.
fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "closed")
}

#[derive(Debug, Clone)]
pub struct DynamoDataRequests {
    client: Client,
    table: String,
}

impl DynamoDataRequests {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl DataRequests for DynamoDataRequests {
    async fn open(&self, r: &DataRequest) -> Result<bool, InfraError> {
        let pk = format!("dsr#{}", r.id);
        let keep = retention::stamp(DataClass::DataSubjectRequestRecord, r.received_at, &pk)
            .ok_or_else(InfraError::deadline_out_of_range)?;
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s("request"))
            .item("subjects", AttributeValue::L(r.subjects.iter().map(|x| s(x)).collect()))
            .item("subject", s(r.subjects.first().map(String::as_str).unwrap_or("")))
            .item("kind", s(&r.kind))
            .item("source", s(&r.source))
            .item("status", s("received"))
            .item("received_at", s(&r.received_at.to_rfc3339()))
            .item("answer_by", s(&r.answer_by.to_rfc3339()))
            .item("expires_at", AttributeValue::N(keep.expires_at.to_string()))
            .item("due_bucket", s(&keep.due_bucket))
            .item("due_action", s("delete"))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(m) = &r.merchant {
            put = put.item("merchant", s(m));
        }
        let open = Put::builder()
            .table_name(&self.table)
            .item("pk", s(OPEN))
            .item("sk", s(&marker(r.answer_by, &r.id)))
            .item("id", s(&r.id))
            .item("answer_by", s(&r.answer_by.to_rfc3339()));
        let build = |e: aws_sdk_dynamodb::error::BuildError| InfraError {
            service: "dynamodb",
            operation: "TransactWriteItems(build)",
            retryable: false,
            source: Some(Box::new(e)),
        };
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put.build().map_err(build)?).build())
            .transact_items(TransactWriteItem::builder().put(open.build().map_err(build)?).build())
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            // Only "this request exists" (the request item's own condition) is `false`; any other
            // cancellation (throttling, a conflict) is an error, or a caller would be told of a request
            // that was never stored.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(tc))
                        if tc.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed")
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(infra_error("dynamodb", "TransactWriteItems", e)),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<RequestRecord>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("dsr#{id}")))
            .key("sk", AttributeValue::S("request".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem", e))?;
        Ok(out.item.as_ref().and_then(|i| decode(id, i)))
    }

    async fn update(
        &self, id: &str, status: &str, result: Option<&str>, export_key: Option<&str>, at: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let mut set = vec!["#status = :status", "updated_at = :at"];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("dsr#{id}")))
            .key("sk", AttributeValue::S("request".into()))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", AttributeValue::S(status.to_owned()))
            .expression_attribute_values(":at", AttributeValue::S(at.to_rfc3339()))
            .return_values(ReturnValue::AllNew);
        if let Some(r) = result {
            set.push("#result = :result");
            req = req
                .expression_attribute_names("#result", "result")
                .expression_attribute_values(":result", AttributeValue::S(r.to_owned()));
        }
        if let Some(k) = export_key {
            set.push("export_key = :key");
            req = req.expression_attribute_values(":key", AttributeValue::S(k.to_owned()));
        }
        if is_final(status) {
            set.push("completed_at = :at");
        }
        let out = req
            .update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "UpdateItem", e))?;
        let answer_by = out
            .attributes
            .as_ref()
            .and_then(|i| i.get("answer_by"))
            .and_then(|v| v.as_s().ok())
            .and_then(|v| v.parse::<DateTime<Utc>>().ok());
        if let (true, Some(answer_by)) = (is_final(status), answer_by) {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(OPEN.into()))
                .key("sk", AttributeValue::S(marker(answer_by, id)))
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", "DeleteItem", e))?;
        }
        Ok(())
    }

    async fn note_answered(&self, id: &str, at: DateTime<Utc>) -> Result<(), InfraError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("dsr#{id}")))
            .key("sk", AttributeValue::S("request".into()))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET answered_at = if_not_exists(answered_at, :at)")
            .expression_attribute_values(":at", AttributeValue::S(at.to_rfc3339()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("dynamodb", "UpdateItem", e))
    }

    async fn open_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>, InfraError> {
        let q = query(&self.client, &self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(OPEN.into()))
            .consistent_read(true);
        Ok(query_all(q, "Query")
            .await?
            .iter()
            .filter_map(|i| {
                let id = i.get("id")?.as_s().ok()?.clone();
                let by = i.get("answer_by")?.as_s().ok()?.parse::<DateTime<Utc>>().ok()?;
                Some((id, by))
            })
            .collect())
    }
}

fn decode(id: &str, i: &HashMap<String, AttributeValue>) -> Option<RequestRecord> {
    let text = |k: &str| i.get(k).and_then(|v| v.as_s().ok()).cloned();
    let time = |k: &str| text(k).and_then(|t| t.parse::<DateTime<Utc>>().ok());
    Some(RequestRecord {
        request: DataRequest {
            id: id.to_owned(),
            subjects: i
                .get("subjects")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|x| x.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
            kind: text("kind")?,
            source: text("source").unwrap_or_default(),
            merchant: text("merchant"),
            received_at: time("received_at")?,
            answer_by: time("answer_by")?,
            reply_to: None,
        },
        status: text("status").unwrap_or_default(),
        result: text("result"),
        export_key: text("export_key"),
        completed_at: time("completed_at"),
        answered_at: time("answered_at"),
    })
}
