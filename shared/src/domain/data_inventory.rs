//! What the suite stores, item kind by item kind: which table, how its key looks, its data class, which
//! attributes are personal, and what an erasure request does to it and why.
//!
//! This is the one place the retention sweep, exports and erasures learn what an item is. Together with
//! [`super::retention::POLICY`] it is the declarative privacy model of the suite; a test checks that every
//! kind with personal data has a class with a deadline.

use serde::{Deserialize, Serialize};

use super::retention::DataClass;

/// A table, by the boundary it holds (names come from configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    Payments,
    Messaging,
    DataRequests,
    Orders,
}

impl Store {
    pub const ALL: [Store; 4] = [Store::Payments, Store::Messaging, Store::DataRequests, Store::Orders];

    pub fn name(self) -> &'static str {
        match self {
            Store::Payments => "payments",
            Store::Messaging => "messaging",
            Store::DataRequests => "data_requests",
            Store::Orders => "orders",
        }
    }

    /// The table's partition key attribute (and sort key, if it has one).
    pub fn key_names(self) -> (&'static str, Option<&'static str>) {
        match self {
            Store::Payments => ("payment_key", None),
            _ => ("pk", Some("sk")),
        }
    }
}

/// What an erasure request does to an item of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Erasure {
    Delete,
    /// Remove the kind's personal attributes, keep the rest (a legal duty to keep it).
    Anonymise,
    /// Keep the item as it is until its own deadline (a legal duty to keep it as evidence).
    Retain,
}

#[derive(Debug, Clone, Copy)]
pub struct ItemKind {
    pub name: &'static str,
    pub store: Store,
    pub pk_prefix: &'static str,
    /// Prefix of the sort key (`""` matches any, and a table without one).
    pub sk_prefix: &'static str,
    pub class: DataClass,
    /// Attributes that are personal data (or link the item to a person), removed by anonymisation.
    pub personal: &'static [&'static str],
    pub erasure: Erasure,
    /// Why, for the erasure result and the audit log.
    pub why: &'static str,
}

/// What anonymising an order removes: its link to the buyer (and, from items written before the buyer was
/// held apart, the buyer's fields).
const ORDER_PERSONAL: &[&str] =
    &["subject", "buyer_name", "buyer_email", "buyer_phone", "shipping_address", "buyer_id"];

/// The buyer's personal data of one order, its own item (`buyer#<marketplace>#<order id>`).
const BUYER_PERSONAL: &[&str] = &["subject", "buyer"];

/// Every kind of item, most specific first within a store.
pub const ITEMS: &[ItemKind] = &[
    ItemKind {
        name: "payment",
        store: Store::Payments,
        pk_prefix: "",
        sk_prefix: "",
        class: DataClass::InvoiceTaxRecord,
        personal: &["subject", "card"],
        erasure: Erasure::Anonymise,
        why: "invoicing and tax records are kept 6 years (001); the link to the person and the card are removed",
    },
    ItemKind {
        name: "conversation",
        store: Store::Messaging,
        pk_prefix: "conv#",
        sk_prefix: "meta",
        class: DataClass::WhatsAppTranscript,
        personal: &["subject"],
        erasure: Erasure::Delete,
        why: "transcripts are deleted on request",
    },
    ItemKind {
        name: "message",
        store: Store::Messaging,
        pk_prefix: "conv#",
        sk_prefix: "msg#",
        class: DataClass::WhatsAppTranscript,
        personal: &["subject", "text"],
        erasure: Erasure::Delete,
        why: "transcripts are deleted on request",
    },
    ItemKind {
        name: "send_refusal",
        store: Store::Messaging,
        pk_prefix: "conv#",
        sk_prefix: "refusal#",
        class: DataClass::WhatsAppTranscript,
        personal: &["subject"],
        erasure: Erasure::Delete,
        why: "part of the conversation",
    },
    ItemKind {
        name: "receipt",
        store: Store::Messaging,
        pk_prefix: "wamid#",
        sk_prefix: "receipt",
        class: DataClass::WhatsAppTranscript,
        personal: &["subject"],
        erasure: Erasure::Delete,
        why: "part of the conversation",
    },
    ItemKind {
        name: "consent_entry",
        store: Store::Messaging,
        pk_prefix: "subject#",
        sk_prefix: "consent#",
        class: DataClass::ConsentLedgerEntry,
        personal: &["subject"],
        erasure: Erasure::Retain,
        why: "consent evidence is kept for the life of the consent plus 24 months after withdrawal (001)",
    },
    ItemKind {
        name: "consent_state",
        store: Store::Messaging,
        pk_prefix: "subject#",
        sk_prefix: "consent-state",
        class: DataClass::ConsentLedgerEntry,
        personal: &["subject"],
        erasure: Erasure::Retain,
        why: "an opt-out must keep being honoured; kept with its evidence (001)",
    },
    ItemKind {
        name: "merchant_contract",
        store: Store::Messaging,
        pk_prefix: "merchant#",
        sk_prefix: "contract",
        class: DataClass::WhatsAppOrderMetadata,
        personal: &[],
        erasure: Erasure::Retain,
        why: "no personal data",
    },
    ItemKind {
        name: "data_request",
        store: Store::DataRequests,
        pk_prefix: "dsr#",
        sk_prefix: "request",
        class: DataClass::DataSubjectRequestRecord,
        personal: &["subject", "subjects"],
        erasure: Erasure::Retain,
        why: "evidence that the request was received and answered",
    },
    ItemKind {
        name: "open_request_marker",
        store: Store::DataRequests,
        pk_prefix: "dsr-open",
        sk_prefix: "",
        class: DataClass::DataSubjectRequest,
        personal: &[],
        erasure: Erasure::Retain,
        why: "no personal data",
    },
    ItemKind {
        name: "audit_key",
        store: Store::DataRequests,
        pk_prefix: "audit-key#",
        sk_prefix: "",
        class: DataClass::IdempotencyRecord,
        personal: &[],
        erasure: Erasure::Retain,
        why: "no personal data: marks an audited event so it is audited once",
    },
    ItemKind {
        name: "audit_entry",
        store: Store::DataRequests,
        pk_prefix: "audit",
        sk_prefix: "",
        class: DataClass::AuditLogEntry,
        personal: &[],
        erasure: Erasure::Retain,
        why: "the audit log references people only by keyed hash",
    },
    ItemKind {
        name: "order_buyer",
        store: Store::Orders,
        pk_prefix: "merchant#",
        sk_prefix: "buyer#",
        class: DataClass::MarketplaceOrderPii,
        personal: BUYER_PERSONAL,
        erasure: Erasure::Delete,
        why: "the buyer's data is there to ship the order; it is deleted on request and 30 days after shipment",
    },
    ItemKind {
        name: "amazon_order",
        store: Store::Orders,
        pk_prefix: "merchant#",
        sk_prefix: "order#amazon#",
        class: DataClass::AmazonOrderData,
        personal: ORDER_PERSONAL,
        erasure: Erasure::Anonymise,
        why: "order amounts and numbers are the merchant's tax records; buyer data is removed",
    },
    ItemKind {
        name: "marketplace_order",
        store: Store::Orders,
        pk_prefix: "merchant#",
        sk_prefix: "order#",
        class: DataClass::MarketplaceOrderData,
        personal: ORDER_PERSONAL,
        erasure: Erasure::Anonymise,
        why: "order amounts and numbers are the merchant's tax records; buyer data is removed",
    },
];

/// The kind of the item with key `pk` / `sk` in `store`, if the suite knows it.
pub fn kind_of(store: Store, pk: &str, sk: Option<&str>) -> Option<&'static ItemKind> {
    let sk = sk.unwrap_or("");
    ITEMS.iter().find(|k| k.store == store && pk.starts_with(k.pk_prefix) && sk.starts_with(k.sk_prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::retention::{rule, Action};

    #[test]
    fn items_are_classified_by_their_keys() {
        let k = |s, pk, sk| kind_of(s, pk, sk).map(|k| k.name);
        assert_eq!(k(Store::Payments, "pi_123", None), Some("payment"));
        assert_eq!(k(Store::Messaging, "conv#m#ab", Some("meta")), Some("conversation"));
        assert_eq!(k(Store::Messaging, "conv#m#ab", Some("msg#2026#wamid")), Some("message"));
        assert_eq!(k(Store::Messaging, "subject#ab", Some("consent-state")), Some("consent_state"));
        assert_eq!(k(Store::Orders, "merchant#m", Some("order#amazon#1")), Some("amazon_order"));
        assert_eq!(k(Store::Orders, "merchant#m", Some("order#bol#1")), Some("marketplace_order"));
        assert_eq!(k(Store::Orders, "merchant#m", Some("buyer#ebay#1")), Some("order_buyer"));
        assert_eq!(k(Store::Messaging, "template#m#t", Some("category")), None);
        assert_eq!(k(Store::DataRequests, "audit", Some("000000000001")), Some("audit_entry"));
        assert_eq!(k(Store::DataRequests, "audit-key#consent#w#s", Some("-")), Some("audit_key"));
    }

    #[test]
    fn every_kind_with_personal_data_has_a_deadline_and_only_legal_holds_are_kept() {
        for kind in ITEMS {
            let r = rule(kind.class);
            if !kind.personal.is_empty() {
                assert_ne!(r.action, Action::AnswerBy, "{}: personal data needs a deletion deadline", kind.name);
            }
            if kind.erasure != Erasure::Delete {
                assert!(!kind.why.is_empty(), "{}: a kept item says why", kind.name);
            }
            if kind.erasure == Erasure::Anonymise {
                assert!(kind.personal.contains(&"subject"), "{}: anonymising unlinks the person", kind.name);
            }
        }
    }
}
