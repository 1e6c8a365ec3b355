//! Subject hashes: the keyed hash that stands for a person everywhere an identifier must not go.
//!
//! `subject = hex(HMAC-SHA256(pepper, "<kind>:<normalised identifier>"))`. The pepper is a secret, so the
//! hash of a known phone number or email cannot be computed by whoever reads a log or an index.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The kinds of identifier a person is known by, each with its normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierKind {
    /// Lower-cased, surrounding whitespace removed.
    Email,
    /// E.164: `+` and digits only.
    Phone,
    /// WhatsApp business-scoped user id, as given.
    Bsuid,
    /// Marketplace buyer id, as given, prefixed by the marketplace.
    MarketplaceBuyer,
}

#[derive(Clone)]
pub struct SubjectHasher {
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for SubjectHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectHasher(..)")
    }
}

impl SubjectHasher {
    pub fn new(pepper: &SecretString) -> Self {
        let key = Hmac::new_from_slice(pepper.expose_secret().as_bytes()).expect("HMAC takes any key length");
        Self { key }
    }

    /// The subject hash of an identifier, or `None` if it is empty once normalised.
    pub fn hash(&self, kind: IdentifierKind, identifier: &str) -> Option<String> {
        let normal = normalise(kind, identifier)?;
        let tag = match kind {
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Bsuid => "bsuid",
            IdentifierKind::MarketplaceBuyer => "buyer",
        };
        let mut mac = self.key.clone();
        mac.update(tag.as_bytes());
        mac.update(b":");
        mac.update(normal.as_bytes());
        Some(hex::encode(mac.finalize().into_bytes()))
    }
}

fn normalise(kind: IdentifierKind, id: &str) -> Option<String> {
    let id = id.trim();
    let n = match kind {
        IdentifierKind::Email => id.to_lowercase(),
        IdentifierKind::Phone => {
            let digits: String = id.chars().filter(char::is_ascii_digit).collect();
            if digits.is_empty() {
                return None;
            }
            format!("+{digits}")
        }
        IdentifierKind::Bsuid | IdentifierKind::MarketplaceBuyer => id.to_owned(),
    };
    (!n.is_empty()).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_person_written_differently_has_one_subject() {
        let h = SubjectHasher::new(&SecretString::from("pepper".to_string()));
        assert_eq!(h.hash(IdentifierKind::Email, " Jo@Example.com "), h.hash(IdentifierKind::Email, "jo@example.com"));
        assert_eq!(h.hash(IdentifierKind::Phone, "+31 6 1234 5678"), h.hash(IdentifierKind::Phone, "31612345678"));
        assert_ne!(h.hash(IdentifierKind::Email, "a@b.c"), h.hash(IdentifierKind::Bsuid, "a@b.c"));
        assert_eq!(h.hash(IdentifierKind::Email, "  "), None);
        let other = SubjectHasher::new(&SecretString::from("other".to_string()));
        assert_ne!(h.hash(IdentifierKind::Email, "a@b.c"), other.hash(IdentifierKind::Email, "a@b.c"));
    }
}
