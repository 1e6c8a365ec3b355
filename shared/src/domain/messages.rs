//! Every message the functions pass through SQS, in one place: its envelope `type`, its `version` and its
//! payload. A consumer decodes with `Envelope::<T>::decode`, which refuses any other type or version, so
//! changing a payload incompatibly means a new version here (and a consumer that reads both for a while).
//!
//! | type | version | payload | producer -> consumer |
//! | --- | --- | --- | --- |
//! | `stripe.payment_event` | 1 | [`PaymentEvent`] | Stripe webhook (via the inbox) -> payments worker |
//! | `whatsapp.inbound_message` | 1 | [`InboundMessage`] | WhatsApp webhook (via the inbox) -> messaging worker |
//! | `whatsapp.receipt` | 1 | [`Receipt`] | WhatsApp webhook (via the inbox) -> messaging worker |
//! | `consent.opt_in` | 1 | [`OptIn`] | storefront -> messaging worker |
//! | `notification.send_request` | 1 | [`SendRequest`] | payments worker, messaging worker, data-requests worker -> notifications sender |
//! | `dsr.requested` | 1 | [`DataRequest`] | messaging worker, merchant API, `nexctl` -> data-requests worker |
//! | `sweep.continue` | 1 | [`Continue`] | retention sweep -> itself |
//! | `orders.poll` | 1 | [`PollJob`] | marketplace scheduler -> marketplace poller |
//!
//! Three bodies are references, not envelopes, written by the template's EventBridge pipes: [`InboxRef`]
//! (`{"inbox": key}`, a webhook's stored delivery), [`LedgerRef`] (`{"ledger": {pk, sk}}`, a consent
//! ledger entry for the audit appender) and [`OrderEventRef`] (`{"order_event": {pk, sk}}`, a new order
//! version for the order forwarder).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::envelope::Message;
pub use super::stripe::event::PaymentEvent;

impl Message for crate::domain::stripe::event::PaymentEvent {
    const KIND: &'static str = "stripe.payment_event";
    const VERSION: u32 = 1;
}

/// An inbound message for the messaging worker (transcript, conversation window, data requests).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InboundMessage {
    pub merchant: String,
    pub phone_number_id: String,
    pub wamid: String,
    /// Subject hashes of the sender: by phone and/or by BSUID.
    pub subjects: Vec<String>,
    /// The sender's identifiers, needed to reply; personal data, so never logged.
    pub phone: Option<String>,
    pub bsuid: Option<String>,
    pub kind: String,
    pub text: Option<String>,
    pub sent_at: DateTime<Utc>,
    pub keyword: Option<String>,
}

impl Message for InboundMessage {
    const KIND: &'static str = "whatsapp.inbound_message";
    const VERSION: u32 = 1;
}

/// A delivery receipt for the messaging worker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub merchant: String,
    pub wamid: String,
    pub status: String,
    pub error_code: Option<i64>,
    pub at: DateTime<Utc>,
    pub subjects: Vec<String>,
    /// Our request's id, when the message was ours (Meta echoes it): confirms an unconfirmed send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
}

impl Message for Receipt {
    const KIND: &'static str = "whatsapp.receipt";
    const VERSION: u32 = 1;
}

/// An opt-in as a merchant's system or the storefront reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptIn {
    /// The caller's id for this opt-in (1-64 of `A-Za-z0-9._:-`): recording it again, with or without
    /// `at`, changes nothing.
    pub id: String,
    /// Set by the storefront message; the HTTP route takes the merchant from the caller's key instead.
    #[serde(default)]
    pub merchant: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub bsuid: Option<String>,
    /// Where the person opted in, a short code (lower-case letters, digits, `_`; at most 40):
    /// `checkout_page`, `account_settings`, ...
    pub source: String,
    /// When (not before 2000, not in the future); defaults to now.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

impl Message for OptIn {
    const KIND: &'static str = "consent.opt_in";
    const VERSION: u32 = 1;
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// A pre-approved template; `components` are Cloud API template components (parameters).
    Template {
        name: String,
        language: String,
        #[serde(default)]
        components: serde_json::Value,
    },
    /// Free-form text: only inside the 24-hour customer-service window.
    Text { body: String },
}

/// A request to message a person on behalf of a merchant (order events and merchants' send requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// Stable across redeliveries: the idempotency key.
    pub id: String,
    pub merchant: String,
    /// The business number to send from; `None`: the merchant's registered number.
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// E.164 phone number of the person.
    pub to: String,
    pub content: Content,
    /// About the person's own order.
    #[serde(default)]
    pub own_order: bool,
    /// That order is still open.
    #[serde(default)]
    pub order_open: bool,
    /// The text is a credential (a link to the person's own data): sent, and kept in the transcript as
    /// that kind of message without its text.
    #[serde(default)]
    pub private: bool,
}

impl Message for SendRequest {
    const KIND: &'static str = "notification.send_request";
    const VERSION: u32 = 1;
}

/// A data-subject request as opened (by the WhatsApp `DATA` keyword, an operator or a merchant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRequest {
    /// Stable for the intake that opened it (e.g. derived from the wamid), so reopening is idempotent.
    pub id: String,
    pub subjects: Vec<String>,
    /// `access`, `export`, `deletion`, `correction`, or `unspecified` until the person says which.
    pub kind: String,
    pub source: String,
    pub merchant: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The answer is due by then (30 days).
    pub answer_by: DateTime<Utc>,
    /// Where the person's own request (`DATA`) is answered. Travels in the queue message only (the
    /// number is personal data): never stored with the request record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
}

impl Message for DataRequest {
    const KIND: &'static str = "dsr.requested";
    const VERSION: u32 = 1;
}

/// The WhatsApp conversation a person's own request came from, where its answer goes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub merchant: String,
    pub phone_number_id: String,
    /// E.164.
    pub to: String,
}

/// Says where, never the number.
impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo")
            .field("merchant", &self.merchant)
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

/// Asks the sweep to carry on from its checkpoint (the sweep queue's message).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Continue {
    pub started_at: DateTime<Utc>,
}

impl Message for Continue {
    const KIND: &'static str = "sweep.continue";
    const VERSION: u32 = 1;
}

/// Polls one marketplace connection (the poll queue's message). No personal data: ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollJob {
    pub connection: String,
}

impl Message for PollJob {
    const KIND: &'static str = "orders.poll";
    const VERSION: u32 = 1;
}

/// A new order version's event item, as the pipe queues it: `{"order_event": {"pk": .., "sk": ..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEventRef {
    pub pk: String,
    pub sk: String,
}

#[derive(Deserialize)]
struct QueuedOrderEvent {
    order_event: OrderEventRef,
}

impl OrderEventRef {
    /// Reads a queued reference; `None` for anything else.
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str::<QueuedOrderEvent>(body)
            .ok()
            .map(|q| q.order_event)
            .filter(|r| r.pk.starts_with("merchant#") && r.sk.starts_with("event#"))
    }
}

#[derive(serde::Deserialize)]
pub struct InboxRef {
    pub inbox: String,
}

/// A ledger entry's key, as the pipe queues it: `{"ledger": {"pk": .., "sk": ..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRef {
    pub pk: String,
    pub sk: String,
}

#[derive(Deserialize)]
struct Queued {
    ledger: LedgerRef,
}

impl LedgerRef {
    /// Reads a queued reference; `None` for anything else.
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str::<Queued>(body)
            .ok()
            .map(|q| q.ledger)
            .filter(|r| r.pk.starts_with("subject#") && r.sk.starts_with("consent#"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table at the top of this file is what a reader scans: it must name every kind as its code does.
    #[test]
    fn the_table_names_every_kind_and_version() {
        let table = include_str!("messages.rs");
        for (kind, version) in [
            (PaymentEvent::KIND, PaymentEvent::VERSION),
            (InboundMessage::KIND, InboundMessage::VERSION),
            (Receipt::KIND, Receipt::VERSION),
            (OptIn::KIND, OptIn::VERSION),
            (SendRequest::KIND, SendRequest::VERSION),
            (DataRequest::KIND, DataRequest::VERSION),
            (Continue::KIND, Continue::VERSION),
            (PollJob::KIND, PollJob::VERSION),
        ] {
            assert!(table.contains(&format!("//! | `{kind}` | {version} |")), "{kind} v{version} is in the table");
        }
    }
}
