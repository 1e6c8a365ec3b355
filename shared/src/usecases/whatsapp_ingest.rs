//! Ingest one WhatsApp webhook delivery (POST): verify, walk every item, de-duplicate, make opt-outs take
//! effect, hand the rest to the messaging queue.
//!
//! Meta re-delivers a whole batch for days when it does not get a 2xx, so every item is idempotent on
//! its own (a record per wamid, per receipt, per preference change) and any failure answers 5xx: the
//! retry skips what was already done. An opt-out keyword is written to the consent ledger before the
//! webhook answers, so no marketing message can go out after the person said STOP.

use chrono::{DateTime, Duration, TimeZone, Utc};
use tracing::{info, warn};

use crate::domain::envelope::Envelope;
pub use crate::domain::messages::{InboundMessage, Receipt};
use crate::domain::retention::{self, DataClass};
use crate::domain::subject::{IdentifierKind, SubjectHasher};
use crate::domain::whatsapp::consent::Category;
use crate::domain::whatsapp::keyword::{self, Keyword};
use crate::domain::whatsapp::signature::{HubSignatureError, HubVerifier};
use crate::domain::whatsapp::webhook::{self, Item, PayloadError, Person};
use crate::ports::TemplateCatalog;
use crate::ports::{
    Clock, ConsentAction, ConsentEntry, ConsentLedger, Inbox, InfraError, MerchantDirectory, Metrics, Owner, Recorded,
};

pub const SOURCE: &str = "whatsapp-webhook";

#[derive(Debug, Clone)]
pub struct WhatsAppSettings {
    pub max_body_bytes: usize,
}

pub struct WhatsAppIngest<'a, C, I, L, D, M> {
    pub verifier: &'a HubVerifier,
    pub hasher: &'a SubjectHasher,
    pub clock: &'a C,
    pub inbox: &'a I,
    pub ledger: &'a L,
    pub merchants: &'a D,
    pub metrics: &'a M,
    pub settings: &'a WhatsAppSettings,
    /// When the invocation is cut off, if known: no AWS call is started that could outlast it (each is
    /// bounded by `adapters::aws::OPERATION_TIMEOUT`); the delivery answers 503 instead, and Meta's retry
    /// skips what was done.
    pub deadline: Option<DateTime<Utc>>,
}

/// Counts of what one delivery contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub messages: usize,
    pub receipts: usize,
    pub preferences: usize,
    pub opt_outs: usize,
    pub duplicates: usize,
    /// Items dated outside Meta's retry window or in the future: acknowledged, not processed.
    pub stale: usize,
    pub template_updates: usize,
    pub unknown_merchant: usize,
    pub other_fields: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WhatsAppError {
    #[error("body too large")]
    TooLarge,
    #[error(transparent)]
    Signature(#[from] HubSignatureError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Unavailable(#[from] InfraError),
}

impl<C, I, L, D, M> WhatsAppIngest<'_, C, I, L, D, M>
where
    C: Clock,
    I: Inbox,
    L: ConsentLedger + TemplateCatalog,
    D: MerchantDirectory,
    M: Metrics,
{
    pub async fn handle(&self, signature: Option<&str>, body: &[u8], trace_id: &str) -> Result<Summary, WhatsAppError> {
        if body.len() > self.settings.max_body_bytes {
            return Err(WhatsAppError::TooLarge);
        }
        self.verifier.verify(signature, body)?;
        let items = webhook::parse(body)?;
        let now = self.clock.now();
        let mut summary = Summary::default();
        for item in items {
            match item {
                Item::Message { phone_number_id, wamid, from, timestamp, kind, text } => {
                    let Some(merchant) = self.merchant(&phone_number_id, &mut summary).await? else {
                        continue;
                    };
                    let subjects = self.subjects(&from);
                    let kw = text.as_deref().and_then(keyword::classify);
                    let fresh = self.fresh(timestamp, now, &mut summary);
                    // The opt-out is in force before the message counts as seen: a cut-off after this
                    // write is redelivered by Meta, and recording it again changes nothing. A stale STOP
                    // is still recorded (replaying an opt-out is harmless; dropping a late one is not).
                    if kw == Some(Keyword::OptOut) {
                        let at = fresh.unwrap_or_else(|| at_or_now(timestamp, now));
                        for subject in &subjects {
                            let entry = ConsentEntry {
                                id: wamid.clone(),
                                subject: subject.clone(),
                                merchant: None,
                                action: ConsentAction::OptOut,
                                source: format!("keyword:{merchant}"),
                                at,
                            };
                            self.budget()?;
                            self.ledger.record(&entry).await?;
                        }
                    }
                    let Some(sent_at) = fresh else {
                        continue;
                    };
                    let message = InboundMessage {
                        merchant: merchant.clone(),
                        phone_number_id,
                        wamid: wamid.clone(),
                        subjects,
                        phone: from.phone,
                        bsuid: from.bsuid,
                        kind,
                        text,
                        sent_at,
                        keyword: kw.map(|k| match k {
                            Keyword::OptOut => "opt_out".to_owned(),
                            Keyword::DataRequest => "data_request".to_owned(),
                        }),
                    };
                    let key = format!("{SOURCE}#msg#{wamid}");
                    let subject = message.subjects.first().cloned();
                    let owner = Owner { merchant: Some(&merchant), subject: subject.as_deref() };
                    let env = Envelope::new(wamid.clone(), now, trace_id.to_owned(), message);
                    if self.hand_off(&key, &env.encode(), &owner, now, &mut summary).await? {
                        summary.messages += 1;
                        if kw == Some(Keyword::OptOut) {
                            summary.opt_outs += 1;
                            info!(wamid = %crate::telemetry::log_ref(&wamid), merchant = %merchant, "opt-out keyword recorded for every merchant");
                        }
                    }
                }
                Item::Status { phone_number_id, wamid, status, timestamp, recipient, error_code, callback } => {
                    let Some(merchant) = self.merchant(&phone_number_id, &mut summary).await? else {
                        continue;
                    };
                    let Some(at) = self.fresh(timestamp, now, &mut summary) else {
                        continue;
                    };
                    let key = format!("{SOURCE}#status#{wamid}#{status}");
                    let receipt = Receipt {
                        merchant,
                        wamid: wamid.clone(),
                        status,
                        error_code,
                        at,
                        subjects: self.subjects(&recipient),
                        callback,
                    };
                    let id = format!("{wamid}#{}", receipt.status);
                    let (merchant, subject) = (receipt.merchant.clone(), receipt.subjects.first().cloned());
                    let owner = Owner { merchant: Some(&merchant), subject: subject.as_deref() };
                    let env = Envelope::new(id, now, trace_id.to_owned(), receipt);
                    if self.hand_off(&key, &env.encode(), &owner, now, &mut summary).await? {
                        summary.receipts += 1;
                    }
                }
                Item::MarketingPreference { phone_number_id, person, stop, timestamp } => {
                    let Some(merchant) = self.merchant(&phone_number_id, &mut summary).await? else {
                        continue;
                    };
                    // Meta's stop is recorded however late (like a STOP); a stale resume is a replay
                    // that could re-enable marketing, so it is not.
                    let at = match (self.fresh(timestamp, now, &mut summary), stop) {
                        (Some(at), _) => at,
                        (None, true) => at_or_now(timestamp, now),
                        (None, false) => continue,
                    };
                    let action = if stop { ConsentAction::MetaStop } else { ConsentAction::MetaResume };
                    for subject in self.subjects(&person) {
                        let entry = ConsentEntry {
                            id: format!("pref#{phone_number_id}#{timestamp}#{}", if stop { "stop" } else { "resume" }),
                            subject,
                            merchant: Some(merchant.clone()),
                            action,
                            source: "meta_user_preferences".into(),
                            at,
                        };
                        // Idempotent per entry; the audit entry is derived from the ledger's stream.
                        self.budget()?;
                        self.ledger.record(&entry).await?;
                    }
                    summary.preferences += 1;
                }
                Item::TemplateCategory { waba_id, name, language, category } => {
                    self.budget()?;
                    let Some(merchant) = self.merchants.merchant_for_account(&waba_id).await? else {
                        summary.unknown_merchant += 1;
                        self.metrics.count("whatsapp_unknown_merchant", 1, None);
                        continue;
                    };
                    match serde_json::from_value::<Category>(serde_json::Value::String(category.clone())) {
                        Ok(c) => {
                            self.ledger.set_category(&merchant, &name, c).await?;
                            summary.template_updates += 1;
                            info!(merchant = %merchant, template = %name, language = %language, category = %category, "template category updated");
                        }
                        Err(_) => {
                            self.metrics.count("whatsapp_unknown_template_category", 1, None);
                            warn!(template = %name, category = %category, "unknown template category; kept the previous one");
                        }
                    }
                }
                Item::Other { field } => {
                    summary.other_fields += 1;
                    self.metrics.count("whatsapp_fields_ignored", 1, Some(("Field", &field)));
                }
            }
        }
        info!(
            messages = summary.messages,
            receipts = summary.receipts,
            preferences = summary.preferences,
            duplicates = summary.duplicates,
            stale = summary.stale,
            unknown_merchant = summary.unknown_merchant,
            other_fields = summary.other_fields,
            "whatsapp delivery handled"
        );
        Ok(summary)
    }

    /// Refuses to start an AWS call that might not finish before the invocation's deadline.
    fn budget(&self) -> Result<(), InfraError> {
        let bound = Duration::from_std(crate::adapters::aws::OPERATION_TIMEOUT).unwrap_or(Duration::seconds(8));
        match self.deadline {
            Some(d) if self.clock.now() + bound + Duration::milliseconds(500) > d => Err(InfraError {
                service: "lambda",
                operation: "deadline",
                retryable: true,
                source: Some("the next AWS call could outlast the invocation".into()),
            }),
            _ => Ok(()),
        }
    }

    async fn merchant(&self, phone_number_id: &str, summary: &mut Summary) -> Result<Option<String>, InfraError> {
        self.budget()?;
        let merchant = self.merchants.merchant_for_phone_number(phone_number_id).await?;
        if merchant.is_none() {
            summary.unknown_merchant += 1;
            self.metrics.count("whatsapp_unknown_merchant", 1, None);
            warn!(phone_number_id = %phone_number_id, "no merchant for this business phone number; acknowledged, not processed");
        }
        Ok(merchant)
    }

    /// The item's time, if Meta could still be delivering it: within its retry window (7 days) and not
    /// in the future (5 minutes of clock skew allowed). Anything else is a replay, acknowledged and not
    /// processed, so a captured delivery replayed after its de-duplication record expired changes nothing.
    fn fresh(&self, timestamp: i64, now: DateTime<Utc>, summary: &mut Summary) -> Option<DateTime<Utc>> {
        let t = Utc.timestamp_opt(timestamp, 0).single();
        let ok = t.filter(|t| *t > now - Duration::days(META_RETRY_DAYS) && *t <= now + Duration::minutes(5));
        if ok.is_none() {
            summary.stale += 1;
            self.metrics.count("whatsapp_stale_items", 1, None);
        }
        ok
    }

    /// The one write per item: its de-duplication record and its hand-off to the messaging worker.
    /// Returns false for a duplicate.
    async fn hand_off(
        &self, key: &str, body: &str, owner: &Owner<'_>, now: DateTime<Utc>, summary: &mut Summary,
    ) -> Result<bool, InfraError> {
        self.budget()?;
        let expires = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(19));
        let new = self.inbox.hand_off(key, body, owner, now, expires).await? == Recorded::New;
        if !new {
            summary.duplicates += 1;
            self.metrics.count("whatsapp_duplicates", 1, None);
        }
        Ok(new)
    }

    fn subjects(&self, person: &Person) -> Vec<String> {
        let by_phone = person.phone.as_deref().and_then(|p| self.hasher.hash(IdentifierKind::Phone, p));
        let by_bsuid = person.bsuid.as_deref().and_then(|b| self.hasher.hash(IdentifierKind::Bsuid, b));
        by_phone.into_iter().chain(by_bsuid).collect()
    }
}

/// How long Meta keeps retrying a delivery.
const META_RETRY_DAYS: i64 = 7;

/// An item's time, never later than now.
fn at_or_now(epoch: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(epoch, 0).single().filter(|t| *t <= now).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    use secrecy::SecretString;

    use super::*;
    use crate::adapters::memory::{FixedClock, MemoryInbox, MemoryLedger, MemoryMerchants, MemoryMetrics};
    use crate::domain::whatsapp::signature::sign_header;

    struct World {
        verifier: HubVerifier,
        hasher: SubjectHasher,
        clock: FixedClock,
        inbox: MemoryInbox,
        ledger: MemoryLedger,
        merchants: MemoryMerchants,
        metrics: MemoryMetrics,
        settings: WhatsAppSettings,
        deadline: Option<DateTime<Utc>>,
    }

    impl World {
        fn new() -> Self {
            Self {
                verifier: HubVerifier::new(&[SecretString::from("app_secret")]).unwrap(),
                hasher: SubjectHasher::new(&SecretString::from("pepper")),
                clock: FixedClock::at(Utc.timestamp_opt(1_800_000_000, 0).unwrap()),
                inbox: MemoryInbox::default(),
                ledger: MemoryLedger::default(),
                merchants: MemoryMerchants(HashMap::from([("P1".to_owned(), "m-1".to_owned())])),
                metrics: MemoryMetrics::default(),
                settings: WhatsAppSettings { max_body_bytes: 1 << 20 },
                deadline: None,
            }
        }

        async fn post(&self, body: &str, secret: &str) -> Result<Summary, WhatsAppError> {
            let uc = WhatsAppIngest {
                verifier: &self.verifier,
                hasher: &self.hasher,
                clock: &self.clock,
                inbox: &self.inbox,
                ledger: &self.ledger,
                merchants: &self.merchants,
                metrics: &self.metrics,
                settings: &self.settings,
                deadline: self.deadline,
            };
            uc.handle(Some(&sign_header(secret, body.as_bytes())), body.as_bytes(), "t").await
        }
    }

    fn text(pnid: &str, wamid: &str, body: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":
            {{"metadata":{{"phone_number_id":"{pnid}"}},"messages":[{{"from":"31612345678","id":"{wamid}",
            "timestamp":"1799999990","type":"text","text":{{"body":"{body}"}}}}]}}}}]}}]}}"#
        )
    }

    #[tokio::test]
    async fn stop_is_in_the_ledger_for_every_merchant_before_the_webhook_answers() {
        let w = World::new();
        let s = w.post(&text("P1", "wamid.1", " Stop! "), "app_secret").await.unwrap();
        assert_eq!((s.messages, s.opt_outs), (1, 1));
        let subject = w.hasher.hash(IdentifierKind::Phone, "+31612345678").unwrap();
        assert!(w.ledger.opted_out(&subject));
        let entry = w.ledger.entries.lock().unwrap().values().next().unwrap().clone();
        assert_eq!(entry.merchant, None, "every merchant");
        assert_eq!(w.inbox.bodies().len(), 1, "the message still reaches the transcript");
    }

    #[tokio::test]
    async fn metas_stop_and_resume_promotions_feed_the_same_ledger_for_that_merchant() {
        let w = World::new();
        let pref = |value: &str, ts: u64| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"user_preferences",
                "value":{{"messaging_product":"whatsapp","metadata":{{"phone_number_id":"P1"}},"user_preferences":[
                {{"wa_id":"31612345678","detail":"User requested to stop marketing messages","category":"marketing_messages",
                "value":"{value}","timestamp":{ts}}}]}}}}]}}]}}"#
            )
        };
        assert_eq!(w.post(&pref("stop", 1_799_999_000), "app_secret").await.unwrap().preferences, 1);
        w.post(&pref("resume", 1_799_999_500), "app_secret").await.unwrap();
        let subject = w.hasher.hash(IdentifierKind::Phone, "31612345678").unwrap();
        let entries = w.ledger.entries.lock().unwrap();
        let mut actions: Vec<_> = entries.values().filter(|e| e.subject == subject).map(|e| (e.at, e.action)).collect();
        actions.sort_by_key(|a| a.0);
        assert_eq!(
            actions.iter().map(|a| a.1).collect::<Vec<_>>(),
            [ConsentAction::MetaStop, ConsentAction::MetaResume]
        );
        assert!(entries.values().all(|e| e.merchant.as_deref() == Some("m-1") && e.source == "meta_user_preferences"));
    }

    #[tokio::test]
    async fn a_template_re_classified_by_meta_is_decided_on_its_new_category() {
        let mut w = World::new();
        w.merchants.0.insert("WABA1".into(), "m-1".into());
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"WABA1","changes":[{
            "field":"template_category_update","value":{"message_template_name":"order_update",
            "message_template_language":"en_US","previous_category":"UTILITY","new_category":"MARKETING"}}]}]}"#;
        assert_eq!(w.post(body, "app_secret").await.unwrap().template_updates, 1);
        let c = w.ledger.categories.lock().unwrap().get(&("m-1".to_owned(), "order_update".to_owned())).copied();
        assert_eq!(c, Some(Category::Marketing));
    }

    #[tokio::test]
    async fn a_redelivered_batch_is_processed_once_and_unknown_merchants_are_counted() {
        let w = World::new();
        w.post(&text("P1", "wamid.2", "hello"), "app_secret").await.unwrap();
        let again = w.post(&text("P1", "wamid.2", "hello"), "app_secret").await.unwrap();
        assert_eq!((again.messages, again.duplicates), (0, 1));
        let unknown = w.post(&text("P9", "wamid.3", "hello"), "app_secret").await.unwrap();
        assert_eq!(unknown.unknown_merchant, 1);
        assert_eq!(w.metrics.get("whatsapp_unknown_merchant"), 1);
        assert_eq!(w.inbox.bodies().len(), 1);
    }

    #[tokio::test]
    async fn a_forged_post_leaves_nothing_and_a_failed_hand_off_is_retried_whole() {
        let w = World::new();
        assert!(matches!(
            w.post(&text("P1", "wamid.4", "STOP"), "wrong").await,
            Err(WhatsAppError::Signature(HubSignatureError::Mismatch))
        ));
        assert!(w.ledger.entries.lock().unwrap().is_empty() && w.inbox.records.lock().unwrap().is_empty());
        w.inbox.fail.store(true, Ordering::SeqCst);
        assert!(matches!(w.post(&text("P1", "wamid.4", "hi"), "app_secret").await, Err(WhatsAppError::Unavailable(_))));
        assert!(w.inbox.records.lock().unwrap().is_empty());
        w.inbox.fail.store(false, Ordering::SeqCst);
        assert_eq!(w.post(&text("P1", "wamid.4", "hi"), "app_secret").await.unwrap().messages, 1);
    }

    /// A STOP is two writes (the ledger, then the hand-off). Cut off before or after either, Meta
    /// redelivers: the STOP ends in the ledger, the message is handed on exactly once.
    #[tokio::test]
    async fn a_stop_cut_off_at_any_step_ends_in_the_ledger_and_is_handed_on_once() {
        for at in 1..=2 {
            for after in [false, true] {
                let mut w = World::new();
                let cut = std::sync::Arc::new(crate::adapters::memory::CutPlan::default());
                w.inbox.cut = cut.clone();
                w.ledger.cut = cut.clone();
                cut.arm(at, after);
                let body = text("P1", "wamid.cut", "STOP");
                let first =
                    tokio::time::timeout(std::time::Duration::from_millis(50), w.post(&body, "app_secret")).await;
                assert!(first.is_err(), "cut at write {at} (after: {after}): no answer");
                cut.arm(0, false);
                w.post(&body, "app_secret").await.unwrap();
                let subject = w.hasher.hash(IdentifierKind::Phone, "+31612345678").unwrap();
                assert!(w.ledger.opted_out(&subject), "cut at {at} (after: {after})");
                assert_eq!(w.inbox.bodies().len(), 1, "cut at {at} (after: {after})");
                // And once more, as Meta may: nothing changes.
                w.post(&body, "app_secret").await.unwrap();
                assert_eq!((w.inbox.bodies().len(), w.ledger.entries.lock().unwrap().len()), (1, 1));
            }
        }
    }

    #[tokio::test]
    async fn items_older_than_metas_retry_window_or_from_the_future_are_acknowledged_not_processed() {
        let w = World::new();
        let dated = |wamid: &str, ts: i64, body: &str| text("P1", wamid, body).replace("1799999990", &ts.to_string());
        let old = w.post(&dated("wamid.old", 1_800_000_000 - 8 * 86_400, "hello"), "app_secret").await.unwrap();
        let future = w.post(&dated("wamid.future", 1_800_000_000 + 3_600, "hello"), "app_secret").await.unwrap();
        assert_eq!((old.stale, future.stale, old.messages + future.messages), (1, 1, 0));
        assert!(w.ledger.entries.lock().unwrap().is_empty() && w.inbox.bodies().is_empty());
        // A late STOP still takes effect (it cannot hurt), without being processed as a message.
        let late = w.post(&dated("wamid.late", 1_800_000_000 - 8 * 86_400, "STOP"), "app_secret").await.unwrap();
        assert_eq!((late.stale, late.messages), (1, 0));
        let subject = w.hasher.hash(IdentifierKind::Phone, "+31612345678").unwrap();
        assert!(w.ledger.opted_out(&subject) && w.inbox.bodies().is_empty());
        let recent = w.post(&dated("wamid.recent", 1_800_000_000 - 6 * 86_400, "hello"), "app_secret").await.unwrap();
        assert_eq!(recent.messages, 1, "inside the window it is processed");
    }

    #[tokio::test]
    async fn no_aws_call_starts_that_could_outlast_the_invocation() {
        let mut w = World::new();
        w.deadline = Some(w.clock.now() + Duration::seconds(5));
        assert!(matches!(
            w.post(&text("P1", "wamid.late", "hi"), "app_secret").await,
            Err(WhatsAppError::Unavailable(e)) if e.operation == "deadline"
        ));
        assert!(w.inbox.records.lock().unwrap().is_empty(), "nothing started, nothing half done");
        w.deadline = Some(w.clock.now() + Duration::seconds(10));
        assert_eq!(w.post(&text("P1", "wamid.late", "hi"), "app_secret").await.unwrap().messages, 1);
    }
}
