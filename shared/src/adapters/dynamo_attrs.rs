//! The one set of DynamoDB attribute helpers every adapter uses.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::aws::infra_error;
use crate::ports::InfraError;

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A DynamoDB item, as the SDK gives it.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute of an item.
pub fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A number attribute of an item, as an integer.
pub fn num(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// The item `pk` / `sk` of `table`, read strongly consistent when `consistent`.
pub async fn get_item(
    client: &Client, table: &str, pk: String, sk: &str, consistent: bool,
) -> Result<Option<Item>, InfraError> {
    get(client, table, s(pk), s(sk))
        .consistent_read(consistent)
        .send()
        .await
        .map(|out| out.item)
        .map_err(|e| infra_error("dynamodb", "GetItem", e))
}

/// An UpdateItem of the item `pk` / `sk` of `table`.
pub fn update(
    client: &Client, table: &str, pk: AttributeValue, sk: AttributeValue,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    client.update_item().table_name(table).key("pk", pk).key("sk", sk)
}

/// A GetItem of the item `pk` / `sk` of `table`.
pub fn get(
    client: &Client, table: &str, pk: AttributeValue, sk: AttributeValue,
) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
    client.get_item().table_name(table).key("pk", pk).key("sk", sk)
}

/// A PutItem into `table`.
pub fn put(client: &Client, table: &str) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
    client.put_item().table_name(table)
}

/// Puts `item` unless an item with its key exists: `true` if written, `false` if one was there.
pub async fn put_if_absent(
    client: &Client, table: &str, item: Item, operation: &'static str,
) -> Result<bool, InfraError> {
    match put(client, table).set_item(Some(item)).condition_expression("attribute_not_exists(sk)").send().await {
        Ok(_) => Ok(true),
        Err(e) if super::aws::is_condition_failed(&e) => Ok(false),
        Err(e) => Err(infra_error("dynamodb", operation, e)),
    }
}

/// A Query of `table`.
pub fn query(client: &Client, table: &str) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    client.query().table_name(table)
}
