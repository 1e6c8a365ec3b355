//! Consent changes in the audit log, derived from the ledger itself.
//!
//! The rule: the audit log is a derived record. Writers only record the change in the consent ledger;
//! every new ledger entry reaches the audit queue through the messaging table's stream (a pipe keeps the
//! entries' keys), and one appender turns a batch of them into audit entries, many per chain step. So the
//! ledger and the audit log cannot diverge (an entry written is an entry audited; one never written is
//! never audited), no caller's request contends on the chain's head, and a redelivered change is audited
//! once (each audit entry is keyed by its ledger entry).

use chrono::{DateTime, Utc};

use crate::domain::audit::NewEntry;
pub use crate::domain::messages::LedgerRef;
use crate::ports::{AuditLog, ConsentAction, ConsentEntry, InfraError, LedgerReader};

fn action(a: ConsentAction) -> &'static str {
    match a {
        ConsentAction::OptIn => "consent.opt_in",
        ConsentAction::OptOut => "consent.opt_out",
        ConsentAction::MetaStop => "consent.meta_stop",
        ConsentAction::MetaResume => "consent.meta_resume",
    }
}

/// The audit entry of one ledger entry: by subject hash, with the entry's reference, merchant, source and
/// time (the source is a validated short token; see `domain::validate`). The entry's id is often Meta's
/// message id, which encodes the person's phone number: the audit log keeps its `telemetry::log_ref`
/// (the ledger entry is found by hashing its id the same way).
pub fn entry_for(e: &ConsentEntry) -> NewEntry {
    let detail = serde_json::json!({
        "entry": crate::telemetry::log_ref(&e.id),
        "merchant": e.merchant.as_deref().unwrap_or("*"),
        "source": e.source,
        "at": e.at,
    });
    NewEntry::new(ACTOR, action(e.action), Some(&e.subject), &detail).keyed(format!("consent#{}#{}", e.id, e.subject))
}

/// Who appends consent changes.
pub const ACTOR: &str = "consent-ledger";

/// Audits the ledger entries behind `refs` (entries gone since, e.g. past their deadline, are skipped:
/// there is nothing left to attest). Returns how many audit entries were appended.
pub async fn audit_changes(
    ledger: &impl LedgerReader, log: &impl AuditLog, refs: &[LedgerRef], now: DateTime<Utc>,
) -> Result<usize, InfraError> {
    let mut entries = ledger.read(refs).await?;
    // In the order the changes happened, so the chain reads as a history.
    entries.sort_by(|a, b| (a.at, &a.id, &a.subject).cmp(&(b.at, &b.id, &b.subject)));
    let news = entries.iter().map(entry_for).collect();
    Ok(log.append_many(news, now).await?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryAudit, MemoryLedger};
    use crate::ports::ConsentLedger;

    #[tokio::test]
    async fn each_ledger_entry_is_audited_once_by_subject_hash_only() {
        let ledger = MemoryLedger::default();
        let log = MemoryAudit::default();
        let e = ConsentEntry {
            id: "optin#m#1".into(),
            subject: "ab12".into(),
            merchant: Some("m".into()),
            action: ConsentAction::OptIn,
            source: "checkout_page".into(),
            at: Utc::now(),
        };
        ledger.record(&e).await.unwrap();
        let r = LedgerRef { pk: "subject#ab12".into(), sk: "consent#optin#m#1".into() };
        assert_eq!(audit_changes(&ledger, &log, &[r.clone(), r.clone()], Utc::now()).await.unwrap(), 1);
        assert_eq!(audit_changes(&ledger, &log, &[r], Utc::now()).await.unwrap(), 0, "redelivered");
        let entries = log.entries(0, 10).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].action.as_str(), entries[0].subject.as_deref()), ("consent.opt_in", Some("ab12")));
        assert_eq!(
            LedgerRef::parse(r#"{"ledger":{"pk":"subject#ab12","sk":"consent#x"}}"#).map(|r| r.sk),
            Some("consent#x".into())
        );
        assert_eq!(LedgerRef::parse(r#"{"ledger":{"pk":"conv#x","sk":"msg#1"}}"#), None);
    }
}
