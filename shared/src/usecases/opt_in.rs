//! Record a marketing opt-in for one merchant, from either documented door: the authenticated HTTP route
//! for merchants' systems (`POST /consent/opt-ins`) or the storefront's `consent.opt_in` message on the
//! messaging queue. Both land here, so the evidence recorded is the same.

use chrono::{DateTime, Utc};

pub use crate::domain::messages::OptIn;
use crate::domain::subject::{IdentifierKind, SubjectHasher};
use crate::domain::validate;
use crate::ports::{ConsentAction, ConsentEntry, ConsentLedger, InfraError};

#[derive(Debug, thiserror::Error)]
pub enum OptInError {
    #[error("an opt-in needs a phone number or a BSUID")]
    NoIdentifier,
    #[error("an opt-in needs an id, a source and a merchant")]
    Incomplete,
    #[error("an opt-in must be dated between 2000 and now")]
    FromTheFuture,
    #[error("the id must be 1-64 characters of A-Z a-z 0-9 . _ : -")]
    BadId,
    #[error("the source must be a short code: lower-case letters, digits and _, at most 40")]
    BadSource,
    #[error("the phone number is not an E.164 number")]
    BadPhone,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl OptInError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoIdentifier => "no_identifier",
            Self::Incomplete => "incomplete_opt_in",
            Self::FromTheFuture => "implausible_time",
            Self::BadId => "invalid_id",
            Self::BadSource => "invalid_source",
            Self::BadPhone => "invalid_phone",
            Self::Infra(_) => "temporarily_unavailable",
        }
    }
}

/// Records `opt_in` for `merchant`; returns how many identifiers it was recorded for.
pub async fn record<L: ConsentLedger>(
    ledger: &L, hasher: &SubjectHasher, merchant: &str, opt_in: &OptIn, now: DateTime<Utc>,
) -> Result<usize, OptInError> {
    if opt_in.id.trim().is_empty() || opt_in.source.trim().is_empty() || merchant.trim().is_empty() {
        return Err(OptInError::Incomplete);
    }
    if !validate::is_id(&opt_in.id) {
        return Err(OptInError::BadId);
    }
    if !validate::is_token(&opt_in.source) {
        return Err(OptInError::BadSource);
    }
    if opt_in.phone.as_deref().is_some_and(|p| !validate::is_e164(p)) {
        return Err(OptInError::BadPhone);
    }
    if opt_in.bsuid.as_deref().is_some_and(|b| !validate::is_id(b)) || !validate::is_id(merchant) {
        return Err(OptInError::BadId);
    }
    let at = opt_in.at.unwrap_or(now);
    if !validate::is_plausible_time(at, now) {
        return Err(OptInError::FromTheFuture);
    }
    // Within the allowed clock skew, never later than now: a caller cannot date an opt-in after a STOP
    // that has not happened yet.
    let at = at.min(now);
    // The caller's id is hashed into the entry's id (it may be anything of its alphabet, digits of a phone
    // number included), so the ledger and the audit log hold a reference, not what the caller wrote.
    let reference = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("{merchant}\n{}", opt_in.id)))[..24].to_owned()
    };
    let subjects: Vec<String> = opt_in
        .phone
        .as_deref()
        .and_then(|p| hasher.hash(IdentifierKind::Phone, p))
        .into_iter()
        .chain(opt_in.bsuid.as_deref().and_then(|b| hasher.hash(IdentifierKind::Bsuid, b)))
        .collect();
    if subjects.is_empty() {
        return Err(OptInError::NoIdentifier);
    }
    for subject in &subjects {
        let entry = ConsentEntry {
            id: format!("optin#{merchant}#{reference}"),
            subject: subject.clone(),
            merchant: Some(merchant.to_owned()),
            action: ConsentAction::OptIn,
            source: opt_in.source.clone(),
            at,
        };
        ledger.record(&entry).await?;
    }
    Ok(subjects.len())
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::adapters::memory::MemoryLedger;

    fn opt_in(phone: Option<&str>) -> OptIn {
        OptIn {
            id: "o-1".into(),
            merchant: None,
            phone: phone.map(Into::into),
            bsuid: None,
            source: "checkout_page".into(),
            at: None,
        }
    }

    #[tokio::test]
    async fn an_opt_in_is_recorded_once_per_identifier_with_merchant_source_and_time() {
        let (ledger, hasher, now) = (MemoryLedger::default(), SubjectHasher::new(&SecretString::from("p")), Utc::now());
        let mut o = opt_in(Some("+31 6 1234 5678"));
        o.bsuid = Some("NL.abc".into());
        assert_eq!(record(&ledger, &hasher, "m-1", &o, now).await.unwrap(), 2);
        record(&ledger, &hasher, "m-1", &o, now).await.unwrap();
        let entries = ledger.entries.lock().unwrap();
        assert_eq!(entries.len(), 2, "recording it again changes nothing");
        assert!(entries
            .values()
            .all(|e| e.merchant.as_deref() == Some("m-1") && e.source == "checkout_page" && e.at == now));
    }

    #[tokio::test]
    async fn an_opt_in_without_identifier_source_or_with_a_future_date_is_refused() {
        let (ledger, hasher, now) = (MemoryLedger::default(), SubjectHasher::new(&SecretString::from("p")), Utc::now());
        assert!(matches!(record(&ledger, &hasher, "m", &opt_in(None), now).await, Err(OptInError::NoIdentifier)));
        let mut o = opt_in(Some("+31612345678"));
        o.source = " ".into();
        assert!(matches!(record(&ledger, &hasher, "m", &o, now).await, Err(OptInError::Incomplete)));
        let mut o = opt_in(Some("+31612345678"));
        o.at = Some(now + chrono::Duration::days(1));
        assert!(matches!(record(&ledger, &hasher, "m", &o, now).await, Err(OptInError::FromTheFuture)));
    }

    #[tokio::test]
    async fn the_callers_id_is_kept_hashed_and_an_opt_in_is_never_dated_after_now() {
        let (ledger, hasher, now) = (MemoryLedger::default(), SubjectHasher::new(&SecretString::from("p")), Utc::now());
        let mut o = opt_in(Some("+31612345678"));
        o.id = "31612345678".into();
        o.at = Some(now + chrono::Duration::minutes(4));
        record(&ledger, &hasher, "m-1", &o, now).await.unwrap();
        let entries = ledger.entries.lock().unwrap();
        let e = entries.values().next().unwrap();
        assert!(!e.id.contains("31612345678"), "{}", e.id);
        assert_eq!(e.at, now, "clock skew allowed, but not a date after now");
    }

    #[tokio::test]
    async fn free_text_in_the_id_or_source_and_malformed_phones_are_refused() {
        let (ledger, hasher, now) = (MemoryLedger::default(), SubjectHasher::new(&SecretString::from("p")), Utc::now());
        let mut o = opt_in(Some("+31612345678"));
        o.source = "jane.doe@example.com said yes".into();
        assert_eq!(record(&ledger, &hasher, "m", &o, now).await.unwrap_err().reason(), "invalid_source");
        let mut o = opt_in(Some("+31612345678"));
        o.id = "x".repeat(65);
        assert_eq!(record(&ledger, &hasher, "m", &o, now).await.unwrap_err().reason(), "invalid_id");
        let o = opt_in(Some("+316"));
        assert_eq!(record(&ledger, &hasher, "m", &o, now).await.unwrap_err().reason(), "invalid_phone");
        let mut o = opt_in(Some("+31612345678"));
        o.at = Some(chrono::TimeZone::with_ymd_and_hms(&Utc, 1999, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(record(&ledger, &hasher, "m", &o, now).await.unwrap_err().reason(), "implausible_time");
        assert!(ledger.entries.lock().unwrap().is_empty(), "nothing stored");
    }
}
