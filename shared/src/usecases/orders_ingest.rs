//! Storing a page of fetched orders: each new or changed version once, with its buyer apart and both
//! stamped with their deadlines from the one retention policy; unchanged ones cost no write.
//!
//! - An order is keyed by merchant + marketplace + order id; a version is its platform's last-update time.
//!   A version that is not newer than the stored one changes nothing: overlapping windows, re-delivered
//!   pages and a re-run after a crash are harmless.
//! - Its ship time is the platform's, else the one recorded before, else now if it is shipped now (the
//!   first time the poller saw it shipped). The buyer's deadline counts from it.
//! - Nothing already past its deadline is written: an order fetched after its anonymisation is stored
//!   without its buyer link, and buyer data past its deadline is deleted rather than written again.

use chrono::{DateTime, Utc};

use crate::domain::orders::{Marketplace, Normalised, Status};
use crate::domain::retention::{self, DataClass};
use crate::domain::subject::{IdentifierKind, SubjectHasher};
use crate::ports::{BuyerWrite, InfraError, OrderStore, OrderWrite};

/// What storing a page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageResult {
    pub new: u32,
    pub changed: u32,
    pub unchanged: u32,
    /// Orders the platform should have sent buyer data for and did not.
    pub buyer_missing: u32,
    /// Orders that could not be stored as they are (refused by the table): counted and skipped, so one
    /// order cannot hold up its connection.
    pub invalid: u32,
}

impl PageResult {
    pub fn add(&mut self, other: PageResult) {
        self.new += other.new;
        self.changed += other.changed;
        self.unchanged += other.unchanged;
        self.buyer_missing += other.buyer_missing;
        self.invalid += other.invalid;
    }
}

/// The subject hash of an order's buyer: the marketplace's buyer id where it has one (eBay's username,
/// which its deletion notice names), else the buyer's email.
pub fn buyer_subject(hasher: &SubjectHasher, marketplace: Marketplace, n: &Normalised) -> Option<String> {
    let buyer = n.buyer.as_ref()?;
    match (&buyer.buyer_id, &buyer.email) {
        (Some(id), _) => hasher.hash(IdentifierKind::MarketplaceBuyer, &format!("{marketplace}:{id}")),
        (None, Some(email)) => hasher.hash(IdentifierKind::Email, email),
        (None, None) => None,
    }
}

/// The event id of an order version: stable, so every consumer can de-duplicate a redelivery.
pub fn event_id(n: &Normalised) -> String {
    format!("order:{}:{}:{}", n.order.marketplace, n.order.order_id, n.order.updated_at.timestamp_millis())
}

/// Stores the new and changed orders of one page for `merchant`.
pub async fn store_page(
    store: &impl OrderStore, hasher: &SubjectHasher, merchant: &str, page: Vec<Normalised>, now: DateTime<Utc>,
) -> Result<PageResult, InfraError> {
    let mut result = PageResult::default();
    let keys: Vec<String> = page.iter().map(|n| n.order.sort_key()).collect();
    let stored = store.versions(merchant, &keys).await?;
    let event_expires_at = retention::deadline(DataClass::IdempotencyRecord, now)
        .ok_or_else(InfraError::deadline_out_of_range)?
        .timestamp();
    for mut n in page {
        if n.buyer_data_missing {
            result.buyer_missing += 1;
        }
        let sk = n.order.sort_key();
        let old = stored.get(&sk);
        // Versions are compared as stored: to the millisecond.
        if old.is_some_and(|o| o.updated_at.timestamp_millis() >= n.order.updated_at.timestamp_millis()) {
            result.unchanged += 1;
            continue;
        }
        // First seen shipped: it shipped at the latest when the platform last changed it (an order found
        // already shipped on a first poll or after an outage shipped then, not now).
        n.order.shipped_at = n
            .order
            .shipped_at
            .or(old.and_then(|o| o.shipped_at))
            .or((n.order.status == Status::Shipped).then_some(now.min(n.order.updated_at)));
        n.order.bound();
        let amazon = n.order.marketplace == Marketplace::Amazon;
        let shard = format!("merchant#{merchant}{sk}");
        let stamp = retention::marketplace_order_stamp(amazon, n.order.created_at, &shard)
            .ok_or_else(InfraError::deadline_out_of_range)?;
        let had_buyer = old.is_some_and(|o| o.buyer);
        // Buyer data once removed (its deadline, an erasure) is never stored again, nor the link to them.
        let removed = old.is_some_and(|o| o.buyer_removed);
        let live = !retention::is_past(stamp.expires_at, now);
        let buyer_stamp = retention::marketplace_buyer_stamp(amazon, n.order.created_at, n.order.shipped_at, &shard)
            .ok_or_else(InfraError::deadline_out_of_range)?;
        let buyer = match &n.buyer {
            _ if removed => BuyerWrite::Keep,
            _ if !live || retention::is_past(buyer_stamp.expires_at, now) => {
                if had_buyer {
                    BuyerWrite::Delete
                } else {
                    BuyerWrite::Keep
                }
            }
            Some(b) => BuyerWrite::Put(b, buyer_stamp),
            None if had_buyer => BuyerWrite::Restamp(buyer_stamp),
            None => BuyerWrite::Keep,
        };
        let subject = (live && !removed).then(|| buyer_subject(hasher, n.order.marketplace, &n)).flatten();
        let buyer_held = removed || had_buyer || matches!(buyer, BuyerWrite::Put(..));
        let write = OrderWrite {
            merchant,
            order: &n.order,
            stamp: live.then_some(stamp),
            subject,
            buyer,
            event_id: event_id(&n),
            event_expires_at,
            buyer_held,
            first: old.is_none(),
        };
        let written = match store.write(&write).await {
            Ok(w) => w,
            // Refused as it is (too large, say): counted, and the rest of the page goes on. Any other
            // failure (access, a missing table) stops the page unmoved.
            Err(e) if e.is_validation() => {
                tracing::warn!(marketplace = %n.order.marketplace, error = %e, "order not stored");
                result.invalid += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if written {
            if old.is_some() {
                result.changed += 1;
            } else {
                result.new += 1;
            }
        } else {
            result.unchanged += 1;
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryOrders;
    use crate::domain::orders::{amazon, ebay};
    use chrono::{Duration, TimeZone};
    use secrecy::SecretString;

    fn hasher() -> SubjectHasher {
        SubjectHasher::new(&SecretString::from("pepper".to_owned()))
    }

    fn amazon_order(status: &str, updated: &str, with_buyer: bool) -> Normalised {
        let buyer = if with_buyer {
            r#","buyer":{"buyerEmail":"x@marketplace.amazon.de"},"recipient":{"deliveryAddress":{"name":"E","city":"B"}}"#
        } else {
            ""
        };
        let json = format!(
            r#"{{"orderId":"1-2-3","createdTime":"2026-11-01T10:00:00Z","lastUpdatedTime":"{updated}",
            "fulfillment":{{"fulfillmentStatus":"{status}","fulfilledBy":"MERCHANT"}}{buyer}}}"#
        );
        amazon::normalise(&serde_json::from_str(&json).unwrap()).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 3, 12, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn a_new_order_is_stored_once_and_a_repeat_changes_nothing() {
        let store = MemoryOrders::default();
        let page = || vec![amazon_order("UNSHIPPED", "2026-11-01T11:00:00Z", true)];
        let r = store_page(&store, &hasher(), "m1", page(), now()).await.unwrap();
        assert_eq!((r.new, r.changed, r.unchanged), (1, 0, 0));
        let r = store_page(&store, &hasher(), "m1", page(), now()).await.unwrap();
        assert_eq!((r.new, r.changed, r.unchanged), (0, 0, 1));
        assert_eq!(store.events.lock().unwrap().len(), 1, "one event per version");
        let stored = store.orders.lock().unwrap();
        let o = stored.values().next().unwrap();
        assert!(o.subject.is_some() && o.buyer.is_some());
    }

    #[tokio::test]
    async fn an_older_version_never_replaces_a_newer_one() {
        let store = MemoryOrders::default();
        store_page(&store, &hasher(), "m1", vec![amazon_order("SHIPPED", "2026-11-02T11:00:00Z", true)], now())
            .await
            .unwrap();
        let r =
            store_page(&store, &hasher(), "m1", vec![amazon_order("UNSHIPPED", "2026-11-01T11:00:00Z", true)], now())
                .await
                .unwrap();
        assert_eq!(r.unchanged, 1);
        let stored = store.orders.lock().unwrap();
        assert_eq!(stored.values().next().unwrap().order.status, Status::Shipped);
    }

    #[tokio::test]
    async fn shipping_moves_the_buyers_deadline_to_29_days_after_it_was_first_seen_shipped() {
        let store = MemoryOrders::default();
        store_page(&store, &hasher(), "m1", vec![amazon_order("UNSHIPPED", "2026-11-01T11:00:00Z", true)], now())
            .await
            .unwrap();
        // Shipped, and this time without buyer data: the stored buyer is kept, with the new deadline.
        let later = now() + Duration::days(1);
        let r =
            store_page(&store, &hasher(), "m1", vec![amazon_order("SHIPPED", "2026-11-04T11:00:00Z", false)], later)
                .await
                .unwrap();
        assert_eq!((r.changed, r.buyer_missing), (1, 1));
        let stored = store.orders.lock().unwrap();
        let o = stored.values().next().unwrap();
        // First seen shipped a day later: it shipped at the latest at its last change.
        assert_eq!(o.order.shipped_at, Some(Utc.with_ymd_and_hms(2026, 11, 4, 11, 0, 0).unwrap()));
        assert!(o.order.shipped_at.unwrap() <= later);
        let (_, st) = o.buyer.as_ref().unwrap();
        // Amazon: the order's own 30 days from 2026-11-01 come before shipment + 29 days.
        assert_eq!(st.expires_at, Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap().timestamp());
    }

    #[tokio::test]
    async fn an_order_fetched_after_its_anonymisation_is_stored_without_its_buyer() {
        let store = MemoryOrders::default();
        let late = Utc.with_ymd_and_hms(2027, 1, 15, 0, 0, 0).unwrap();
        store_page(&store, &hasher(), "m1", vec![amazon_order("SHIPPED", "2027-01-14T11:00:00Z", true)], late)
            .await
            .unwrap();
        let stored = store.orders.lock().unwrap();
        let o = stored.values().next().unwrap();
        assert!(o.buyer.is_none() && o.subject.is_none() && o.stamp.is_none());
    }

    #[tokio::test]
    async fn an_ebay_buyer_is_found_by_the_username_its_deletion_notice_names() {
        let page: ebay::OrderPage = serde_json::from_str(ebay::tests::SAMPLE).unwrap();
        let n = ebay::normalise(&page.orders[0]).unwrap();
        let h = hasher();
        assert_eq!(
            buyer_subject(&h, Marketplace::Ebay, &n),
            h.hash(IdentifierKind::MarketplaceBuyer, "ebay:buyer_one")
        );
    }

    #[tokio::test]
    async fn buyer_data_once_removed_is_never_stored_again() {
        let store = MemoryOrders::default();
        store_page(&store, &hasher(), "m1", vec![amazon_order("UNSHIPPED", "2026-11-01T11:00:00Z", true)], now())
            .await
            .unwrap();
        // An erasure (or the buyer's deadline) removes the buyer and the link to them.
        for o in store.orders.lock().unwrap().values_mut() {
            o.buyer = None;
            o.subject = None;
        }
        let r = store_page(&store, &hasher(), "m1", vec![amazon_order("SHIPPED", "2026-11-02T11:00:00Z", true)], now())
            .await
            .unwrap();
        assert_eq!(r.changed, 1, "the order itself still changes");
        let stored = store.orders.lock().unwrap();
        let o = stored.values().next().unwrap();
        assert!(o.buyer.is_none() && o.subject.is_none(), "the new version brings no buyer data back");
    }

    #[tokio::test]
    async fn an_order_first_seen_already_shipped_counts_from_its_last_change_not_from_now() {
        let store = MemoryOrders::default();
        let later = now() + Duration::days(6);
        store_page(&store, &hasher(), "m1", vec![amazon_order("SHIPPED", "2026-11-02T11:00:00Z", false)], later)
            .await
            .unwrap();
        let stored = store.orders.lock().unwrap();
        let shipped = stored.values().next().unwrap().order.shipped_at.unwrap();
        assert_eq!(shipped.to_rfc3339(), "2026-11-02T11:00:00+00:00");
    }

    #[tokio::test]
    async fn merchants_orders_are_kept_apart() {
        let store = MemoryOrders::default();
        let page = || vec![amazon_order("UNSHIPPED", "2026-11-01T11:00:00Z", true)];
        store_page(&store, &hasher(), "m1", page(), now()).await.unwrap();
        let r = store_page(&store, &hasher(), "m2", page(), now()).await.unwrap();
        assert_eq!(r.new, 1, "the same order id at another merchant is another order");
    }
}
