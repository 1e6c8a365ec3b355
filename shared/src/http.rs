//! The one place where the outcomes and errors of every HTTP function become responses (the webhooks and
//! the merchant API), and where a request's headers and query are read.
//!
//! Bodies are small JSON objects: `{"status": "...", "reason": "..."}` with a stable machine-readable
//! reason. Every expected outcome has its status; only the unexpected is a 5xx. Nothing personal is logged.

use ::http::header::{HeaderValue, CONTENT_TYPE};
use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::{Body, RequestExt};
use tracing::{error, warn};

use crate::function::{Request, Response};
use crate::ports::InfraError;
use crate::usecases::data_requests::{IntakeError, Opened};
use crate::usecases::merchant_api::{KeyRefused, Shown, LINK_VALID};
use crate::usecases::opt_in::OptInError;
use crate::usecases::stripe_ingest::{Accepted, IngestError};
use crate::usecases::whatsapp_ingest::{Summary, WhatsAppError};

/// The reason of a 503: nothing was done and the caller may try again later.
const UNAVAILABLE: &str = "temporarily_unavailable";

fn response(status: u16, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(Body::Text(body));
    *r.status_mut() = ::http::StatusCode::from_u16(status).unwrap_or(::http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json(status: u16, body: serde_json::Value) -> Response {
    response(status, "application/json", body.to_string())
}

/// A refusal with its reason.
pub fn refuse(status: u16, reason: &str) -> Response {
    json(status, serde_json::json!({ "status": "rejected", "reason": reason }))
}

/// A refusal the caller should retry: an infrastructure failure that may pass. Retryable ones (throttling,
/// timeouts) answer 429 with `Retry-After`, since nothing was recorded and the same call will do; others
/// 503. Either way nothing was done, so a retry is safe.
pub fn unavailable(e: &InfraError) -> Response {
    if e.retryable {
        let mut r = refuse(429, "try_again");
        r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        r
    } else {
        refuse(503, UNAVAILABLE)
    }
}

/// A header's value, if it is text.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The query string's parameters, as API Gateway split them.
pub fn query(req: &Request) -> lambda_http::aws_lambda_events::query_map::QueryMap {
    req.query_string_parameters()
}

/// A response as API Gateway's HTTP API takes it (for paths that answer before `lambda_http` converts).
pub fn into_v2(r: Response) -> ApiGatewayV2httpResponse {
    let (parts, body) = r.into_parts();
    let mut v2 = ApiGatewayV2httpResponse::default();
    v2.status_code = i64::from(parts.status.as_u16());
    v2.headers = parts.headers;
    v2.body = Some(body);
    v2
}

/// The Stripe ingest outcome.
pub fn stripe_response(result: &Result<Accepted, IngestError>) -> Response {
    let r = match result {
        Ok(Accepted::Queued { event_id }) => {
            return json(200, serde_json::json!({ "status": "accepted", "id": event_id }))
        }
        Ok(Accepted::Duplicate { event_id }) => {
            return json(200, serde_json::json!({ "status": "duplicate", "id": event_id }))
        }
        Ok(Accepted::Ignored { event_id }) => {
            return json(200, serde_json::json!({ "status": "ignored", "id": event_id }))
        }
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
        Err(IngestError::Unavailable(e)) => {
            error!(error = %e, retryable = e.retryable, status = 503, "stripe delivery not saved; asking Stripe to retry");
            return refuse(503, UNAVAILABLE);
        }
    };
    if let Err(e) = result {
        warn!(reason = %e, status = r.status().as_u16(), "stripe delivery refused");
    }
    r
}

/// The WhatsApp ingest outcome. Meta only needs a 2xx; the counts help whoever reads the logs.
pub fn whatsapp_response(result: &Result<Summary, WhatsAppError>) -> Response {
    let r = match result {
        Ok(s) => {
            return json(
                200,
                serde_json::json!({
                    "status": "ok", "messages": s.messages, "receipts": s.receipts, "preferences": s.preferences,
                    "opt_outs": s.opt_outs, "duplicates": s.duplicates, "unknown_merchant": s.unknown_merchant,
                    "template_updates": s.template_updates,
                }),
            )
        }
        Err(WhatsAppError::TooLarge) => refuse(413, "body_too_large"),
        Err(WhatsAppError::Signature(e)) => refuse(e.status(), e.reason()),
        Err(WhatsAppError::Payload(_)) => refuse(400, "invalid_payload"),
        Err(WhatsAppError::Unavailable(e)) => {
            error!(error = %e, retryable = e.retryable, "whatsapp delivery not saved; asking Meta to retry");
            return refuse(503, UNAVAILABLE);
        }
    };
    if let Err(e) = result {
        warn!(reason = %e, status = r.status().as_u16(), "whatsapp delivery refused");
    }
    r
}

/// Meta's handshake: the challenge echoed as `text/plain` with `nosniff`, or 403.
pub fn handshake_response(challenge: Option<&str>) -> Response {
    match challenge {
        Some(c) => {
            tracing::info!("webhook verification handshake accepted");
            let mut r = response(200, "text/plain", c.to_owned());
            r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            r
        }
        None => {
            warn!("webhook verification handshake refused");
            refuse(403, "verification_failed")
        }
    }
}

/// A merchant API key that was refused.
pub fn key_refused(e: &KeyRefused) -> Response {
    match e {
        KeyRefused::Missing => refuse(401, "missing_api_key"),
        KeyRefused::Unknown => refuse(401, "unknown_api_key"),
        KeyRefused::Infra(e) => {
            error!(error = %e, "api key lookup failed");
            unavailable(e)
        }
    }
}

/// `POST /consent/opt-ins`.
pub fn opt_in_response(result: &Result<usize, OptInError>) -> Response {
    match result {
        Ok(n) => json(201, serde_json::json!({ "status": "recorded", "identifiers": n })),
        Err(OptInError::Infra(e)) => {
            error!(error = %e, "opt-in not recorded");
            unavailable(e)
        }
        Err(e) => refuse(422, e.reason()),
    }
}

/// `POST /data-requests`.
pub fn request_opened(result: &Result<Opened, IntakeError>) -> Response {
    match result {
        Ok(o) => json(
            202,
            serde_json::json!({
                "id": o.request.id,
                "kind": o.request.kind,
                "answer_by": o.request.answer_by,
                "status": if o.new { "received" } else { "already_open" },
            }),
        ),
        Err(IntakeError::Infra(e)) => {
            error!(error = %e, "data-subject request not opened");
            unavailable(e)
        }
        Err(IntakeError::Kind) => refuse(422, "unknown_kind"),
        Err(IntakeError::NoIdentifier) => refuse(422, "no_identifier"),
        Err(IntakeError::BadIdentifier(which)) => refuse(
            422,
            match *which {
                "phone" => "invalid_phone",
                "email" => "invalid_email",
                "bsuid" => "invalid_bsuid",
                _ => "invalid_marketplace_buyer",
            },
        ),
        Err(IntakeError::ReferenceReused) => refuse(409, "reference_reused"),
    }
}

/// `GET /data-requests/{id}`: another merchant's request is as absent as an unknown one.
pub fn request_shown(result: &Result<Option<Shown>, InfraError>) -> Response {
    let shown = match result {
        Ok(Some(s)) => s,
        Ok(None) => return refuse(404, "not_found"),
        Err(e) => {
            error!(error = %e, "data-subject request not shown");
            return refuse(503, UNAVAILABLE);
        }
    };
    let rec = &shown.record;
    let result = rec.result.as_deref().and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok());
    json(
        200,
        serde_json::json!({
            "id": rec.request.id,
            "kind": rec.request.kind,
            "status": rec.status,
            "received_at": rec.request.received_at,
            "answer_by": rec.request.answer_by,
            "completed_at": rec.completed_at,
            "result": result,
            "export_url": shown.export_url,
            "export_url_valid_seconds": shown.export_url.as_ref().map(|_| LINK_VALID.as_secs()),
        }),
    )
}
