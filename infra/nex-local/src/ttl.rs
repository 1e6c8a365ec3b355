//! The TTL reaper: what DynamoDB's background TTL process does and moto does not.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// Deletes every item of `table` whose TTL attribute `attr` is below `cutoff` (epoch seconds); returns how
/// many. Scans the whole table: fine for a local emulator, never used in production.
pub async fn reap_table(ddb: &aws_sdk_dynamodb::Client, table: &str, attr: &str, cutoff: i64) -> Result<usize, String> {
    let desc = ddb.describe_table().table_name(table).send().await.map_err(|e| e.to_string())?;
    let keys: Vec<String> = desc
        .table()
        .map(|t| t.key_schema().iter().map(|k| k.attribute_name().to_owned()).collect())
        .unwrap_or_default();
    let mut deleted = 0;
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = ddb
            .scan()
            .table_name(table)
            .filter_expression("#ttl < :cutoff")
            .expression_attribute_names("#ttl", attr)
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for item in page.items() {
            let key: HashMap<_, _> = keys.iter().filter_map(|k| Some((k.clone(), item.get(k)?.clone()))).collect();
            ddb.delete_item().table_name(table).set_key(Some(key)).send().await.map_err(|e| e.to_string())?;
            deleted += 1;
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(deleted),
        }
    }
}
