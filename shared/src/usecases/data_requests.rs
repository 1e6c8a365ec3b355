//! Data-subject requests: intake (operator, merchant API; the WhatsApp `DATA` keyword has its own) and
//! processing (access / export, deletion).
//!
//! Everything about a person is found through the `by_subject` index of every table, by each of the
//! request's subject hashes. What an erasure does to an item comes from its kind ([`inventory`]): delete,
//! anonymise (tax records: personal fields removed, amounts and numbers kept) or retain until its own
//! deadline (consent evidence, the request records). Each step is idempotent, so a run that fails midway
//! is simply run again (SQS redelivery), and a second erasure finds nothing left to change.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::audit::NewEntry;
use crate::domain::data_inventory::{self, Erasure, Store};
use crate::domain::envelope::Envelope;
use crate::domain::retention::{self, DataClass};
use crate::domain::subject::{IdentifierKind, SubjectHasher};
use crate::domain::validate;
use crate::ports::{
    Attrs, AuditLog, DataRequest, DataRequests, DataStore, InfraError, ItemKey, ObjectStore, Queue, ReplyTo,
    RequestRecord,
};
use crate::usecases::send_notification::{Content, SendRequest};
use crate::usecases::sweep::EXPORT_PREFIX;

/// The export's format identifier (documented in `docs/data-export.md`).
pub const EXPORT_SCHEMA: &str = "nex.subject-export/1";

/// How a request is asked for over the API or the operator CLI: the person's identifiers in clear (hashed
/// here, never stored), and what they want.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Intake {
    pub kind: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub bsuid: Option<String>,
    /// `<marketplace>:<buyer id>`.
    #[serde(default)]
    pub marketplace_buyer: Option<String>,
}

/// Says which identifiers were given, never their values.
impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("kind", &self.kind)
            .field("phone", &self.phone.as_ref().map(|_| "<set>"))
            .field("email", &self.email.as_ref().map(|_| "<set>"))
            .field("bsuid", &self.bsuid.as_ref().map(|_| "<set>"))
            .field("marketplace_buyer", &self.marketplace_buyer.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("id", &self.request.id).finish_non_exhaustive()
    }
}

pub struct Opened {
    pub request: DataRequest,
    /// False if a request with this id was already open.
    pub new: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("unknown kind (access, export, deletion, correction)")]
    Kind,
    #[error("no identifier given (phone, email, bsuid, marketplace_buyer)")]
    NoIdentifier,
    /// An identifier that is not what it says (a phone number that is not E.164, an email without a
    /// domain, an id longer than 64 characters).
    #[error("identifier {0} is malformed")]
    BadIdentifier(&'static str),
    /// The reference names a request for another kind or another person.
    #[error("this reference already names a request of another kind or for another person")]
    ReferenceReused,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Where a request comes from: its stable id, the intake (`merchant_api`, `operator`) and the merchant.
#[derive(Debug, Clone)]
pub struct Origin {
    pub id: String,
    pub source: String,
    pub merchant: Option<String>,
}

/// A request id for an intake: with the asker's own reference (a support ticket), the same reference from
/// the same asker always names the same request, so a retried intake opens nothing twice; the reference is
/// hashed, as it may say anything. Without one, a fresh id.
pub fn request_id(prefix: &str, asker: &str, reference: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match reference.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!("{prefix}-{}", &hex::encode(Sha256::digest(format!("{asker}\n{r}")))[..24]),
        None => format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
    }
}

pub const KINDS: [&str; 4] = ["access", "export", "deletion", "correction"];

/// Opens a request and queues it for processing. `id` is stable per intake (e.g. from a client reference),
/// so a retried intake opens nothing twice.
pub async fn open(
    requests: &impl DataRequests, queue: &impl Queue, hasher: &SubjectHasher, intake: &Intake, origin: Origin,
    now: DateTime<Utc>,
) -> Result<Opened, IntakeError> {
    let Origin { id, source, merchant } = origin;
    if !KINDS.contains(&intake.kind.as_str()) {
        return Err(IntakeError::Kind);
    }
    let ids = [
        (IdentifierKind::Phone, &intake.phone),
        (IdentifierKind::Email, &intake.email),
        (IdentifierKind::Bsuid, &intake.bsuid),
        (IdentifierKind::MarketplaceBuyer, &intake.marketplace_buyer),
    ];
    for (kind, value) in &ids {
        let Some(v) = value.as_deref() else { continue };
        let ok = match kind {
            IdentifierKind::Phone => validate::is_e164(v),
            IdentifierKind::Email => validate::is_email(v),
            IdentifierKind::Bsuid => validate::is_id(v),
            // `<marketplace>:<buyer id>`.
            IdentifierKind::MarketplaceBuyer => v.split_once(':').is_some_and(|(m, b)| {
                validate::is_token(m) && !b.is_empty() && b.len() <= 128 && !b.contains(char::is_whitespace)
            }),
        };
        if !ok {
            return Err(IntakeError::BadIdentifier(match kind {
                IdentifierKind::Phone => "phone",
                IdentifierKind::Email => "email",
                IdentifierKind::Bsuid => "bsuid",
                IdentifierKind::MarketplaceBuyer => "marketplace_buyer",
            }));
        }
    }
    let mut subjects: Vec<String> =
        ids.iter().filter_map(|(k, v)| v.as_deref().and_then(|v| hasher.hash(*k, v))).collect();
    if subjects.is_empty() {
        return Err(IntakeError::NoIdentifier);
    }
    subjects.sort();
    subjects.dedup();
    let request = DataRequest {
        id,
        subjects,
        kind: intake.kind.clone(),
        source,
        merchant,
        received_at: now,
        answer_by: retention::deadline(DataClass::DataSubjectRequest, now).unwrap_or(now),
        reply_to: None,
    };
    let new = requests.open(&request).await?;
    let stored = if new {
        request
    } else {
        // The same reference again: the same request, if it asks the same of the same person.
        let existing = requests.get(&request.id).await?.ok_or_else(|| InfraError {
            service: "dynamodb",
            operation: "GetItem(data request)",
            retryable: true,
            source: Some("the request exists but could not be read yet".into()),
        })?;
        let mut theirs = existing.request.subjects.clone();
        theirs.sort();
        if existing.request.kind != request.kind || theirs != request.subjects {
            return Err(IntakeError::ReferenceReused);
        }
        existing.request
    };
    queue.send(&Envelope::new(stored.id.clone(), now, stored.id.clone(), stored.clone()).encode()).await?;
    Ok(Opened { request: stored, new })
}

/// One item found about a person.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub store: Store,
    pub kind: Option<&'static str>,
    pub data_class: Option<DataClass>,
    pub key: ItemKey,
    pub expires_at: Option<i64>,
    pub attributes: Attrs,
}

/// The export document: every live item about the request's subjects.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub schema: &'static str,
    pub request_id: String,
    pub generated_at: DateTime<Utc>,
    pub subjects: Vec<String>,
    pub items: Vec<Found>,
}

/// What an erasure did, per item kind, with the reason for what it kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureResult {
    pub deleted: BTreeMap<String, u64>,
    pub anonymised: BTreeMap<String, u64>,
    pub retained: BTreeMap<String, Retained>,
    pub exports_deleted: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retained {
    pub count: u64,
    pub why: String,
}

impl ErasureResult {
    /// True if the erasure changed nothing (everything left is retained on purpose).
    pub fn changed_nothing(&self) -> bool {
        self.deleted.is_empty() && self.anonymised.is_empty() && self.exports_deleted == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no data-subject request {0}")]
    Unknown(String),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl crate::adapters::sqs_batch::RecordError for ProcessError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "UnknownRequest",
            Self::Infra(_) => "Infrastructure",
        }
    }
}

impl ProcessError {
    pub fn retryable(&self) -> bool {
        matches!(self, ProcessError::Infra(e) if e.retryable)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already answered; nothing done (a redelivery).
    AlreadyDone,
    Exported {
        key: String,
        items: u64,
    },
    Erased(ErasureResult),
    /// A kind that is not automated (correction): left for an operator, with its deadline still alarmed.
    NeedsOperator,
}

pub struct Processor<'a, D, O, R, A> {
    pub data: &'a D,
    pub exports: &'a O,
    pub requests: &'a R,
    pub audit: &'a A,
    /// Who runs it, for the audit log (`data-requests-worker`, `operator`).
    pub actor: &'a str,
}

impl<D: DataStore, O: ObjectStore, R: DataRequests, A: AuditLog> Processor<'_, D, O, R, A> {
    /// Processes request `id`. A completed request is done again only with `again` (an operator re-run).
    pub async fn process(&self, id: &str, now: DateTime<Utc>, again: bool) -> Result<Outcome, ProcessError> {
        let rec = self.requests.get(id).await?.ok_or_else(|| ProcessError::Unknown(id.to_owned()))?;
        if matches!(rec.status.as_str(), "completed" | "closed") && !again {
            return Ok(Outcome::AlreadyDone);
        }
        self.requests.update(id, "running", None, None, now).await?;
        let subject = rec.request.subjects.first().map(String::as_str);
        let (outcome, status, result, export_key) = match rec.request.kind.as_str() {
            // The `DATA` keyword does not say which; a copy of their data is the answer that loses nothing.
            "access" | "export" | "unspecified" => {
                let export = self.export(&rec, now).await?;
                let key = format!("{EXPORT_PREFIX}{id}.json");
                let items = export.items.len() as u64;
                let body = serde_json::to_vec_pretty(&export).unwrap_or_default();
                self.exports.put_private(&key, body, "application/json").await?;
                let result = serde_json::json!({ "items": items, "by_kind": by_kind(&export.items) });
                (Outcome::Exported { key: key.clone(), items }, "completed", result, Some(key))
            }
            "deletion" => {
                let r = self.erase(&rec, now).await?;
                let result = serde_json::to_value(&r).unwrap_or_default();
                (Outcome::Erased(r), "completed", result, None)
            }
            _ => (
                Outcome::NeedsOperator,
                "needs_operator",
                serde_json::json!({ "note": "not automated: an operator answers it" }),
                None,
            ),
        };
        let action = format!("dsr.{}", rec.request.kind);
        let detail = serde_json::json!({ "request": id, "status": status, "result": result });
        // Once per request and outcome: a redelivery after a crash does not audit it twice (an operator's
        // deliberate re-run does).
        let mut entry = NewEntry::new(self.actor, &action, subject, &detail);
        if !again {
            entry = entry.keyed(format!("dsr#{id}#{status}"));
        }
        self.audit.append(entry, now).await?;
        self.requests.update(id, status, Some(&result.to_string()), export_key.as_deref(), now).await?;
        Ok(outcome)
    }

    /// Everything about the request's subjects within its scope ([`Scope`]), from every table,
    /// de-duplicated. What is outside the scope is neither returned nor counted.
    async fn find(&self, rec: &RequestRecord) -> Result<Vec<Found>, InfraError> {
        let scope = rec.request.scope();
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for subject in &rec.request.subjects {
            for store in self.data.stores() {
                for (key, attributes) in self.data.about(store, subject).await? {
                    if !scope.covers(&attributes) || !seen.insert((store, key.clone())) {
                        continue;
                    }
                    let kind = data_inventory::kind_of(store, &key.pk, key.sk.as_deref());
                    out.push(Found {
                        store,
                        kind: kind.map(|k| k.name),
                        data_class: kind.map(|k| k.class),
                        expires_at: attributes.get("expires_at").and_then(|v| v.as_i64()),
                        key,
                        attributes,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The export: only what may still be served (nothing past its deadline). The request's own record
    /// is not data held about the person but the request this document answers, so it is left out.
    pub async fn export(&self, rec: &RequestRecord, now: DateTime<Utc>) -> Result<Export, InfraError> {
        let own = format!("dsr#{}", rec.request.id);
        let items = self
            .find(rec)
            .await?
            .into_iter()
            .filter(|f| f.expires_at.is_none_or(|e| !retention::is_past(e, now)))
            .filter(|f| !(f.store == Store::DataRequests && f.key.pk == own))
            .collect();
        Ok(Export {
            schema: EXPORT_SCHEMA,
            request_id: rec.request.id.clone(),
            generated_at: now,
            subjects: rec.request.subjects.clone(),
            items,
        })
    }

    /// Erases the subjects' data except what the law says to keep.
    pub async fn erase(&self, rec: &RequestRecord, _now: DateTime<Utc>) -> Result<ErasureResult, InfraError> {
        let mut r = ErasureResult::default();
        let mut deletes: BTreeMap<Store, Vec<ItemKey>> = BTreeMap::new();
        for f in self.find(rec).await? {
            let kind = data_inventory::kind_of(f.store, &f.key.pk, f.key.sk.as_deref());
            let name = f.kind.unwrap_or("unclassified").to_owned();
            match kind.map(|k| k.erasure) {
                Some(Erasure::Retain) => {
                    // Earlier exports of this person go, even though the request records stay.
                    if let Some(key) = f.attributes.get("export_key").and_then(|v| v.as_str()) {
                        if !self.exports.list(key).await?.is_empty() {
                            self.exports.delete(key).await?;
                            r.exports_deleted += 1;
                        }
                    }
                    let e = r.retained.entry(name).or_default();
                    e.count += 1;
                    e.why = kind.map(|k| k.why).unwrap_or_default().to_owned();
                }
                Some(Erasure::Anonymise) => {
                    let fields = kind.map_or(&[][..], |k| k.personal);
                    if self.data.remove_fields(f.store, &f.key, fields, None).await? {
                        *r.anonymised.entry(name).or_default() += 1;
                    }
                }
                // Deletion, and anything about the person the inventory does not know: no duty to keep it.
                _ => {
                    deletes.entry(f.store).or_default().push(f.key);
                    *r.deleted.entry(name).or_default() += 1;
                }
            }
        }
        for (store, keys) in deletes {
            self.data.delete(store, &keys).await?;
        }
        Ok(r)
    }
}

/// How long the link sent to a person for their own request works.
pub const ANSWER_LINK_VALID: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Hands the answer of a person's own request (`DATA`) to them, in the WhatsApp conversation they asked
/// from: a link to their export that expires, sent as a reply (their `DATA` message opened the 24-hour
/// window). Records that it was sent. Idempotent: the send request's id is stable (the sender de-duplicates
/// it) and an answered request is not answered again. Returns whether it queued the answer.
pub async fn answer_person(
    requests: &impl DataRequests, exports: &impl ObjectStore, notifications: &impl Queue, id: &str, reply_to: &ReplyTo,
    now: DateTime<Utc>,
) -> Result<bool, InfraError> {
    let Some(rec) = requests.get(id).await? else {
        return Ok(false);
    };
    // Only the person's own request is answered to a number, whatever a queue message says.
    if rec.request.source != crate::ports::SOURCE_PERSON {
        return Ok(false);
    }
    let Some(key) = rec.export_key.as_deref().filter(|_| rec.status == "completed") else {
        return Ok(false);
    };
    if rec.answered_at.is_some() {
        return Ok(false);
    }
    let link = exports.presigned_get(key, ANSWER_LINK_VALID).await?;
    let answer = SendRequest {
        id: format!("dsr-answer-{id}"),
        merchant: reply_to.merchant.clone(),
        phone_number_id: Some(reply_to.phone_number_id.clone()),
        to: reply_to.to.clone(),
        content: Content::Text {
            body: format!(
                "Your data request (reference {id}) is answered. A copy of your data: {link} (the link works for {} hours).",
                ANSWER_LINK_VALID.as_secs() / 3600
            ),
        },
        own_order: false,
        order_open: false,
        // The text carries a link to the person's data: it is sent, never kept in the transcript.
        private: true,
    };
    notifications.send(&Envelope::new(answer.id.clone(), now, id.to_owned(), answer).encode()).await?;
    requests.note_answered(id, now).await?;
    Ok(true)
}

fn by_kind(items: &[Found]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for f in items {
        *m.entry(f.kind.unwrap_or("unclassified")).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_names_one_request_per_asker_and_is_not_shown() {
        let a = request_id("api", "m-1", Some("ann@example.com"));
        assert_eq!(a, request_id("api", "m-1", Some(" ann@example.com ")));
        assert_ne!(a, request_id("api", "m-2", Some("ann@example.com")));
        assert!(a.starts_with("api-") && !a.contains("ann"));
        assert_ne!(request_id("op", "operator", None), request_id("op", "operator", None));
    }

    #[test]
    fn an_intake_never_prints_an_identifier() {
        let i = Intake {
            kind: "deletion".into(),
            phone: Some("+31612345678".into()),
            email: Some("ann@example.com".into()),
            ..Intake::default()
        };
        let shown = format!("{i:?}");
        assert!(!shown.contains("+3161") && !shown.contains("ann@"), "{shown}");
        assert!(shown.contains("deletion"));
    }
}
