//! One order model for the three marketplaces, and the normalisers that build it from each platform's
//! own order (Amazon Orders API 2026-01-01, eBay Sell Fulfillment v1, bol.com Retailer API v10).
//!
//! The buyer's personal data (name, address, email, phone, eBay username) is never part of [`Order`]: it
//! is a [`Buyer`] beside it, stored as its own item with its own (earlier) deadline, so that it can be
//! deleted on its own while the order's numbers are kept. Amounts are decimals with their currency.
//!
//! Every normaliser is total: a field the platform leaves out is `None`, an unknown status is kept as the
//! platform said it (`platform_status`) and mapped to the nearest of [`Status`], and an order without an
//! id or a time is refused with [`Invalid`], never a panic.

pub mod amazon;
pub mod bol;
pub mod connection;
pub mod ebay;
pub mod ebay_deletion;

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A marketplace the suite polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Marketplace {
    Amazon,
    Ebay,
    Bol,
}

impl Marketplace {
    pub const ALL: [Marketplace; 3] = [Marketplace::Amazon, Marketplace::Ebay, Marketplace::Bol];

    pub fn as_str(self) -> &'static str {
        match self {
            Marketplace::Amazon => "amazon",
            Marketplace::Ebay => "ebay",
            Marketplace::Bol => "bol",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for Marketplace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one status set every marketplace's statuses map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Placed, not yet ready to ship (payment pending, availability pending).
    Pending,
    /// Ready to ship, nothing shipped yet.
    Open,
    PartiallyShipped,
    Shipped,
    /// Cancelled, or the marketplace says it cannot be fulfilled.
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Open => "open",
            Status::PartiallyShipped => "partially_shipped",
            Status::Shipped => "shipped",
            Status::Cancelled => "cancelled",
        }
    }
}

/// An amount of money: a decimal (never a float) and its ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
}

impl Money {
    /// From a decimal string as the platforms send them (`"154.99"`); `None` if it is not one.
    pub fn parse(amount: &str, currency: &str) -> Option<Money> {
        let amount = amount.trim().parse::<Decimal>().ok()?;
        let currency = currency.trim();
        let ok = currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase());
        ok.then(|| Money { amount, currency: currency.to_owned() })
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub line_id: String,
    /// The merchant's own SKU, where the platform gives it.
    pub sku: Option<String>,
    /// The platform's product id: ASIN, EAN, eBay legacy item id.
    pub product_id: Option<String>,
    pub title: Option<String>,
    pub quantity: u32,
    pub quantity_shipped: Option<u32>,
    pub unit_price: Option<Money>,
    pub total: Option<Money>,
}

/// An order, without its buyer's personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub marketplace: Marketplace,
    pub order_id: String,
    /// The marketplace site it was sold on (Amazon marketplace id, eBay marketplace id), where known.
    pub site: Option<String>,
    pub status: Status,
    /// The platform's own status, as it said it.
    pub platform_status: String,
    /// Who ships it: `MERCHANT` or the marketplace (`AMAZON`, `FBB`).
    pub fulfilled_by: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The platform's last change of the order: its version. An older version never replaces a newer one.
    pub updated_at: DateTime<Utc>,
    /// When it shipped, as the platform says (Amazon: the last package's ship time). `None` when the
    /// platform does not say; the poller then records when it first saw the order shipped.
    pub shipped_at: Option<DateTime<Utc>>,
    pub total: Option<Money>,
    pub lines: Vec<Line>,
}

/// The most lines an order keeps, and the longest text of a line: an order stays far below DynamoDB's
/// 400 KB item limit whatever the platform sends.
pub const MAX_LINES: usize = 500;
pub const MAX_TEXT: usize = 200;

fn clip(s: &mut Option<String>) {
    if let Some(t) = s {
        if t.chars().count() > MAX_TEXT {
            *t = t.chars().take(MAX_TEXT).collect();
        }
    }
}

impl Order {
    /// Bounds the order's size: at most [`MAX_LINES`] lines, texts of at most [`MAX_TEXT`] characters.
    pub fn bound(&mut self) {
        self.lines.truncate(MAX_LINES);
        for l in &mut self.lines {
            clip(&mut l.title);
            clip(&mut l.sku);
            clip(&mut l.product_id);
            if l.line_id.chars().count() > MAX_TEXT {
                l.line_id = l.line_id.chars().take(MAX_TEXT).collect();
            }
        }
        clip(&mut self.site);
        clip(&mut self.fulfilled_by);
        if self.platform_status.chars().count() > MAX_TEXT {
            self.platform_status = self.platform_status.chars().take(MAX_TEXT).collect();
        }
    }

    /// The order's sort key in the orders table: `order#<marketplace>#<order id>`.
    pub fn sort_key(&self) -> String {
        format!("order#{}#{}", self.marketplace, self.order_id)
    }
}

/// A postal address.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: Option<String>,
    pub company: Option<String>,
    pub lines: Vec<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country_code: Option<String>,
}

/// The buyer's personal data of one order: held apart from the order, deleted on its own deadline.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buyer {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The marketplace's buyer id (the eBay username), by which the marketplace's own deletion notice
    /// names the person.
    pub buyer_id: Option<String>,
    pub shipping_address: Option<Address>,
}

/// Says which fields are set, never their values.
impl fmt::Debug for Buyer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: bool| if o { "<set>" } else { "-" };
        f.debug_struct("Buyer")
            .field("name", &set(self.name.is_some()))
            .field("email", &set(self.email.is_some()))
            .field("phone", &set(self.phone.is_some()))
            .field("buyer_id", &set(self.buyer_id.is_some()))
            .field("shipping_address", &set(self.shipping_address.is_some()))
            .finish()
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Address(..)")
    }
}

impl Buyer {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.email.is_none()
            && self.phone.is_none()
            && self.buyer_id.is_none()
            && self.shipping_address.is_none()
    }
}

/// An order as a normaliser returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    pub order: Order,
    /// `None` when the platform gave no buyer data at all.
    pub buyer: Option<Buyer>,
    /// True when the platform should have given buyer data for this order (by its fulfilment and
    /// status) and did not: the known SP-API failure mode, counted per merchant and marketplace.
    pub buyer_data_missing: bool,
}

/// Why a platform order could not be normalised. Names the field, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{marketplace} order: {field} is missing or malformed")]
pub struct Invalid {
    pub marketplace: Marketplace,
    pub field: &'static str,
}

/// A time as the platforms send it (RFC 3339, any offset), in UTC.
fn time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// A non-empty, trimmed string.
fn text(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// An order id as the platforms' ids look: 1-64 characters of letters, digits, `-` and `_`. It becomes
/// part of a key, so anything else is refused.
pub fn order_id(marketplace: Marketplace, s: Option<&str>) -> Result<String, Invalid> {
    let id = s.map(str::trim).unwrap_or_default();
    let ok =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| id.to_owned()).ok_or(Invalid { marketplace, field: "order id" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_a_decimal_with_a_currency() {
        let m = Money::parse("154.99", "USD").unwrap();
        assert_eq!(m.amount.to_string(), "154.99");
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"amount":"154.99","currency":"USD"}"#);
        assert_eq!(Money::parse("1e400", "USD"), None);
        assert_eq!(Money::parse("1.00", "usd"), None);
        assert_eq!(Money::parse("abc", "EUR"), None);
    }

    #[test]
    fn order_ids_that_could_break_a_key_are_refused() {
        assert!(order_id(Marketplace::Ebay, Some("12-34567-89012")).is_ok());
        assert!(order_id(Marketplace::Ebay, Some("a#b")).is_err());
        assert!(order_id(Marketplace::Ebay, Some("")).is_err());
        assert!(order_id(Marketplace::Ebay, None).is_err());
        assert!(order_id(Marketplace::Ebay, Some(&"1".repeat(65))).is_err());
    }

    #[test]
    fn a_buyer_prints_no_personal_data() {
        let b = Buyer { name: Some("Ann Example".into()), email: Some("ann@example.com".into()), ..Buyer::default() };
        let shown = format!("{b:?}");
        assert!(!shown.contains("Ann") && !shown.contains("example.com"), "{shown}");
    }
}

/// The platforms' own published order bodies (`../shared/fixtures`), normalised.
#[cfg(all(test, fixtures))]
mod conformance {
    use super::*;

    fn read(path: &str) -> serde_json::Value {
        let p = format!("{}/{path}", env!("NEX_FIXTURES_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))).unwrap()
    }

    /// What every normalised order must hold: no personal data in the order, decimals that add up.
    fn check(n: &Normalised, raw: &serde_json::Value) {
        let order = serde_json::to_string(&n.order).unwrap();
        if let Some(b) = &n.buyer {
            for v in [&b.name, &b.email, &b.phone].into_iter().flatten() {
                assert!(!order.contains(v.as_str()), "buyer data in the order");
            }
        }
        assert!(n.order.updated_at >= n.order.created_at || raw.is_object());
    }

    #[test]
    fn amazon_2026_examples_and_sandbox_cases_normalise() {
        let dir = "amazon_sp_api/orders_2026-01-01";
        let mut pages = vec![read(&format!("{dir}/searchOrders_200_example.json"))];
        for i in 0..3 {
            pages.push(read(&format!("{dir}/sandbox/searchOrders_200_static_{i}.json"))["response"].clone());
        }
        let mut seen = 0;
        for page in pages {
            let parsed: amazon::SearchOrders = serde_json::from_value(page.clone()).unwrap();
            for (o, raw) in parsed.orders.iter().zip(page["orders"].as_array().unwrap()) {
                let n = amazon::normalise(o).unwrap();
                assert_eq!(n.order.order_id, raw["orderId"].as_str().unwrap());
                assert_eq!(
                    n.order.total.as_ref().map(|t| t.amount.to_string()),
                    raw["proceeds"]["grandTotal"]["amount"].as_str().map(str::to_owned)
                );
                assert_eq!(n.order.platform_status, raw["fulfillment"]["fulfillmentStatus"].as_str().unwrap());
                assert_eq!(n.order.lines.len(), raw["orderItems"].as_array().unwrap().len());
                check(&n, raw);
                seen += 1;
            }
        }
        let example: amazon::SearchOrders =
            serde_json::from_value(read(&format!("{dir}/searchOrders_200_example.json"))).unwrap();
        assert!(example.next_token().is_some() && example.last_updated_before().is_some());
        for i in 0..3 {
            let got: amazon::GetOrder = serde_json::from_value(
                read(&format!("{dir}/sandbox/getOrder_200_static_{i}.json"))["response"].clone(),
            )
            .unwrap();
            amazon::normalise(&got.order).unwrap();
        }
        assert!(seen >= 4);
    }

    #[test]
    fn an_amazon_shipped_example_takes_its_ship_time_from_the_packages() {
        let page: amazon::SearchOrders =
            serde_json::from_value(read("amazon_sp_api/orders_2026-01-01/searchOrders_200_example.json")).unwrap();
        let n = amazon::normalise(&page.orders[0]).unwrap();
        assert_eq!(n.order.status, Status::Shipped);
        assert_eq!(n.order.shipped_at.map(|t| t.to_rfc3339()).as_deref(), Some("2024-12-25T14:00:00+00:00"));
        assert_eq!(n.order.total.unwrap().amount.to_string(), "154.99");
        assert!(n.buyer.unwrap().email.is_some());
    }

    #[test]
    fn bol_v10_captured_bodies_normalise() {
        let raw = read("bol/get_order_200_body.json");
        let n = bol::normalise(&serde_json::from_value(raw.clone()).unwrap()).unwrap();
        assert_eq!(n.order.order_id, "1042823870");
        assert_eq!(n.order.lines.len(), 2);
        assert_eq!(n.order.lines[0].unit_price.as_ref().unwrap().amount.to_string(), "19.99");
        assert_eq!(n.order.lines[1].unit_price.as_ref().unwrap().amount.to_string(), "32.98");
        assert_eq!(n.order.fulfilled_by.as_deref(), Some("FBB"));
        check(&n, &raw);
        let list: bol::ReducedOrders = serde_json::from_value(read("bol/get_orders_200_body.json")).unwrap();
        assert_eq!(list.orders.len(), 4);
        assert!(list.orders.iter().all(|o| o.order_id.is_some()));
    }

    /// eBay publishes no order bodies: the sample here is checked against the fields of eBay's own schema.
    #[test]
    fn the_ebay_sample_uses_only_fields_of_ebays_order_schema() {
        let spec = read("ebay/sell_fulfillment_v1_oas3.json");
        let schemas = &spec["components"]["schemas"];
        let sample: serde_json::Value = serde_json::from_str(ebay::tests::SAMPLE).unwrap();
        fn walk(v: &serde_json::Value, schema: &str, schemas: &serde_json::Value, path: &str) {
            let props = &schemas[schema]["properties"];
            let Some(obj) = v.as_object() else { return };
            for (k, child) in obj {
                let p = &props[k];
                assert!(!p.is_null(), "{path}.{k} is not a field of {schema}");
                let r = p["$ref"].as_str().or_else(|| p["items"]["$ref"].as_str());
                if let Some(r) = r.and_then(|r| r.rsplit('/').next()) {
                    match child {
                        serde_json::Value::Array(a) => {
                            a.iter().for_each(|c| walk(c, r, schemas, &format!("{path}.{k}")))
                        }
                        c => walk(c, r, schemas, &format!("{path}.{k}")),
                    }
                }
            }
        }
        walk(&sample, "OrderSearchPagedCollection", schemas, "page");
    }
}
