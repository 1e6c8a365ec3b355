//! bol.com Retailer API v10: the reduced orders of `GET /retailer/orders` (what changed) and the full
//! order of `GET /retailer/orders/{order-id}` (what it is), normalised.
//!
//! bol sends prices as JSON numbers in euros; they are read as the shortest decimal that prints the
//! same number (`19.99` stays `19.99`), never kept as floats. An empty list comes as `{}`.

use serde::Deserialize;

use super::{order_id, text, time, Address, Buyer, Invalid, Line, Marketplace, Money, Normalised, Order, Status};

const M: Marketplace = Marketplace::Bol;

/// `GET /retailer/orders`: which orders changed.
#[derive(Debug, Default, Deserialize)]
pub struct ReducedOrders {
    #[serde(default)]
    pub orders: Vec<ReducedOrder>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReducedOrder {
    pub order_id: Option<String>,
    pub order_placed_date_time: Option<String>,
    #[serde(default)]
    pub order_items: Vec<ReducedItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReducedItem {
    pub latest_changed_date_time: Option<String>,
}

impl ReducedOrder {
    /// The order's last change as the list says it (the latest of its items'), if it says one.
    pub fn changed_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.order_items.iter().filter_map(|i| time(i.latest_changed_date_time.as_deref())).max()
    }
}

/// `GET /retailer/orders/{order-id}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiOrder {
    pub order_id: Option<String>,
    pub order_placed_date_time: Option<String>,
    #[serde(default)]
    pub shipment_details: Option<Details>,
    #[serde(default)]
    pub billing_details: Option<Details>,
    #[serde(default)]
    pub order_items: Vec<OrderItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    pub first_name: Option<String>,
    pub surname: Option<String>,
    pub company: Option<String>,
    pub street_name: Option<String>,
    pub house_number: Option<String>,
    pub house_number_extension: Option<String>,
    pub extra_address_information: Option<String>,
    pub zip_code: Option<String>,
    pub city: Option<String>,
    pub country_code: Option<String>,
    pub email: Option<String>,
    pub delivery_phone_number: Option<String>,
}

impl std::fmt::Debug for Details {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Details(..)")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub order_item_id: Option<String>,
    #[serde(default)]
    pub fulfilment: Option<Fulfilment>,
    #[serde(default)]
    pub offer: Option<Offer>,
    #[serde(default)]
    pub product: Option<Product>,
    pub quantity: Option<u32>,
    pub quantity_shipped: Option<u32>,
    pub quantity_cancelled: Option<u32>,
    pub unit_price: Option<serde_json::Number>,
    pub total_price: Option<serde_json::Number>,
    pub latest_changed_date_time: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Fulfilment {
    pub method: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Offer {
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Product {
    pub ean: Option<String>,
    pub title: Option<String>,
}

fn euros(n: Option<&serde_json::Number>) -> Option<Money> {
    Money::parse(&n?.to_string(), "EUR")
}

/// The order's status from its items' quantities: bol has no order-level status.
pub fn status(items: &[OrderItem]) -> Status {
    // Summed wide: hostile quantities cannot overflow.
    let ordered: u64 = items.iter().map(|i| u64::from(i.quantity.unwrap_or(0))).sum();
    let cancelled: u64 = items.iter().map(|i| u64::from(i.quantity_cancelled.unwrap_or(0))).sum();
    let shipped: u64 = items.iter().map(|i| u64::from(i.quantity_shipped.unwrap_or(0))).sum();
    let to_ship = ordered.saturating_sub(cancelled);
    if ordered > 0 && to_ship == 0 {
        Status::Cancelled
    } else if to_ship > 0 && shipped >= to_ship {
        Status::Shipped
    } else if shipped > 0 {
        Status::PartiallyShipped
    } else {
        Status::Open
    }
}

/// Normalises one bol order. bol's order gives no ship time: the poller records when it first saw the
/// order shipped.
pub fn normalise(o: &ApiOrder) -> Result<Normalised, Invalid> {
    let order_id = order_id(M, o.order_id.as_deref())?;
    let created_at =
        time(o.order_placed_date_time.as_deref()).ok_or(Invalid { marketplace: M, field: "orderPlacedDateTime" })?;
    let updated_at =
        o.order_items.iter().filter_map(|i| time(i.latest_changed_date_time.as_deref())).max().unwrap_or(created_at);
    let status = status(&o.order_items);
    let methods: Vec<&str> =
        o.order_items.iter().filter_map(|i| i.fulfilment.as_ref()?.method.as_deref()).collect::<Vec<_>>();
    let fulfilled_by = methods.first().map(|m| (*m).to_owned());
    let lines = o
        .order_items
        .iter()
        .enumerate()
        .map(|(i, it)| Line {
            line_id: text(it.order_item_id.as_deref()).unwrap_or_else(|| i.to_string()),
            sku: text(it.offer.as_ref().and_then(|o| o.reference.as_deref())),
            product_id: text(it.product.as_ref().and_then(|p| p.ean.as_deref())),
            title: text(it.product.as_ref().and_then(|p| p.title.as_deref())),
            quantity: it.quantity.unwrap_or(0),
            quantity_shipped: it.quantity_shipped,
            unit_price: euros(it.unit_price.as_ref()),
            total: euros(it.total_price.as_ref()),
        })
        .collect::<Vec<_>>();
    let total = lines.iter().map(|l| l.total.as_ref().map(|t| t.amount)).sum::<Option<rust_decimal::Decimal>>();
    let order = Order {
        marketplace: M,
        order_id,
        site: Some("bol.com".into()),
        status,
        platform_status: status.as_str().to_uppercase(),
        fulfilled_by: fulfilled_by.clone(),
        created_at,
        updated_at,
        shipped_at: None,
        total: total.filter(|_| !lines.is_empty()).map(|amount| Money { amount, currency: "EUR".into() }),
        lines,
    };
    let d = o.shipment_details.as_ref();
    let name = d.and_then(|d| {
        let n = [text(d.first_name.as_deref()), text(d.surname.as_deref())].into_iter().flatten().collect::<Vec<_>>();
        (!n.is_empty()).then(|| n.join(" "))
    });
    let buyer = Buyer {
        name: name.clone(),
        email: d.and_then(|d| text(d.email.as_deref())).or_else(|| text(o.billing_details.as_ref()?.email.as_deref())),
        phone: d.and_then(|d| text(d.delivery_phone_number.as_deref())),
        buyer_id: None,
        shipping_address: d.map(|d| Address {
            name,
            company: text(d.company.as_deref()),
            lines: [
                [
                    text(d.street_name.as_deref()),
                    text(d.house_number.as_deref()),
                    text(d.house_number_extension.as_deref()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
                text(d.extra_address_information.as_deref()).unwrap_or_default(),
            ]
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect(),
            city: text(d.city.as_deref()),
            region: None,
            postal_code: text(d.zip_code.as_deref()),
            country_code: text(d.country_code.as_deref()),
        }),
    };
    // Retailer-fulfilled orders must come with the address to ship to.
    let buyer_data_missing = fulfilled_by.as_deref() == Some("FBR")
        && matches!(status, Status::Open | Status::PartiallyShipped)
        && buyer.shipping_address.is_none();
    Ok(Normalised { order, buyer: (!buyer.is_empty()).then_some(buyer), buyer_data_missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v10 order in the documented shape, written for this test.
    pub const SAMPLE: &str = r#"{"orderId":"A2B3C4D5E6","pickupPoint":false,"orderPlacedDateTime":"2026-11-20T12:00:00+01:00",
      "shipmentDetails":{"firstName":"Piet","surname":"Jansen","streetName":"Dorpsstraat","houseNumber":"7",
        "zipCode":"1234AB","city":"UTRECHT","countryCode":"NL","email":"x1@verkopen.bol.com"},
      "orderItems":[{"orderItemId":"9000000001","fulfilment":{"method":"FBR"},"offer":{"reference":"REF-1"},
        "product":{"ean":"8712345678906","title":"Lamp"},"quantity":2,"quantityShipped":2,"quantityCancelled":0,
        "unitPrice":19.99,"totalPrice":39.98,"latestChangedDateTime":"2026-11-21T09:00:00+01:00"}]}"#;

    #[test]
    fn an_order_is_normalised_with_exact_euros() {
        let n = normalise(&serde_json::from_str(SAMPLE).unwrap()).unwrap();
        assert_eq!(n.order.created_at.to_rfc3339(), "2026-11-20T11:00:00+00:00");
        assert_eq!(n.order.updated_at.to_rfc3339(), "2026-11-21T08:00:00+00:00");
        assert_eq!(n.order.status, Status::Shipped);
        assert_eq!(n.order.lines[0].unit_price.as_ref().unwrap().amount.to_string(), "19.99");
        assert_eq!(n.order.total.as_ref().unwrap().amount.to_string(), "39.98");
        let b = n.buyer.unwrap();
        assert_eq!(b.name.as_deref(), Some("Piet Jansen"));
        assert_eq!(b.shipping_address.unwrap().lines, vec!["Dorpsstraat 7"]);
    }

    #[test]
    fn an_empty_list_comes_as_an_empty_object() {
        let r: ReducedOrders = serde_json::from_str("{}").unwrap();
        assert!(r.orders.is_empty());
    }

    #[test]
    fn status_comes_from_the_quantities() {
        let item = |q, s, c| OrderItem {
            order_item_id: None,
            fulfilment: None,
            offer: None,
            product: None,
            quantity: Some(q),
            quantity_shipped: Some(s),
            quantity_cancelled: Some(c),
            unit_price: None,
            total_price: None,
            latest_changed_date_time: None,
        };
        assert_eq!(status(&[item(2, 0, 0)]), Status::Open);
        assert_eq!(status(&[item(2, 1, 0)]), Status::PartiallyShipped);
        assert_eq!(status(&[item(2, 1, 1)]), Status::Shipped);
        assert_eq!(status(&[item(2, 0, 2)]), Status::Cancelled);
    }
}
