//! eBay Sell Fulfillment API v1: `getOrders` pages, normalised.
//!
//! The buyer is named by `buyer.username`: that is what eBay's account-deletion notice names, so it is
//! the buyer id whose subject hash a deletion finds.

use serde::Deserialize;

use super::{order_id, text, time, Address, Buyer, Invalid, Line, Marketplace, Money, Normalised, Order, Status};

const M: Marketplace = Marketplace::Ebay;

/// One `getOrders` page (`OrderSearchPagedCollection`).
#[derive(Debug, Deserialize)]
pub struct OrderPage {
    #[serde(default)]
    pub orders: Vec<ApiOrder>,
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiOrder {
    pub order_id: Option<String>,
    pub creation_date: Option<String>,
    pub last_modified_date: Option<String>,
    pub order_fulfillment_status: Option<String>,
    pub order_payment_status: Option<String>,
    #[serde(default)]
    pub cancel_status: Option<CancelStatus>,
    #[serde(default)]
    pub buyer: Option<ApiBuyer>,
    #[serde(default)]
    pub pricing_summary: Option<PricingSummary>,
    #[serde(default)]
    pub fulfillment_start_instructions: Vec<StartInstruction>,
    #[serde(default)]
    pub line_items: Vec<LineItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelStatus {
    pub cancel_state: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiBuyer {
    pub username: Option<String>,
    #[serde(default)]
    pub buyer_registration_address: Option<Contact>,
}

impl std::fmt::Debug for ApiBuyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiBuyer(..)")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub full_name: Option<String>,
    pub company_name: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub primary_phone: Option<Phone>,
    #[serde(default)]
    pub contact_address: Option<ApiAddress>,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Contact(..)")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phone {
    pub phone_number: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiAddress {
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub city: Option<String>,
    pub state_or_province: Option<String>,
    pub postal_code: Option<String>,
    pub country_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartInstruction {
    #[serde(default)]
    pub shipping_step: Option<ShippingStep>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippingStep {
    #[serde(default)]
    pub ship_to: Option<Contact>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingSummary {
    pub total: Option<Amount>,
}

#[derive(Debug, Deserialize)]
pub struct Amount {
    pub value: Option<String>,
    pub currency: Option<String>,
}

impl Amount {
    fn money(&self) -> Option<Money> {
        Money::parse(self.value.as_deref()?, self.currency.as_deref()?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub line_item_id: Option<String>,
    pub legacy_item_id: Option<String>,
    pub sku: Option<String>,
    pub title: Option<String>,
    pub quantity: Option<u32>,
    pub line_item_fulfillment_status: Option<String>,
    #[serde(default)]
    pub line_item_cost: Option<Amount>,
    #[serde(default)]
    pub total: Option<Amount>,
    #[serde(default)]
    pub listing_marketplace_id: Option<String>,
}

/// Maps eBay's fulfilment, payment and cancellation states to the one status set.
pub fn status(fulfillment: &str, payment: Option<&str>, cancel: Option<&str>) -> Status {
    if cancel == Some("CANCELED") {
        return Status::Cancelled;
    }
    match fulfillment {
        "FULFILLED" => Status::Shipped,
        "IN_PROGRESS" => Status::PartiallyShipped,
        _ if matches!(payment, Some("PENDING" | "FAILED")) => Status::Pending,
        _ => Status::Open,
    }
}

fn address(c: &Contact) -> Option<Address> {
    let a = c.contact_address.as_ref()?;
    Some(Address {
        name: text(c.full_name.as_deref()),
        company: text(c.company_name.as_deref()),
        lines: [&a.address_line1, &a.address_line2].into_iter().filter_map(|l| text(l.as_deref())).collect(),
        city: text(a.city.as_deref()),
        region: text(a.state_or_province.as_deref()),
        postal_code: text(a.postal_code.as_deref()),
        country_code: text(a.country_code.as_deref()),
    })
}

/// Normalises one eBay order. eBay's `getOrders` gives no ship time: the poller records when it first
/// saw the order fulfilled.
pub fn normalise(o: &ApiOrder) -> Result<Normalised, Invalid> {
    let order_id = order_id(M, o.order_id.as_deref())?;
    let created_at = time(o.creation_date.as_deref()).ok_or(Invalid { marketplace: M, field: "creationDate" })?;
    let updated_at = time(o.last_modified_date.as_deref()).unwrap_or(created_at);
    let fulfillment = text(o.order_fulfillment_status.as_deref())
        .ok_or(Invalid { marketplace: M, field: "orderFulfillmentStatus" })?;
    let cancel = o.cancel_status.as_ref().and_then(|c| c.cancel_state.as_deref());
    let status = status(&fulfillment, o.order_payment_status.as_deref(), cancel);
    let lines = o
        .line_items
        .iter()
        .enumerate()
        .map(|(i, li)| {
            let quantity = li.quantity.unwrap_or(0);
            Line {
                line_id: text(li.line_item_id.as_deref()).unwrap_or_else(|| i.to_string()),
                sku: text(li.sku.as_deref()),
                product_id: text(li.legacy_item_id.as_deref()),
                title: text(li.title.as_deref()),
                quantity,
                quantity_shipped: (li.line_item_fulfillment_status.as_deref() == Some("FULFILLED")).then_some(quantity),
                unit_price: None,
                total: li.total.as_ref().and_then(Amount::money).or_else(|| li.line_item_cost.as_ref()?.money()),
            }
        })
        .collect::<Vec<_>>();
    let order = Order {
        marketplace: M,
        order_id,
        site: o.line_items.iter().find_map(|li| text(li.listing_marketplace_id.as_deref())),
        status,
        platform_status: fulfillment,
        fulfilled_by: Some("MERCHANT".into()),
        created_at,
        updated_at,
        shipped_at: None,
        total: o.pricing_summary.as_ref().and_then(|p| p.total.as_ref()?.money()),
        lines,
    };
    let ship_to = o.fulfillment_start_instructions.iter().find_map(|s| s.shipping_step.as_ref()?.ship_to.as_ref());
    let registered = o.buyer.as_ref().and_then(|b| b.buyer_registration_address.as_ref());
    let contact = ship_to.or(registered);
    let buyer = Buyer {
        name: contact.and_then(|c| text(c.full_name.as_deref())),
        email: contact
            .and_then(|c| text(c.email.as_deref()))
            .or_else(|| registered.and_then(|c| text(c.email.as_deref()))),
        phone: contact.and_then(|c| text(c.primary_phone.as_ref()?.phone_number.as_deref())),
        buyer_id: text(o.buyer.as_ref().and_then(|b| b.username.as_deref())),
        shipping_address: ship_to.and_then(address),
    };
    let buyer_data_missing = !matches!(status, Status::Cancelled) && buyer.shipping_address.is_none();
    Ok(Normalised { order, buyer: (!buyer.is_empty()).then_some(buyer), buyer_data_missing })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A page in the `OrderSearchPagedCollection` shape, written for this test.
    pub const SAMPLE: &str = r#"{"href":"h","total":1,"limit":200,"offset":0,"orders":[{
      "orderId":"05-00000-00001","creationDate":"2026-11-20T10:00:00.000Z","lastModifiedDate":"2026-11-21T10:00:00.000Z",
      "orderFulfillmentStatus":"FULFILLED","orderPaymentStatus":"PAID","cancelStatus":{"cancelState":"NONE_REQUESTED"},
      "buyer":{"username":"buyer_one","buyerRegistrationAddress":{"fullName":"Jo Buyer","email":"jo@example.com"}},
      "pricingSummary":{"total":{"value":"12.50","currency":"GBP"}},
      "fulfillmentStartInstructions":[{"shippingStep":{"shipTo":{"fullName":"Jo Buyer",
        "contactAddress":{"addressLine1":"1 High St","city":"Leeds","postalCode":"LS1 1AA","countryCode":"GB"},
        "primaryPhone":{"phoneNumber":"0113 000 0000"}}}}],
      "lineItems":[{"lineItemId":"10001","legacyItemId":"110001","sku":"S-1","title":"Book","quantity":1,
        "lineItemFulfillmentStatus":"FULFILLED","total":{"value":"12.50","currency":"GBP"},"listingMarketplaceId":"EBAY_GB"}]}]}"#;

    #[test]
    fn an_order_is_normalised_and_its_buyer_is_named_by_username() {
        let page: OrderPage = serde_json::from_str(SAMPLE).unwrap();
        let n = normalise(&page.orders[0]).unwrap();
        assert_eq!(n.order.status, Status::Shipped);
        assert_eq!(n.order.site.as_deref(), Some("EBAY_GB"));
        assert_eq!(n.order.total.as_ref().unwrap().amount.to_string(), "12.50");
        assert_eq!(n.order.lines[0].quantity_shipped, Some(1));
        let b = n.buyer.unwrap();
        assert_eq!(b.buyer_id.as_deref(), Some("buyer_one"));
        assert_eq!(b.email.as_deref(), Some("jo@example.com"));
        assert_eq!(b.shipping_address.unwrap().postal_code.as_deref(), Some("LS1 1AA"));
    }

    #[test]
    fn states_map_to_one_set() {
        assert_eq!(status("NOT_STARTED", Some("PAID"), Some("CANCELED")), Status::Cancelled);
        assert_eq!(status("NOT_STARTED", Some("PENDING"), None), Status::Pending);
        assert_eq!(status("NOT_STARTED", Some("PAID"), None), Status::Open);
        assert_eq!(status("IN_PROGRESS", Some("PAID"), None), Status::PartiallyShipped);
    }
}
