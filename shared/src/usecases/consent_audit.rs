//! Consent changes in the audit log. The consent ledger is the evidence; the audit log records that each
//! change happened (by subject hash, with its source), once per ledger entry however often it is delivered.
//!
//! Opt-outs and Meta's stop / resume arrive on the WhatsApp webhook, which must answer fast and records
//! them in the ledger before it does; their audit entries are written by the messaging worker from the
//! queued message (keyword opt-outs from the inbound message, Meta's preferences as a `consent.recorded`
//! message). Opt-ins are audited where they are recorded, through [`AuditedLedger`].

use chrono::{DateTime, Utc};

use crate::domain::audit::NewEntry;
use crate::domain::envelope::Message;
use crate::ports::{AuditLog, ConsentAction, ConsentEntry, ConsentLedger, InfraError};

impl Message for ConsentEntry {
    const KIND: &'static str = "consent.recorded";
    const VERSION: u32 = 1;
}

fn action(a: ConsentAction) -> &'static str {
    match a {
        ConsentAction::OptIn => "consent.opt_in",
        ConsentAction::OptOut => "consent.opt_out",
        ConsentAction::MetaStop => "consent.meta_stop",
        ConsentAction::MetaResume => "consent.meta_resume",
    }
}

/// Audits one ledger entry (at most once per entry and subject).
pub async fn audit(log: &impl AuditLog, actor: &str, e: &ConsentEntry, now: DateTime<Utc>) -> Result<(), InfraError> {
    let detail = serde_json::json!({
        "entry": e.id,
        "merchant": e.merchant.as_deref().unwrap_or("*"),
        "source": e.source,
        "at": e.at,
    });
    let entry = NewEntry::new(actor, action(e.action), Some(&e.subject), &detail)
        .keyed(format!("consent#{}#{}", e.id, e.subject));
    log.append(entry, now).await.map(|_| ())
}

/// A consent ledger whose every recorded entry is also audited.
pub struct AuditedLedger<'a, L, A> {
    pub ledger: &'a L,
    pub audit: &'a A,
    pub actor: &'a str,
}

impl<L: ConsentLedger, A: AuditLog> ConsentLedger for AuditedLedger<'_, L, A> {
    async fn record(&self, entry: &ConsentEntry) -> Result<(), InfraError> {
        self.ledger.record(entry).await?;
        audit(self.audit, self.actor, entry, Utc::now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryAudit, MemoryLedger};

    #[tokio::test]
    async fn each_entry_is_audited_once_by_subject_hash_only() {
        let ledger = MemoryLedger::default();
        let log = MemoryAudit::default();
        let audited = AuditedLedger {
            ledger: &ledger,
            audit: &log,
            actor: "merchant-api",
        };
        let e = ConsentEntry {
            id: "optin#m#1".into(),
            subject: "ab12".into(),
            merchant: Some("m".into()),
            action: ConsentAction::OptIn,
            source: "checkout_page".into(),
            at: Utc::now(),
        };
        audited.record(&e).await.unwrap();
        audited.record(&e).await.unwrap();
        let entries = log.entries(0, 10).await.unwrap();
        assert_eq!(entries.len(), 1, "a redelivered entry is audited once");
        assert_eq!(
            (entries[0].action.as_str(), entries[0].subject.as_deref()),
            ("consent.opt_in", Some("ab12"))
        );
    }
}
