//! Amazon Orders API 2026-01-01: `searchOrders` pages and `getOrder` answers, normalised.
//!
//! Only the fields this suite keeps are read; everything else (gift messages, delivery instructions,
//! business hours) is never deserialised, so it cannot be stored by accident.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{order_id, text, time, Address, Buyer, Invalid, Line, Marketplace, Money, Normalised, Order, Status};

const M: Marketplace = Marketplace::Amazon;

/// One `searchOrders` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchOrders {
    #[serde(default)]
    pub orders: Vec<ApiOrder>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// The window's end as the service applied it: the next watermark.
    #[serde(default)]
    pub last_updated_before: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    #[serde(default)]
    pub next_token: Option<String>,
}

impl SearchOrders {
    pub fn next_token(&self) -> Option<&str> {
        self.pagination.as_ref()?.next_token.as_deref().filter(|t| !t.is_empty())
    }

    pub fn last_updated_before(&self) -> Option<DateTime<Utc>> {
        time(self.last_updated_before.as_deref())
    }
}

/// The `getOrder` answer.
#[derive(Debug, Deserialize)]
pub struct GetOrder {
    pub order: ApiOrder,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiOrder {
    pub order_id: Option<String>,
    pub created_time: Option<String>,
    pub last_updated_time: Option<String>,
    #[serde(default)]
    pub sales_channel: Option<SalesChannel>,
    #[serde(default)]
    pub buyer: Option<ApiBuyer>,
    #[serde(default)]
    pub recipient: Option<Recipient>,
    #[serde(default)]
    pub proceeds: Option<Proceeds>,
    #[serde(default)]
    pub fulfillment: Option<Fulfillment>,
    #[serde(default)]
    pub order_items: Vec<OrderItem>,
    #[serde(default)]
    pub packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SalesChannel {
    pub marketplace_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiBuyer {
    pub buyer_name: Option<String>,
    pub buyer_email: Option<String>,
}

impl std::fmt::Debug for ApiBuyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiBuyer(..)")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    pub delivery_address: Option<DeliveryAddress>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recipient(..)")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAddress {
    pub name: Option<String>,
    pub company_name: Option<String>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub address_line3: Option<String>,
    pub city: Option<String>,
    pub state_or_region: Option<String>,
    pub postal_code: Option<String>,
    pub country_code: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiMoney {
    pub amount: Option<String>,
    pub currency_code: Option<String>,
}

impl ApiMoney {
    fn money(&self) -> Option<Money> {
        Money::parse(self.amount.as_deref()?, self.currency_code.as_deref()?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proceeds {
    pub grand_total: Option<ApiMoney>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fulfillment {
    pub fulfillment_status: Option<String>,
    pub fulfilled_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub order_item_id: Option<String>,
    pub quantity_ordered: Option<u32>,
    #[serde(default)]
    pub product: Option<Product>,
    #[serde(default)]
    pub proceeds: Option<ItemProceeds>,
    #[serde(default)]
    pub fulfillment: Option<ItemFulfillment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub asin: Option<String>,
    pub title: Option<String>,
    pub seller_sku: Option<String>,
    #[serde(default)]
    pub price: Option<Price>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    pub unit_price: Option<ApiMoney>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemProceeds {
    pub proceeds_total: Option<ApiMoney>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFulfillment {
    pub quantity_fulfilled: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    pub ship_time: Option<String>,
}

/// Maps `fulfillment.fulfillmentStatus` to the one status set.
pub fn status(platform: &str) -> Status {
    match platform {
        "PENDING" | "PENDING_AVAILABILITY" => Status::Pending,
        "UNSHIPPED" => Status::Open,
        "PARTIALLY_SHIPPED" => Status::PartiallyShipped,
        "SHIPPED" => Status::Shipped,
        "CANCELLED" | "UNFULFILLABLE" => Status::Cancelled,
        // A status added after this was written: treated as not yet shipped, kept as said.
        _ => Status::Open,
    }
}

/// Normalises one Amazon order.
pub fn normalise(o: &ApiOrder) -> Result<Normalised, Invalid> {
    let order_id = order_id(M, o.order_id.as_deref())?;
    let created_at = time(o.created_time.as_deref()).ok_or(Invalid { marketplace: M, field: "createdTime" })?;
    let updated_at = time(o.last_updated_time.as_deref()).unwrap_or(created_at);
    let fulfillment = o.fulfillment.as_ref();
    let platform_status = text(fulfillment.and_then(|f| f.fulfillment_status.as_deref()))
        .ok_or(Invalid { marketplace: M, field: "fulfillment.fulfillmentStatus" })?;
    let status = status(&platform_status);
    let fulfilled_by = text(fulfillment.and_then(|f| f.fulfilled_by.as_deref()));
    // No order-level ship time: the order shipped when its last package did.
    let shipped_at = (status == Status::Shipped)
        .then(|| o.packages.iter().filter_map(|p| time(p.ship_time.as_deref())).max())
        .flatten();
    let lines = o
        .order_items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let product = it.product.as_ref();
            Line {
                line_id: text(it.order_item_id.as_deref()).unwrap_or_else(|| i.to_string()),
                sku: text(product.and_then(|p| p.seller_sku.as_deref())),
                product_id: text(product.and_then(|p| p.asin.as_deref())),
                title: text(product.and_then(|p| p.title.as_deref())),
                quantity: it.quantity_ordered.unwrap_or(0),
                quantity_shipped: it.fulfillment.as_ref().and_then(|f| f.quantity_fulfilled),
                unit_price: product.and_then(|p| p.price.as_ref()?.unit_price.as_ref()?.money()),
                total: it.proceeds.as_ref().and_then(|p| p.proceeds_total.as_ref()?.money()),
            }
        })
        .collect();
    let order = Order {
        marketplace: M,
        order_id,
        site: text(o.sales_channel.as_ref().and_then(|s| s.marketplace_id.as_deref())),
        status,
        platform_status,
        fulfilled_by: fulfilled_by.clone(),
        created_at,
        updated_at,
        shipped_at,
        total: o.proceeds.as_ref().and_then(|p| p.grand_total.as_ref()?.money()),
        lines,
    };
    let address = o.recipient.as_ref().and_then(|r| r.delivery_address.as_ref());
    let buyer = Buyer {
        name: text(o.buyer.as_ref().and_then(|b| b.buyer_name.as_deref())),
        email: text(o.buyer.as_ref().and_then(|b| b.buyer_email.as_deref())),
        phone: text(address.and_then(|a| a.phone.as_deref())),
        buyer_id: None,
        shipping_address: address.map(|a| Address {
            name: text(a.name.as_deref()),
            company: text(a.company_name.as_deref()),
            lines: [&a.address_line1, &a.address_line2, &a.address_line3]
                .into_iter()
                .filter_map(|l| text(l.as_deref()))
                .collect(),
            city: text(a.city.as_deref()),
            region: text(a.state_or_region.as_deref()),
            postal_code: text(a.postal_code.as_deref()),
            country_code: text(a.country_code.as_deref()),
        }),
    };
    // The buyer's email comes only for merchant-fulfilled orders that are unshipped or (partly) shipped;
    // the address for merchant-fulfilled orders that are ready to ship. Missing then is the SP-API failure.
    let merchant_fulfilled = fulfilled_by.as_deref() == Some("MERCHANT");
    let should_have =
        merchant_fulfilled && matches!(order.status, Status::Open | Status::PartiallyShipped | Status::Shipped);
    let buyer_data_missing = should_have && (buyer.email.is_none() || buyer.shipping_address.is_none());
    Ok(Normalised { order, buyer: (!buyer.is_empty()).then_some(buyer), buyer_data_missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An order in the documented shape, written for this test (no platform payload copied).
    pub const SAMPLE: &str = r#"{"orders":[{"orderId":"902-0000001-0000001","createdTime":"2026-11-20T10:00:00Z",
      "lastUpdatedTime":"2026-11-21T08:30:00Z","salesChannel":{"marketplaceId":"A1PA6795UKMFR9"},
      "buyer":{"buyerName":"Erika Muster","buyerEmail":"x1@marketplace.amazon.de"},
      "recipient":{"deliveryAddress":{"name":"Erika Muster","addressLine1":"Hauptstr. 1","city":"Berlin",
        "postalCode":"10115","countryCode":"DE","phone":"+49 30 000000"}},
      "proceeds":{"grandTotal":{"amount":"59.90","currencyCode":"EUR"}},
      "fulfillment":{"fulfillmentStatus":"SHIPPED","fulfilledBy":"MERCHANT"},
      "orderItems":[{"orderItemId":"1","quantityOrdered":2,"product":{"asin":"B000000001","sellerSku":"SKU-1",
        "title":"Mug","price":{"unitPrice":{"amount":"29.95","currencyCode":"EUR"}}},
        "proceeds":{"proceedsTotal":{"amount":"59.90","currencyCode":"EUR"}},"fulfillment":{"quantityFulfilled":2}}],
      "packages":[{"shipTime":"2026-11-21T08:00:00Z"},{"shipTime":"2026-11-21T07:00:00Z"}]}],
      "pagination":{"nextToken":"t1"},"lastUpdatedBefore":"2026-11-21T09:00:00Z"}"#;

    #[test]
    fn an_order_is_normalised_with_decimals_and_its_last_package_as_the_ship_time() {
        let page: SearchOrders = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(page.next_token(), Some("t1"));
        assert_eq!(page.last_updated_before().unwrap().to_rfc3339(), "2026-11-21T09:00:00+00:00");
        let n = normalise(&page.orders[0]).unwrap();
        assert_eq!(n.order.order_id, "902-0000001-0000001");
        assert_eq!(n.order.status, Status::Shipped);
        assert_eq!(n.order.total.as_ref().unwrap().amount.to_string(), "59.90");
        assert_eq!(n.order.shipped_at.unwrap().to_rfc3339(), "2026-11-21T08:00:00+00:00");
        assert_eq!(n.order.lines[0].unit_price.as_ref().unwrap().amount.to_string(), "29.95");
        let buyer = n.buyer.unwrap();
        assert_eq!(buyer.shipping_address.unwrap().lines, vec!["Hauptstr. 1"]);
        assert!(!n.buyer_data_missing);
        let order = serde_json::to_string(&n.order).unwrap();
        assert!(!order.contains("Erika") && !order.contains("Hauptstr"), "no buyer data in the order");
    }

    #[test]
    fn a_merchant_fulfilled_order_without_buyer_data_is_flagged() {
        let json = r#"{"orderId":"1-2-3","createdTime":"2026-11-20T10:00:00Z",
            "fulfillment":{"fulfillmentStatus":"UNSHIPPED","fulfilledBy":"MERCHANT"}}"#;
        let n = normalise(&serde_json::from_str(json).unwrap()).unwrap();
        assert!(n.buyer_data_missing);
        assert_eq!(n.buyer, None);
        let fba = json.replace("MERCHANT", "AMAZON");
        assert!(!normalise(&serde_json::from_str(&fba).unwrap()).unwrap().buyer_data_missing);
    }

    #[test]
    fn statuses_map_to_one_set_and_unknown_ones_are_kept() {
        assert_eq!(status("PENDING_AVAILABILITY"), Status::Pending);
        assert_eq!(status("UNFULFILLABLE"), Status::Cancelled);
        let json =
            r#"{"orderId":"1-2-3","createdTime":"2026-11-20T10:00:00Z","fulfillment":{"fulfillmentStatus":"NEW_ONE"}}"#;
        let n = normalise(&serde_json::from_str(json).unwrap()).unwrap();
        assert_eq!((n.order.status, n.order.platform_status.as_str()), (Status::Open, "NEW_ONE"));
    }

    #[test]
    fn an_order_without_id_or_time_is_refused() {
        let e = normalise(&serde_json::from_str(r#"{"createdTime":"2026-11-20T10:00:00Z"}"#).unwrap()).unwrap_err();
        assert_eq!(e.field, "order id");
        let e = normalise(&serde_json::from_str(r#"{"orderId":"1","createdTime":"yesterday"}"#).unwrap()).unwrap_err();
        assert_eq!(e.field, "createdTime");
    }
}
