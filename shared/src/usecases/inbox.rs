//! The consumer side of the [`Inbox`]: a queue record is either an envelope (from a producer that queues
//! directly, or a DLQ redrive) or a reference to an inbox record (`{"inbox": key}`, from the table's
//! stream). A reference is resolved to the stored body; once the consumer applied it, the body is
//! dropped, so what waits in a queue is an id, and personal data lives only until it is processed.

use chrono::{DateTime, Utc};

use crate::domain::messages::InboxRef;
use crate::ports::{Inbox, InfraError};

/// What a queue record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// An envelope, in the record itself.
    Direct(String),
    /// An envelope stored in the inbox under `key`.
    Stored { key: String, body: String },
    /// A reference whose body is gone: applied before (a redelivery) or past its deadline.
    Gone { key: String },
}

impl Resolved {
    pub fn body(&self) -> Option<&str> {
        match self {
            Resolved::Direct(b) | Resolved::Stored { body: b, .. } => Some(b),
            Resolved::Gone { .. } => None,
        }
    }
}

/// Reads what `body` refers to.
pub async fn resolve(inbox: &impl Inbox, body: &str, now: DateTime<Utc>) -> Result<Resolved, InfraError> {
    let Ok(InboxRef { inbox: key }) = serde_json::from_str::<InboxRef>(body) else {
        return Ok(Resolved::Direct(body.to_owned()));
    };
    Ok(match inbox.load(&key, now).await? {
        Some(body) => Resolved::Stored { key, body },
        None => Resolved::Gone { key },
    })
}

/// After the record was applied: drops the stored body.
pub async fn settle(inbox: &impl Inbox, resolved: &Resolved) -> Result<(), InfraError> {
    match resolved {
        Resolved::Stored { key, .. } => inbox.done(key).await,
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::adapters::memory::MemoryInbox;

    #[tokio::test]
    async fn a_reference_is_resolved_once_and_an_envelope_passes_through() {
        let inbox = MemoryInbox::default();
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        inbox
            .hand_off(
                "src#1",
                "{\"type\":\"x\"}",
                &crate::ports::Owner::default(),
                now,
                now + chrono::Duration::days(8),
            )
            .await
            .unwrap();
        let r = resolve(&inbox, r#"{"inbox":"src#1"}"#, now).await.unwrap();
        assert_eq!(r.body(), Some("{\"type\":\"x\"}"));
        settle(&inbox, &r).await.unwrap();
        assert_eq!(resolve(&inbox, r#"{"inbox":"src#1"}"#, now).await.unwrap(), Resolved::Gone { key: "src#1".into() });
        let direct = r#"{"type":"y","version":1}"#;
        assert_eq!(resolve(&inbox, direct, now).await.unwrap(), Resolved::Direct(direct.into()));
    }
}
