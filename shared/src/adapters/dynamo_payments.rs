//! [`PaymentStore`] on the payments table (`payment_key` string key), items (de)serialised with
//! `serde_dynamo`. Reads filter on the deadline; writes are conditional on the version read.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::aws::{infra_error, is_condition_failed};
use super::dynamo_attrs::put;
use crate::domain::retention;
use crate::ports::{InfraError, Loaded, PaymentRecord, PaymentStore, Written};

#[derive(Debug, Clone)]
pub struct DynamoPayments {
    client: Client,
    table: String,
}

impl DynamoPayments {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl PaymentStore for DynamoPayments {
    async fn get(&self, payment_key: &str, now: DateTime<Utc>) -> Result<Loaded<PaymentRecord>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("payment_key", AttributeValue::S(payment_key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(Loaded { value: None, version: None });
        };
        let record: PaymentRecord = serde_dynamo::from_item(item).map_err(|e| InfraError {
            service: "dynamodb",
            operation: "GetItem(decode)",
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        let version = Some(record.version);
        let live = !retention::is_past(record.retention.expires_at, now);
        Ok(Loaded { value: live.then_some(record), version })
    }

    async fn put(&self, record: &PaymentRecord, expected: Option<u64>) -> Result<Written, InfraError> {
        let item = serde_dynamo::to_item(record).map_err(|e| InfraError {
            service: "dynamodb",
            operation: "PutItem(encode)",
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        let req = put(&self.client, &self.table).set_item(Some(item));
        let req = match expected {
            None => req.condition_expression("attribute_not_exists(payment_key)"),
            Some(v) => req
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(Written::Ok),
            Err(e) if is_condition_failed(&e) => Ok(Written::Conflict),
            Err(e) => Err(infra_error("dynamodb", "PutItem", e)),
        }
    }
}
