//! [`DataRequests`] on the data-requests table (`pk`/`sk`): `dsr#<id>` / `request`, with its `answer_by`
//! deadline (30 days) and, like every item, its own retention as TTL and on the due-date index.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::aws::infra_error;
use super::dynamo_idempotency::is_condition_failed;
use crate::domain::retention::{self, DataClass};
use crate::ports::{DataRequest, DataRequests, InfraError};

#[derive(Debug, Clone)]
pub struct DynamoDataRequests {
    client: Client,
    table: String,
}

impl DynamoDataRequests {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl DataRequests for DynamoDataRequests {
    async fn open(&self, r: &DataRequest) -> Result<bool, InfraError> {
        let pk = format!("dsr#{}", r.id);
        let keep = retention::stamp(DataClass::DataSubjectRequestRecord, r.received_at, &pk).ok_or(InfraError {
            service: "domain",
            operation: "retention::stamp",
            retryable: false,
            source: Some("deadline out of range".into()),
        })?;
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut put = self
            .client
            .put_item()
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
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "PutItem", e)),
        }
    }
}
