//! The one place where use-case outcomes and errors become HTTP responses (API Gateway HTTP API v2).
//!
//! Bodies are small JSON objects: `{"status": "...", "reason": "..."}` with a stable machine-readable
//! reason. Every expected outcome has its status; only the unexpected is a 5xx.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

use crate::usecases::stripe_ingest::{Accepted, IngestError};

/// Builds a JSON response.
pub fn json(status: u16, body: serde_json::Value) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(status);
    r.headers = headers;
    r.body = Some(Body::Text(body.to_string()));
    r.is_base64_encoded = false;
    r
}

/// A refusal with its reason.
pub fn refuse(status: u16, reason: &str) -> ApiGatewayV2httpResponse {
    json(status, serde_json::json!({ "status": "rejected", "reason": reason }))
}

/// A refusal the caller should retry: an infrastructure failure that may pass. Retryable ones (throttling,
/// timeouts) answer 429 with `Retry-After`, since nothing was recorded and the same call will do; others
/// 503. Either way nothing was done, so a retry is safe.
pub fn unavailable(retryable: bool) -> ApiGatewayV2httpResponse {
    if retryable {
        let mut r = refuse(429, "try_again");
        r.headers.insert("retry-after", HeaderValue::from_static("1"));
        r
    } else {
        refuse(503, "temporarily_unavailable")
    }
}

/// The exact bytes the caller sent: API Gateway base64-encodes non-text bodies, and signatures cover the
/// decoded bytes. `None` when the body claims base64 and is not.
pub fn raw_body(req: &ApiGatewayV2httpRequest) -> Option<Vec<u8>> {
    let body = req.body.as_deref().unwrap_or("");
    if req.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    } else {
        Some(body.as_bytes().to_vec())
    }
}

/// Maps the Stripe ingest outcome.
pub fn stripe_response(result: &Result<Accepted, IngestError>) -> ApiGatewayV2httpResponse {
    match result {
        Ok(Accepted::Queued { event_id }) => json(200, serde_json::json!({ "status": "accepted", "id": event_id })),
        Ok(Accepted::Duplicate { event_id }) => json(200, serde_json::json!({ "status": "duplicate", "id": event_id })),
        Ok(Accepted::Ignored { event_id }) => json(200, serde_json::json!({ "status": "ignored", "id": event_id })),
        Err(IngestError::TooLarge) => refuse(413, "body_too_large"),
        Err(IngestError::Signature(e)) => {
            use crate::domain::stripe::signature::SignatureError::*;
            let status = match e {
                MissingHeader | MalformedHeader => 400,
                NoV1Signature | NoMatch | Stale => 401,
            };
            refuse(status, e.reason())
        }
        Err(IngestError::Parse(e)) => refuse(400, e.reason()),
        Err(IngestError::Unavailable(_)) => refuse(503, "temporarily_unavailable"),
    }
}

/// A plain-text response (the WhatsApp handshake echoes its challenge as the body).
pub fn plain(status: u16, body: &str) -> ApiGatewayV2httpResponse {
    let mut r = json(status, serde_json::Value::Null);
    r.headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.body = Some(Body::Text(body.to_owned()));
    r
}

/// Maps the WhatsApp ingest outcome. Meta only needs a 2xx; the counts help whoever reads the logs.
pub fn whatsapp_response(
    result: &Result<crate::usecases::whatsapp_ingest::Summary, crate::usecases::whatsapp_ingest::WhatsAppError>,
) -> ApiGatewayV2httpResponse {
    use crate::usecases::whatsapp_ingest::WhatsAppError;
    match result {
        Ok(s) => json(
            200,
            serde_json::json!({
                "status": "ok", "messages": s.messages, "receipts": s.receipts, "preferences": s.preferences,
                "opt_outs": s.opt_outs, "duplicates": s.duplicates, "unknown_merchant": s.unknown_merchant,
                "template_updates": s.template_updates,
            }),
        ),
        Err(WhatsAppError::TooLarge) => refuse(413, "body_too_large"),
        Err(WhatsAppError::Signature(e)) => refuse(e.status(), e.reason()),
        Err(WhatsAppError::Payload(_)) => refuse(400, "invalid_payload"),
        Err(WhatsAppError::Unavailable(_)) => refuse(503, "temporarily_unavailable"),
    }
}
