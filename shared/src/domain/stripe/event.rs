//! The few fields of a Stripe event the suite needs, parsed tolerantly.
//!
//! Only what order status needs is read: ids, type, API version, amounts, currency, status and card
//! brand/last4. Names, emails, addresses and metadata other than the order reference are never copied
//! out; the customer's email is only read to compute its keyed hash (the data-subject index). Unknown
//! fields, objects in place of ids (expanded fields) and missing optional fields are all accepted, so both
//! `2020-08-27` shapes and current API versions parse.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::payment::{DisputeOutcome, PaymentFact};

/// Why a verified body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a JSON Stripe event")]
    NotJson,
    #[error("event has no id")]
    MissingId,
}

impl ParseError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotJson => "invalid_json",
            Self::MissingId => "missing_event_id",
        }
    }
}

/// The envelope fields of any Stripe event, with the object's fields we may use.
#[derive(Debug, Deserialize)]
pub struct StripeEvent {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub created: i64,
    /// The connected account an event of a Connect platform is about.
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub data: Option<EventData>,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    #[serde(default)]
    pub object: Option<EventObject>,
}

/// A field that is an id, or the expanded object carrying that id.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IdOrObject {
    Id(String),
    Object { id: String },
}

impl IdOrObject {
    fn id(&self) -> &str {
        match self {
            Self::Id(id) | Self::Object { id } => id,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct EventObject {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<IdOrObject>,
    #[serde(default)]
    pub charge: Option<IdOrObject>,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub amount_total: Option<i64>,
    #[serde(default)]
    pub amount_refunded: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    pub payment_method_details: Option<PaymentMethodDetails>,
    /// PaymentIntent in API versions before 2022-11-15: the charges list.
    #[serde(default)]
    pub charges: Option<ChargeList>,
    // Read only to compute the subject hash; never stored or logged.
    #[serde(default)]
    pub customer_details: Option<CustomerDetails>,
    #[serde(default)]
    pub customer_email: Option<String>,
    #[serde(default)]
    pub receipt_email: Option<String>,
    #[serde(default)]
    pub billing_details: Option<CustomerDetails>,
}

#[derive(Debug, Deserialize)]
pub struct PaymentMethodDetails {
    #[serde(default)]
    pub card: Option<CardDetails>,
}

#[derive(Debug, Deserialize)]
pub struct CardDetails {
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub last4: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChargeList {
    #[serde(default)]
    pub data: Vec<EventObject>,
}

#[derive(Debug, Deserialize)]
pub struct CustomerDetails {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// Card brand and last four digits: all a card ever contributes to an order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CardSummary {
    pub brand: String,
    pub last4: String,
}

/// A handled payment event reduced to what the payments worker applies to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    pub event_id: String,
    pub event_type: String,
    pub api_version: Option<String>,
    /// Event `created`, epoch seconds.
    pub created: i64,
    /// The order's payment key: the PaymentIntent id, or the charge id when the event names no intent.
    pub payment_key: String,
    /// The merchant's order reference (`metadata.order_id` or Checkout's `client_reference_id`).
    pub order_ref: Option<String>,
    pub fact: PaymentFact,
    /// Amount of the payment in the currency's minor unit (not of a refund or dispute).
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub card: Option<CardSummary>,
    /// Keyed hash of the customer's email, filled in by the ingest use case; never the email itself.
    #[serde(default)]
    pub subject: Option<String>,
    /// The merchant (`metadata.merchant_id`, else the connected `account`): whom the record is held for.
    #[serde(default)]
    pub merchant: Option<String>,
    /// The customer's phone as Checkout collected it, for order notifications over WhatsApp. Travels in
    /// the (encrypted) queue body only: never stored on the order, never logged.
    #[serde(default)]
    pub notify_to: Option<String>,
    /// The connected account the event is about (Stripe Connect), if any: its metadata is that account's
    /// to set, so it is not the storefront's word on which merchant it is for.
    #[serde(default)]
    pub connected_account: Option<String>,
}

/// What a verified body turned out to be.
#[derive(Debug)]
pub enum Classified {
    /// A handled type with what the worker needs, and the customer's email (for hashing only).
    Handled { event: Box<PaymentEvent>, email: Option<String> },
    /// A verified event of a type the suite does not act on: acknowledged, not queued.
    Ignored { event_id: String, event_type: String, api_version: Option<String> },
    /// A handled type that names neither a PaymentIntent nor a charge: nothing to apply it to.
    Unroutable { event_id: String, event_type: String },
}

/// Parses a verified body. Call only after the signature has been verified.
pub fn parse(body: &[u8]) -> Result<Classified, ParseError> {
    let ev: StripeEvent = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
    let event_id = ev.id.filter(|id| !id.is_empty()).ok_or(ParseError::MissingId)?;
    let obj = ev.data.and_then(|d| d.object).unwrap_or_default();
    let Some(fact) = fact_for(&ev.kind, &obj) else {
        return Ok(Classified::Ignored { event_id, event_type: ev.kind, api_version: ev.api_version });
    };
    let is_intent = obj.object.as_deref() == Some("payment_intent");
    let is_charge = obj.object.as_deref() == Some("charge");
    let payment_key = if is_intent { obj.id.clone() } else { obj.payment_intent.as_ref().map(|p| p.id().to_owned()) }
        .or_else(|| if is_charge { obj.id.clone() } else { obj.charge.as_ref().map(|c| c.id().to_owned()) });
    let Some(payment_key) = payment_key.filter(|k| !k.is_empty()) else {
        return Ok(Classified::Unroutable { event_id, event_type: ev.kind });
    };
    let order_ref = obj
        .metadata
        .as_ref()
        .and_then(|m| m.get("order_id"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .or_else(|| obj.client_reference_id.clone());
    let amount = match obj.object.as_deref() {
        Some("checkout.session") => obj.amount_total,
        Some("payment_intent" | "charge") => obj.amount,
        _ => None,
    };
    let card = card_of(&obj);
    let email = obj
        .customer_details
        .as_ref()
        .and_then(|c| c.email.clone())
        .or_else(|| obj.customer_email.clone())
        .or_else(|| obj.billing_details.as_ref().and_then(|b| b.email.clone()))
        .or_else(|| obj.receipt_email.clone());
    let metadata_str =
        |k: &str| obj.metadata.as_ref().and_then(|m| m.get(k)).and_then(|v| v.as_str().map(str::to_owned));
    // The merchant the payment is held for (the controller): the storefront's `metadata.merchant_id`,
    // else the Connect account the event is about. Unknown stays unknown: such a record is never served
    // to a merchant's data request.
    let merchant =
        metadata_str("merchant_id").filter(|m| !m.is_empty()).or_else(|| ev.account.clone().filter(|a| !a.is_empty()));
    let connected_account = ev.account.clone().filter(|a| !a.is_empty());
    let notify_to = obj
        .customer_details
        .as_ref()
        .and_then(|c| c.phone.clone())
        .or_else(|| obj.billing_details.as_ref().and_then(|b| b.phone.clone()))
        .filter(|p| !p.trim().is_empty());
    Ok(Classified::Handled {
        event: Box::new(PaymentEvent {
            event_id,
            event_type: ev.kind,
            api_version: ev.api_version,
            created: ev.created,
            payment_key,
            order_ref,
            fact,
            amount,
            currency: obj.currency.map(|c| c.to_ascii_lowercase()),
            card,
            subject: None,
            merchant,
            notify_to,
            connected_account,
        }),
        email,
    })
}

/// The fact a handled event type establishes; `None` for types the suite does not act on.
fn fact_for(kind: &str, obj: &EventObject) -> Option<PaymentFact> {
    Some(match kind {
        "checkout.session.completed" => {
            PaymentFact::CheckoutCompleted { paid: obj.payment_status.as_deref() == Some("paid") }
        }
        "checkout.session.async_payment_succeeded" | "payment_intent.succeeded" => PaymentFact::Succeeded,
        "checkout.session.async_payment_failed" | "payment_intent.payment_failed" => PaymentFact::Failed,
        "checkout.session.expired" => PaymentFact::Expired,
        "payment_intent.processing" => PaymentFact::Processing,
        "payment_intent.canceled" => PaymentFact::Canceled,
        "charge.refunded" => PaymentFact::Refunded { amount_refunded: obj.amount_refunded.or(obj.amount).unwrap_or(0) },
        "charge.dispute.created" => PaymentFact::DisputeOpened,
        "charge.dispute.closed" => PaymentFact::DisputeClosed {
            outcome: match obj.status.as_deref() {
                Some("lost") => DisputeOutcome::Lost,
                Some("won") => DisputeOutcome::Won,
                _ => DisputeOutcome::WarningClosed,
            },
        },
        _ => return None,
    })
}

fn card_of(obj: &EventObject) -> Option<CardSummary> {
    let from = |o: &EventObject| {
        let card = o.payment_method_details.as_ref()?.card.as_ref()?;
        let last4 = card.last4.clone().filter(|l| l.len() == 4 && l.bytes().all(|b| b.is_ascii_digit()))?;
        Some(CardSummary { brand: card.brand.clone().unwrap_or_default(), last4 })
    };
    from(obj).or_else(|| obj.charges.as_ref()?.data.iter().find_map(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_type_is_ignored_not_rejected() {
        let c = parse(br#"{"id":"evt_1","type":"customer.created","data":{"object":{}}}"#).unwrap();
        assert!(matches!(c, Classified::Ignored { .. }));
    }

    #[test]
    fn a_body_without_an_id_or_not_json_is_refused() {
        assert_eq!(parse(b"nope").unwrap_err(), ParseError::NotJson);
        assert_eq!(parse(br#"{"type":"x"}"#).unwrap_err(), ParseError::MissingId);
        assert_eq!(parse(b"\"str\"").unwrap_err(), ParseError::NotJson);
    }

    #[test]
    fn an_expanded_payment_intent_is_read_by_its_id() {
        let body = br#"{"id":"evt_1","type":"charge.refunded","created":5,"data":{"object":{
            "id":"ch_1","object":"charge","amount":100,"amount_refunded":40,"currency":"EUR",
            "payment_intent":{"id":"pi_9","object":"payment_intent"}}}}"#;
        let Classified::Handled { event, .. } = parse(body).unwrap() else { panic!() };
        assert_eq!(event.payment_key, "pi_9");
        assert_eq!(event.fact, PaymentFact::Refunded { amount_refunded: 40 });
        assert_eq!(event.currency.as_deref(), Some("eur"));
    }

    #[test]
    fn the_merchant_comes_from_metadata_else_the_connected_account_else_stays_unknown() {
        let of = |body: &[u8]| match parse(body).unwrap() {
            Classified::Handled { event, .. } => event.merchant,
            other => panic!("{other:?}"),
        };
        let obj = r#""object":{"id":"pi_1","object":"payment_intent","amount":100"#;
        let meta = format!(
            r#"{{"id":"evt_1","type":"payment_intent.succeeded","account":"acct_9","data":{{{obj},"metadata":{{"merchant_id":"m-1"}}}}}}}}"#
        );
        assert_eq!(of(meta.as_bytes()).as_deref(), Some("m-1"));
        let connect =
            format!(r#"{{"id":"evt_1","type":"payment_intent.succeeded","account":"acct_9","data":{{{obj}}}}}}}"#);
        assert_eq!(of(connect.as_bytes()).as_deref(), Some("acct_9"));
        let none = format!(r#"{{"id":"evt_1","type":"payment_intent.succeeded","data":{{{obj}}}}}}}"#);
        assert_eq!(of(none.as_bytes()), None);
    }
}
