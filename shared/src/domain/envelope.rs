//! The versioned JSON envelope of every message passed between functions through SQS.
//!
//! `id` is stable across redeliveries (the consumer's idempotency key). Payloads carry no personal data
//! beyond keyed subject hashes, and nothing personal goes into message attributes.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<P> {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub id: String,
    pub occurred_at: DateTime<Utc>,
    pub trace_id: String,
    pub payload: P,
}

/// Why a message body cannot be consumed. Every variant fails the record so it reaches the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("message body is not an envelope")]
    Malformed,
    #[error("unknown message type or version")]
    Unsupported { kind: String, version: u32 },
    #[error("payload does not match its type")]
    BadPayload,
}

/// A payload type that knows its envelope `type` and `version`.
pub trait Message: Serialize + DeserializeOwned {
    const KIND: &'static str;
    const VERSION: u32;
}

impl<P: Message> Envelope<P> {
    pub fn new(id: String, occurred_at: DateTime<Utc>, trace_id: String, payload: P) -> Self {
        Self { kind: P::KIND.to_owned(), version: P::VERSION, id, occurred_at, trace_id, payload }
    }

    /// Decodes a body, refusing any other type or version rather than guessing.
    pub fn decode(body: &str) -> Result<Self, EnvelopeError> {
        let raw: Envelope<serde_json::Value> = serde_json::from_str(body).map_err(|_| EnvelopeError::Malformed)?;
        if raw.kind != P::KIND || raw.version != P::VERSION {
            return Err(EnvelopeError::Unsupported { kind: raw.kind, version: raw.version });
        }
        let payload = serde_json::from_value(raw.payload).map_err(|_| EnvelopeError::BadPayload)?;
        Ok(Envelope {
            kind: raw.kind,
            version: raw.version,
            id: raw.id,
            occurred_at: raw.occurred_at,
            trace_id: raw.trace_id,
            payload,
        })
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("envelopes of plain data always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }
    impl Message for Ping {
        const KIND: &'static str = "test.ping";
        const VERSION: u32 = 2;
    }

    #[test]
    fn an_envelope_round_trips_and_other_versions_are_refused() {
        let e = Envelope::new("id-1".into(), Utc::now(), "t".into(), Ping { n: 3 });
        let body = e.encode();
        assert_eq!(Envelope::<Ping>::decode(&body).unwrap(), e);
        let v3 = body.replace("\"version\":2", "\"version\":3");
        assert!(matches!(Envelope::<Ping>::decode(&v3), Err(EnvelopeError::Unsupported { version: 3, .. })));
        assert_eq!(Envelope::<Ping>::decode("{}").unwrap_err(), EnvelopeError::Malformed);
        let bad = body.replace("{\"n\":3}", "{\"m\":3}");
        assert_eq!(Envelope::<Ping>::decode(&bad).unwrap_err(), EnvelopeError::BadPayload);
    }
}
