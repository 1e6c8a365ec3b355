//! Trigger events built exactly as AWS sends them (JSON first, then the typed struct), so the handlers
//! see locally what they see in Lambda.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use base64::Engine;
use serde_json::{json, Map, Value};

/// An API Gateway HTTP API (payload v2.0) event. Text bodies (JSON, text/*, form) are passed as text;
/// anything else is base64-encoded, as API Gateway does.
pub fn http_v2(
    method: &str, path: &str, query: &str, headers: &[(String, String)], body: &[u8], request_id: &str,
) -> ApiGatewayV2httpRequest {
    let content_type = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let textual = content_type.contains("json")
        || content_type.starts_with("text/")
        || content_type.contains("x-www-form-urlencoded");
    let (body, b64) = match std::str::from_utf8(body) {
        Ok(s) if textual || body.is_empty() => (s.to_owned(), false),
        _ => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    // API Gateway joins repeated query parameters with commas.
    let mut params = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let joined = match params.get(k.as_ref()).and_then(Value::as_str) {
            Some(prev) => format!("{prev},{v}"),
            None => v.into_owned(),
        };
        params.insert(k.into_owned(), Value::String(joined));
    }
    let mut hdrs = Map::new();
    for (k, v) in headers {
        hdrs.insert(k.to_ascii_lowercase(), Value::String(v.clone()));
    }
    let now = chrono::Utc::now();
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": hdrs,
        "queryStringParameters": params,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "requestId": request_id,
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "local" }
        },
        "body": body,
        "isBase64Encoded": b64
    });
    serde_json::from_value(event).expect("the v2 event shape is fixed")
}

/// An SQS event from received messages.
pub fn sqs(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str, region: &str) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect())
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("the SQS event shape is fixed")
}
