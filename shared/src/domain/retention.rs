//! The one declarative retention policy of the suite.
//!
//! Every window the privacy policies promise (`../shared/brief/product.md`, "Retention windows") is one row
//! of [`POLICY`]: data class -> window -> what it counts from -> what happens at the end -> which mechanism
//! enforces it. Writers never compute a deadline themselves: they call [`stamp`] with the class and the
//! anchor time, and store the returned [`Stamp`] on the item. Readers call [`is_past`].
//!
//! DynamoDB TTL is lazy (typically within two days, and expired items are still returned by reads), so a
//! TTL attribute is only the backstop: reads filter on it and the retention sweep enforces the hard
//! deadlines.

use chrono::{DateTime, Duration, Months, Utc};
use serde::{Deserialize, Serialize};

/// A kind of stored data with its own retention window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// WhatsApp messages of one conversation (merchant x person).
    WhatsAppTranscript,
    /// One consent-ledger entry (opt-in or opt-out evidence).
    ConsentLedgerEntry,
    /// Order metadata kept for WhatsApp order messages, on behalf of a merchant.
    WhatsAppOrderMetadata,
    /// Invoicing, tax and payment records of an order (amounts, ids, payment status).
    InvoiceTaxRecord,
    /// Website and request logs.
    RequestLog,
    /// Backups.
    Backup,
    /// Personal data of a marketplace order (buyer name, address, phone, email).
    MarketplaceOrderPii,
    /// Non-personal marketplace order data (Bol.com, eBay), anonymised at the end of its window.
    MarketplaceOrderData,
    /// Amazon order data, anonymised sooner than other marketplaces'.
    AmazonOrderData,
    /// A data-subject request: the window is the time we have to answer it.
    DataSubjectRequest,
    /// The record of a data-subject request, kept as evidence that it was handled.
    DataSubjectRequestRecord,
    /// Idempotency and de-duplication records: no personal data, kept longer than any platform retries.
    IdempotencyRecord,
    /// One entry of the audit log: no personal data (subjects by keyed hash), kept as evidence.
    AuditLogEntry,
    /// A data-subject export written to S3: only as long as the person needs to download it.
    DataExport,
    /// A forwarded event's delivery to a merchant's endpoint and its attempts (time, status, latency,
    /// never the body): no personal data.
    WebhookDeliveryRecord,
    /// Ad performance: campaign-level daily aggregates from Meta, their retailer mapping and rollups. No
    /// personal data.
    AdPerformanceRecord,
}

/// How long a class is kept once its anchor is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Days(u32),
    Months(u32),
    Years(u32),
}

/// The moment a window counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// When the item was written.
    Created,
    /// The last interaction of the conversation: moves forward with every message.
    LastInteraction,
    /// When the consent was withdrawn (a live consent has no deadline).
    Withdrawal,
    /// When the order shipped.
    Shipment,
    /// When the merchant's contract ended (a live contract has no deadline).
    ContractEnd,
    /// When the last payment event of the order happened.
    LastPaymentEvent,
    /// When the request was received.
    Received,
}

/// What happens to the data when its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Delete,
    /// Personal fields are removed; the rest is kept.
    Anonymise,
    /// Not a deletion: the deadline by which the request must be answered.
    AnswerBy,
}

/// Who enforces the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// DynamoDB TTL attribute, reads that filter on it, and the retention sweep as the hard backstop.
    DynamoTtlAndSweep,
    /// DynamoDB TTL alone: for records with no personal data, where TTL's lag (up to a few days) breaks
    /// no promise.
    DynamoTtl,
    /// Only the sweep can do it (anonymisation, or a deadline that is not a deletion).
    Sweep,
    /// An S3 lifecycle rule on the bucket that holds the data.
    S3Lifecycle,
    /// CloudWatch Logs retention on the log group.
    LogRetention,
}

/// One row of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub class: DataClass,
    pub window: Window,
    pub anchor: Anchor,
    pub action: Action,
    pub mechanism: Mechanism,
    /// Where the promise is made: the seed policy file and its section.
    pub source: &'static str,
}

/// The retention policy. Where two policies promise different windows for the same data, the stricter one
/// is kept (backups: 35 days in 001, 30 days in 002, so 30).
pub const POLICY: &[Rule] = &[
    Rule {
        class: DataClass::WhatsAppTranscript,
        window: Window::Days(90),
        anchor: Anchor::LastInteraction,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtlAndSweep,
        source: "001: conversation transcripts, 90 days from the last interaction",
    },
    Rule {
        class: DataClass::ConsentLedgerEntry,
        window: Window::Months(24),
        anchor: Anchor::Withdrawal,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtlAndSweep,
        source: "001: consent records, life of the consent plus 24 months after withdrawal",
    },
    Rule {
        class: DataClass::WhatsAppOrderMetadata,
        window: Window::Days(0),
        anchor: Anchor::ContractEnd,
        action: Action::Delete,
        mechanism: Mechanism::Sweep,
        source: "001: order metadata, for the duration of the merchant's contract",
    },
    Rule {
        class: DataClass::InvoiceTaxRecord,
        window: Window::Years(6),
        anchor: Anchor::LastPaymentEvent,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtlAndSweep,
        source: "001: invoicing and tax records, 6 years",
    },
    Rule {
        class: DataClass::RequestLog,
        window: Window::Days(30),
        anchor: Anchor::Created,
        action: Action::Delete,
        mechanism: Mechanism::LogRetention,
        source: "001: website and request logs, 30 days",
    },
    Rule {
        class: DataClass::Backup,
        window: Window::Days(30),
        anchor: Anchor::Created,
        action: Action::Delete,
        mechanism: Mechanism::S3Lifecycle,
        source: "001: backups within 35 days; 002: backups within 30 days",
    },
    Rule {
        class: DataClass::MarketplaceOrderPii,
        // One day short of the promise: the sweep runs daily, so an item due at its deadline is gone
        // within a day of it, and so no later than 30 days after shipment. The orders table keeps no
        // point-in-time copy (Amazon's Data Protection Policy: no copy of buyer data past 30 days after
        // shipment); the marketplaces are the record, and a re-poll from a watermark restores it.
        window: Window::Days(29),
        anchor: Anchor::Shipment,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtlAndSweep,
        source: "002: buyer personal data deleted no later than 30 days after shipment (29 days + a daily sweep)",
    },
    Rule {
        class: DataClass::MarketplaceOrderData,
        window: Window::Days(90),
        anchor: Anchor::Created,
        action: Action::Anonymise,
        mechanism: Mechanism::Sweep,
        source: "002: order data anonymised after 90 days",
    },
    Rule {
        class: DataClass::AmazonOrderData,
        window: Window::Days(30),
        anchor: Anchor::Created,
        action: Action::Anonymise,
        mechanism: Mechanism::Sweep,
        source: "002: Amazon order data anonymised after 30 days",
    },
    Rule {
        class: DataClass::DataSubjectRequest,
        window: Window::Days(30),
        anchor: Anchor::Received,
        action: Action::AnswerBy,
        mechanism: Mechanism::Sweep,
        source: "001: data-subject requests answered within 30 days",
    },
    Rule {
        class: DataClass::DataSubjectRequestRecord,
        window: Window::Months(24),
        anchor: Anchor::Received,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtlAndSweep,
        source: "design (not in the seeds, to confirm with the policy owner): evidence of handling, \
                 24 months like consent evidence",
    },
    Rule {
        class: DataClass::IdempotencyRecord,
        window: Window::Days(19),
        anchor: Anchor::Created,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtlAndSweep,
        source: "design: longer than the longest platform retry (Stripe 3 days, Meta 7 days) and than a \
                 message can wait in a queue and then its DLQ (4 + 14 days), so a redelivery or a redrive \
                 is still recognised (inbox records, audit keys, claims)",
    },
    Rule {
        class: DataClass::AuditLogEntry,
        window: Window::Years(6),
        anchor: Anchor::Created,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtlAndSweep,
        source: "design (to confirm with the policy owner): as long as the longest record it accounts for \
                 (tax records, 6 years)",
    },
    Rule {
        class: DataClass::DataExport,
        window: Window::Days(3),
        anchor: Anchor::Created,
        action: Action::Delete,
        mechanism: Mechanism::S3Lifecycle,
        source: "issue 5: data exports expire after a few days (S3 lifecycle, and the sweep to the hour)",
    },
    Rule {
        class: DataClass::WebhookDeliveryRecord,
        window: Window::Days(30),
        anchor: Anchor::Created,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtl,
        source: "issue 12 (design, like Svix's retention): a delivery stays visible and replayable 30 days \
                 after its event or its last replay; attempts 30 days. No personal data: the body is never \
                 stored, a replay renders it from the data as it is then",
    },
    Rule {
        class: DataClass::AdPerformanceRecord,
        window: Window::Months(37),
        anchor: Anchor::Created,
        action: Action::Delete,
        mechanism: Mechanism::DynamoTtl,
        source: "issue 13 (design): as long as Meta itself answers insights (37 months); aggregates only, \
                 no personal data",
    },
];

/// Number of shards a deadline day is spread over in the due-date index, so one day's writes do not all
/// land on one GSI partition.
pub const DUE_SHARDS: u32 = 4;

/// The rule for a class. Every class has exactly one row (checked by a unit test).
pub fn rule(class: DataClass) -> &'static Rule {
    POLICY.iter().find(|r| r.class == class).expect("every DataClass has a row in POLICY")
}

/// The deadline of an item of `class` whose anchor was reached at `anchor_at`.
/// `None` only if the date arithmetic overflows (years beyond chrono's range).
pub fn deadline(class: DataClass, anchor_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match rule(class).window {
        Window::Days(d) => anchor_at.checked_add_signed(Duration::days(i64::from(d))),
        Window::Months(m) => anchor_at.checked_add_months(Months::new(m)),
        Window::Years(y) => anchor_at.checked_add_months(Months::new(y.checked_mul(12)?)),
    }
}

/// What an item stores about its own deadline: the TTL attribute and the keys of the sparse due-date index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// DynamoDB TTL attribute: epoch seconds.
    pub expires_at: i64,
    /// Due-date index partition: the deadline's UTC date and a shard, e.g. `2032-11-24#3`.
    pub due_bucket: String,
    pub due_action: Action,
}

/// The stamp for an item of `class` anchored at `anchor_at`; `shard_key` (the item's key) picks the shard.
pub fn stamp(class: DataClass, anchor_at: DateTime<Utc>, shard_key: &str) -> Option<Stamp> {
    let due = deadline(class, anchor_at)?;
    Some(Stamp { expires_at: due.timestamp(), due_bucket: due_bucket(due, shard_key), due_action: rule(class).action })
}

/// The due-date index partition of an item due at `due`: its UTC date and the shard `shard_key` picks.
pub fn due_bucket(due: DateTime<Utc>, shard_key: &str) -> String {
    format!("{}#{}", due.format("%Y-%m-%d"), shard_of(shard_key))
}

/// The stamp of a marketplace order (without its buyer): anonymised at the end of its data window, 90 days
/// after the order was placed (Amazon 30). Anonymising removes its link to the buyer (`subject`).
pub fn marketplace_order_stamp(amazon: bool, created: DateTime<Utc>, shard_key: &str) -> Option<Stamp> {
    let class = if amazon { DataClass::AmazonOrderData } else { DataClass::MarketplaceOrderData };
    let due = deadline(class, created)?;
    Some(Stamp { expires_at: due.timestamp(), due_bucket: due_bucket(due, shard_key), due_action: Action::Anonymise })
}

/// The stamp of an order's buyer data (its own item): deleted at the earlier of "after shipment"
/// (`MarketplaceOrderPii`) and the order's own anonymisation. An order that never ships (cancelled,
/// lost, stuck) thus still loses its buyer data at the anonymisation, 90 days after it was placed
/// (Amazon 30): the buyer data is there to ship the order, and no order is still shipped that late.
pub fn marketplace_buyer_stamp(
    amazon: bool, created: DateTime<Utc>, shipped: Option<DateTime<Utc>>, shard_key: &str,
) -> Option<Stamp> {
    let order = marketplace_order_stamp(amazon, created, shard_key)?;
    let mut due = DateTime::from_timestamp(order.expires_at, 0)?;
    if let Some(shipped) = shipped {
        due = due.min(deadline(DataClass::MarketplaceOrderPii, shipped)?);
    }
    Some(Stamp { expires_at: due.timestamp(), due_bucket: due_bucket(due, shard_key), due_action: Action::Delete })
}

/// True when an item whose deadline is `expires_at` (epoch seconds) must no longer be served at `now`.
pub fn is_past(expires_at: i64, now: DateTime<Utc>) -> bool {
    expires_at <= now.timestamp()
}

/// A stable shard in `0..DUE_SHARDS` (FNV-1a: stable across builds and platforms, unlike `DefaultHasher`).
fn shard_of(key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % DUE_SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    const ALL: &[DataClass] = &[
        DataClass::WhatsAppTranscript,
        DataClass::ConsentLedgerEntry,
        DataClass::WhatsAppOrderMetadata,
        DataClass::InvoiceTaxRecord,
        DataClass::RequestLog,
        DataClass::Backup,
        DataClass::MarketplaceOrderPii,
        DataClass::MarketplaceOrderData,
        DataClass::AmazonOrderData,
        DataClass::DataSubjectRequest,
        DataClass::DataSubjectRequestRecord,
        DataClass::IdempotencyRecord,
        DataClass::AuditLogEntry,
        DataClass::DataExport,
        DataClass::WebhookDeliveryRecord,
        DataClass::AdPerformanceRecord,
    ];

    #[test]
    fn every_class_has_exactly_one_rule() {
        for class in ALL {
            assert_eq!(POLICY.iter().filter(|r| r.class == *class).count(), 1, "{class:?}");
        }
        assert_eq!(POLICY.len(), ALL.len());
    }

    #[test]
    fn transcripts_are_due_ninety_days_after_the_last_interaction() {
        let last = at(2026, 1, 10);
        assert_eq!(deadline(DataClass::WhatsAppTranscript, last), Some(at(2026, 4, 10)));
    }

    #[test]
    fn consent_evidence_is_kept_twenty_four_calendar_months_after_withdrawal() {
        assert_eq!(deadline(DataClass::ConsentLedgerEntry, at(2026, 2, 28)), Some(at(2028, 2, 28)));
        // Leap day: chrono clamps to the last day of the month.
        assert_eq!(deadline(DataClass::ConsentLedgerEntry, at(2028, 2, 29)), Some(at(2030, 2, 28)));
    }

    #[test]
    fn order_metadata_is_due_when_the_merchant_contract_ends() {
        let end = at(2027, 6, 30);
        assert_eq!(deadline(DataClass::WhatsAppOrderMetadata, end), Some(end));
    }

    #[test]
    fn tax_records_are_kept_six_years() {
        assert_eq!(deadline(DataClass::InvoiceTaxRecord, at(2026, 11, 24)), Some(at(2032, 11, 24)));
    }

    #[test]
    fn logs_and_backups_age_out_within_thirty_days() {
        assert_eq!(deadline(DataClass::RequestLog, at(2026, 1, 1)), Some(at(2026, 1, 31)));
        assert_eq!(deadline(DataClass::Backup, at(2026, 1, 1)), Some(at(2026, 1, 31)));
        assert_eq!(rule(DataClass::Backup).mechanism, Mechanism::S3Lifecycle);
    }

    #[test]
    fn marketplace_pii_is_deleted_thirty_days_after_shipment() {
        let r = rule(DataClass::MarketplaceOrderPii);
        assert_eq!((r.anchor, r.action), (Anchor::Shipment, Action::Delete));
        let due = deadline(DataClass::MarketplaceOrderPii, at(2026, 3, 1)).unwrap();
        assert_eq!(due, at(2026, 3, 30));
        assert!(due + Duration::days(1) <= at(2026, 3, 31), "a daily sweep still meets the 30 days");
    }

    #[test]
    fn marketplace_order_data_is_anonymised_not_deleted_and_amazon_sooner() {
        assert_eq!(rule(DataClass::MarketplaceOrderData).action, Action::Anonymise);
        assert_eq!(rule(DataClass::AmazonOrderData).action, Action::Anonymise);
        assert_eq!(deadline(DataClass::MarketplaceOrderData, at(2026, 1, 1)), Some(at(2026, 4, 1)));
        assert_eq!(deadline(DataClass::AmazonOrderData, at(2026, 1, 1)), Some(at(2026, 1, 31)));
    }

    #[test]
    fn data_subject_requests_must_be_answered_within_thirty_days() {
        assert_eq!(rule(DataClass::DataSubjectRequest).action, Action::AnswerBy);
        assert_eq!(deadline(DataClass::DataSubjectRequest, at(2026, 5, 1)), Some(at(2026, 5, 31)));
    }

    #[test]
    fn idempotency_records_outlive_every_platform_retry_window() {
        let created = at(2026, 1, 1);
        let due = deadline(DataClass::IdempotencyRecord, created).unwrap();
        assert!(due - created > Duration::days(7), "Meta retries for up to 7 days");
    }

    #[test]
    fn a_stamp_carries_epoch_seconds_and_a_sharded_due_day() {
        let s = stamp(DataClass::WhatsAppTranscript, at(2026, 1, 10), "conv#1").unwrap();
        assert_eq!(s.expires_at, at(2026, 4, 10).timestamp());
        assert!(s.expires_at < 10_000_000_000, "seconds, not milliseconds");
        let (day, shard) = s.due_bucket.split_once('#').unwrap();
        assert_eq!(day, "2026-04-10");
        assert!(shard.parse::<u32>().unwrap() < DUE_SHARDS);
        assert_eq!(s, stamp(DataClass::WhatsAppTranscript, at(2026, 1, 10), "conv#1").unwrap());
    }

    #[test]
    fn a_buyer_is_deleted_at_the_earlier_of_shipment_and_the_orders_anonymisation() {
        let created = at(2026, 1, 1);
        let order = marketplace_order_stamp(false, created, "o").unwrap();
        assert_eq!((order.expires_at, order.due_action), (at(2026, 4, 1).timestamp(), Action::Anonymise));
        assert_eq!(marketplace_order_stamp(true, created, "o").unwrap().expires_at, at(2026, 1, 31).timestamp());
        let late_ship = at(2026, 3, 15);
        let s = marketplace_buyer_stamp(false, created, Some(late_ship), "o").unwrap();
        assert_eq!(s.expires_at, at(2026, 4, 1).timestamp(), "the order's anonymisation comes first");
        assert_eq!(s.due_action, Action::Delete);
        let early_ship = at(2026, 1, 3);
        let s = marketplace_buyer_stamp(false, created, Some(early_ship), "o").unwrap();
        assert_eq!(s.expires_at, at(2026, 2, 1).timestamp(), "29 days after shipment comes first");
        let s = marketplace_buyer_stamp(true, created, None, "o").unwrap();
        assert_eq!(s.expires_at, at(2026, 1, 31).timestamp(), "never shipped: bounded by the order");
    }

    #[test]
    fn an_item_is_past_its_deadline_from_the_deadline_second_on() {
        let due = at(2026, 4, 10);
        assert!(!is_past(due.timestamp(), due - Duration::seconds(1)));
        assert!(is_past(due.timestamp(), due));
    }
}
