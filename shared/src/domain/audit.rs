//! The audit log's entries and their hash chain.
//!
//! Each entry names who did what (`actor`, `action`), to whom only by keyed subject hash (`subject`), and
//! carries a JSON `detail` of counts and ids, never personal data. Entries are numbered from 1 and each one
//! stores the SHA-256 of its own content including the previous entry's hash, so changing, removing or
//! re-ordering any entry breaks every link after it. Entries age out at the front (their own retention
//! window), so a chain is checked from its oldest surviving entry: that entry's `prev` is taken on trust
//! unless it is entry 1, whose `prev` must be [`GENESIS`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of entry 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a writer supplies; the log numbers, dates, links and hashes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntry {
    pub actor: String,
    pub action: String,
    /// Keyed subject hash, never an identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Counts, ids, reasons: serialised JSON, hashed exactly as stored.
    pub detail: String,
    /// What makes the entry unique (e.g. the event it records): appending it again is a no-op, so
    /// redelivered messages are audited once. Not part of the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl NewEntry {
    pub fn new(actor: &str, action: &str, subject: Option<&str>, detail: &serde_json::Value) -> Self {
        Self {
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject: subject.map(str::to_owned),
            detail: detail.to_string(),
            key: None,
        }
    }

    /// The same entry, appended at most once per `key`.
    pub fn keyed(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub detail: String,
    pub prev: String,
    pub hash: String,
}

impl Entry {
    /// Entry `seq`, linked after an entry whose hash is `prev`.
    pub fn chain(new: NewEntry, seq: u64, at: DateTime<Utc>, prev: &str) -> Self {
        let mut e = Self {
            seq,
            at,
            actor: new.actor,
            action: new.action,
            subject: new.subject,
            detail: new.detail,
            prev: prev.to_owned(),
            hash: String::new(),
        };
        e.hash = e.digest();
        e
    }

    /// The hash of the entry's content: length-prefixed fields, so no two different entries encode alike.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let at = self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let seq = self.seq.to_string();
        let fields: [&str; 7] =
            [&self.prev, &seq, &at, &self.actor, &self.action, self.subject.as_deref().unwrap_or(""), &self.detail];
        for f in fields {
            h.update((f.len() as u64).to_be_bytes());
            h.update(f.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// The result of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub entries: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The first entry that does not hold, and why.
    pub broken: Option<(u64, &'static str)>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Checks entries given in `seq` order, and that the newest is `head` (the log's record of its last
/// entry, if it keeps one), so a removed tail is caught too.
pub fn verify(entries: &[Entry], head: Option<(u64, &str)>) -> Verification {
    let mut v = Verification {
        entries: entries.len() as u64,
        first_seq: entries.first().map(|e| e.seq),
        last_seq: entries.last().map(|e| e.seq),
        broken: None,
    };
    let mut prev: Option<&Entry> = None;
    for e in entries {
        let problem = if e.digest() != e.hash {
            Some("content does not match its hash")
        } else if let Some(p) = prev {
            if e.seq != p.seq + 1 {
                Some("an entry is missing before this one")
            } else if e.prev != p.hash {
                Some("does not link to the entry before it")
            } else {
                None
            }
        } else if e.seq == 1 && e.prev != GENESIS {
            Some("the first entry does not start the chain")
        } else {
            None
        };
        if let Some(why) = problem {
            v.broken = Some((e.seq, why));
            return v;
        }
        prev = Some(e);
    }
    if let Some((seq, hash)) = head {
        match prev {
            Some(last) if last.seq == seq && last.hash == hash => {}
            Some(last) if last.seq < seq => v.broken = Some((last.seq + 1, "entries after this point are missing")),
            Some(last) => v.broken = Some((last.seq, "the newest entry is not the one the log recorded")),
            None if seq > 0 => v.broken = Some((seq, "the log records entries but none are left")),
            None => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chain(n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 1..=n {
            let prev = out.last().map_or(GENESIS.to_owned(), |e| e.hash.clone());
            let at = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, i as u32).unwrap();
            let detail = serde_json::json!({ "deleted": i });
            out.push(Entry::chain(NewEntry::new("sweep", "sweep.run", None, &detail), i, at, &prev));
        }
        out
    }

    #[test]
    fn an_untouched_chain_verifies_up_to_its_head() {
        let c = chain(5);
        let head = (5, c[4].hash.as_str());
        let v = verify(&c, Some(head));
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.entries, v.first_seq, v.last_seq), (5, Some(1), Some(5)));
    }

    #[test]
    fn any_edit_removal_or_reorder_is_found_at_the_entry_it_touched() {
        let c = chain(5);
        let head = Some((5, c[4].hash.as_str()));

        let mut edited = c.clone();
        edited[2].detail = r#"{"deleted":0}"#.into();
        assert_eq!(verify(&edited, head).broken, Some((3, "content does not match its hash")));

        let mut rehashed = c.clone();
        rehashed[2].detail = r#"{"deleted":0}"#.into();
        rehashed[2].hash = rehashed[2].digest();
        assert_eq!(verify(&rehashed, head).broken, Some((4, "does not link to the entry before it")));

        let mut removed = c.clone();
        removed.remove(2);
        assert_eq!(verify(&removed, head).broken, Some((4, "an entry is missing before this one")));

        let tail_cut = &c[..4];
        assert_eq!(verify(tail_cut, head).broken, Some((5, "entries after this point are missing")));
    }

    #[test]
    fn a_chain_whose_oldest_entries_aged_out_still_verifies() {
        let c = chain(6);
        let v = verify(&c[3..], Some((6, c[5].hash.as_str())));
        assert!(v.ok());
        assert_eq!(v.first_seq, Some(4));
    }

    #[test]
    fn the_subject_is_part_of_the_hash() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let d = serde_json::json!({});
        let a = Entry::chain(NewEntry::new("op", "dsr.erasure", Some("ab"), &d), 1, at, GENESIS);
        let b = Entry::chain(NewEntry::new("op", "dsr.erasure", Some("ac"), &d), 1, at, GENESIS);
        assert_ne!(a.hash, b.hash);
    }
}
