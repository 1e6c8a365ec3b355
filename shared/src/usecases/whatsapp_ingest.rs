//! Ingest one WhatsApp webhook delivery (POST): verify, walk every item, de-duplicate, make opt-outs take
//! effect, hand the rest to the messaging queue.
//!
//! Meta re-delivers a whole batch for days when it does not get a 2xx, so every item is idempotent on
//! its own (a record per wamid, per receipt, per preference change) and any failure answers 5xx: the
//! retry skips what was already done. An opt-out keyword is written to the consent ledger before the
//! webhook answers, so no marketing message can go out after the person said STOP.

use chrono::{DateTime, Duration, TimeZone, Utc};
use tracing::{info, warn};

use crate::domain::envelope::{Envelope, Message};
use crate::domain::retention::{self, DataClass};
use crate::domain::subject::{IdentifierKind, SubjectHasher};
use crate::domain::whatsapp::consent::Category;
use crate::domain::whatsapp::keyword::{self, Keyword};
use crate::domain::whatsapp::signature::{HubSignatureError, HubVerifier};
use crate::domain::whatsapp::webhook::{self, Item, PayloadError, Person};
use crate::ports::TemplateCatalog;
use crate::ports::{
    Clock, ConsentAction, ConsentEntry, ConsentLedger, IdempotencyStore, InfraError, MerchantDirectory, Metrics, Queue,
    Recorded,
};

pub const SOURCE: &str = "whatsapp-webhook";

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
}

impl Message for Receipt {
    const KIND: &'static str = "whatsapp.receipt";
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone)]
pub struct WhatsAppSettings {
    pub max_body_bytes: usize,
}

pub struct WhatsAppIngest<'a, C, I, Q, L, D, M> {
    pub verifier: &'a HubVerifier,
    pub hasher: &'a SubjectHasher,
    pub clock: &'a C,
    pub idempotency: &'a I,
    pub queue: &'a Q,
    pub ledger: &'a L,
    pub merchants: &'a D,
    pub metrics: &'a M,
    pub settings: &'a WhatsAppSettings,
}

/// Counts of what one delivery contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub messages: usize,
    pub receipts: usize,
    pub preferences: usize,
    pub opt_outs: usize,
    pub duplicates: usize,
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

impl<C, I, Q, L, D, M> WhatsAppIngest<'_, C, I, Q, L, D, M>
where
    C: Clock,
    I: IdempotencyStore,
    Q: Queue,
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
                Item::Message {
                    phone_number_id,
                    wamid,
                    from,
                    timestamp,
                    kind,
                    text,
                } => {
                    let Some(merchant) = self.merchant(&phone_number_id, &mut summary).await? else {
                        continue;
                    };
                    let key = format!("{SOURCE}#msg#{wamid}");
                    if !self.first_time(&key, now, &mut summary).await? {
                        continue;
                    }
                    let subjects = self.subjects(&from);
                    let kw = text.as_deref().and_then(keyword::classify);
                    let sent_at = at(timestamp, now);
                    let result = async {
                        if kw == Some(Keyword::OptOut) {
                            for subject in &subjects {
                                let entry = ConsentEntry {
                                    id: wamid.clone(),
                                    subject: subject.clone(),
                                    merchant: None,
                                    action: ConsentAction::OptOut,
                                    source: format!("keyword:{merchant}"),
                                    at: sent_at,
                                };
                                self.ledger.record(&entry).await?;
                            }
                            summary.opt_outs += 1;
                            info!(wamid = %wamid, merchant = %merchant, "opt-out keyword recorded for every merchant");
                        }
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
                        self.queue
                            .send(&Envelope::new(wamid.clone(), now, trace_id.to_owned(), message).encode())
                            .await
                    }
                    .await;
                    self.settle(&key, result).await?;
                    summary.messages += 1;
                }
                Item::Status {
                    phone_number_id,
                    wamid,
                    status,
                    timestamp,
                    recipient,
                    error_code,
                } => {
                    let Some(merchant) = self.merchant(&phone_number_id, &mut summary).await? else {
                        continue;
                    };
                    let key = format!("{SOURCE}#status#{wamid}#{status}");
                    if !self.first_time(&key, now, &mut summary).await? {
                        continue;
                    }
                    let receipt = Receipt {
                        merchant,
                        wamid: wamid.clone(),
                        status,
                        error_code,
                        at: at(timestamp, now),
                        subjects: self.subjects(&recipient),
                    };
                    let id = format!("{wamid}#{}", receipt.status);
                    let result = self
                        .queue
                        .send(&Envelope::new(id, now, trace_id.to_owned(), receipt).encode())
                        .await;
                    self.settle(&key, result).await?;
                    summary.receipts += 1;
                }
                Item::MarketingPreference {
                    phone_number_id,
                    person,
                    stop,
                    timestamp,
                } => {
                    let Some(merchant) = self.merchant(&phone_number_id, &mut summary).await? else {
                        continue;
                    };
                    let action = if stop {
                        ConsentAction::MetaStop
                    } else {
                        ConsentAction::MetaResume
                    };
                    for subject in self.subjects(&person) {
                        let entry = ConsentEntry {
                            id: format!(
                                "pref#{phone_number_id}#{timestamp}#{}",
                                if stop { "stop" } else { "resume" }
                            ),
                            subject,
                            merchant: Some(merchant.clone()),
                            action,
                            source: "meta_user_preferences".into(),
                            at: at(timestamp, now),
                        };
                        self.ledger.record(&entry).await?;
                        // For the audit log, written by the messaging worker off the hot path.
                        let id = format!("{}#{}", entry.id, entry.subject);
                        self.queue
                            .send(&Envelope::new(id, now, trace_id.to_owned(), entry).encode())
                            .await?;
                    }
                    summary.preferences += 1;
                }
                Item::TemplateCategory {
                    waba_id,
                    name,
                    language,
                    category,
                } => {
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
                    self.metrics
                        .count("whatsapp_fields_ignored", 1, Some(("Field", &field)));
                }
            }
        }
        info!(
            messages = summary.messages,
            receipts = summary.receipts,
            preferences = summary.preferences,
            duplicates = summary.duplicates,
            unknown_merchant = summary.unknown_merchant,
            other_fields = summary.other_fields,
            "whatsapp delivery handled"
        );
        Ok(summary)
    }

    async fn merchant(&self, phone_number_id: &str, summary: &mut Summary) -> Result<Option<String>, InfraError> {
        let merchant = self.merchants.merchant_for_phone_number(phone_number_id).await?;
        if merchant.is_none() {
            summary.unknown_merchant += 1;
            self.metrics.count("whatsapp_unknown_merchant", 1, None);
            warn!(phone_number_id = %phone_number_id, "no merchant for this business phone number; acknowledged, not processed");
        }
        Ok(merchant)
    }

    async fn first_time(&self, key: &str, now: DateTime<Utc>, summary: &mut Summary) -> Result<bool, InfraError> {
        let expires = retention::deadline(DataClass::IdempotencyRecord, now).unwrap_or(now + Duration::days(8));
        let new = self.idempotency.record_once(key, now, expires).await? == Recorded::New;
        if !new {
            summary.duplicates += 1;
            self.metrics.count("whatsapp_duplicates", 1, None);
        }
        Ok(new)
    }

    /// On failure, releases the item's record so Meta's retry of the batch processes it again.
    async fn settle(&self, key: &str, result: Result<(), InfraError>) -> Result<(), InfraError> {
        if let Err(e) = result {
            if let Err(release) = self.idempotency.release(key).await {
                self.metrics.count("idempotency_release_failed", 1, None);
                tracing::error!(error = %release, "could not release a de-duplication record after a failure");
            }
            return Err(e);
        }
        Ok(())
    }

    fn subjects(&self, person: &Person) -> Vec<String> {
        let by_phone = person
            .phone
            .as_deref()
            .and_then(|p| self.hasher.hash(IdentifierKind::Phone, p));
        let by_bsuid = person
            .bsuid
            .as_deref()
            .and_then(|b| self.hasher.hash(IdentifierKind::Bsuid, b));
        by_phone.into_iter().chain(by_bsuid).collect()
    }
}

fn at(epoch: i64, fallback: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(epoch, 0)
        .single()
        .filter(|t| t.timestamp() > 0)
        .unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    use secrecy::SecretString;

    use super::*;
    use crate::adapters::memory::{
        FixedClock, MemoryIdempotency, MemoryLedger, MemoryMerchants, MemoryMetrics, MemoryQueue,
    };
    use crate::domain::whatsapp::signature::sign_header;

    struct World {
        verifier: HubVerifier,
        hasher: SubjectHasher,
        clock: FixedClock,
        idem: MemoryIdempotency,
        queue: MemoryQueue,
        ledger: MemoryLedger,
        merchants: MemoryMerchants,
        metrics: MemoryMetrics,
        settings: WhatsAppSettings,
    }

    impl World {
        fn new() -> Self {
            Self {
                verifier: HubVerifier::new(&[SecretString::from("app_secret")]).unwrap(),
                hasher: SubjectHasher::new(&SecretString::from("pepper")),
                clock: FixedClock::at(Utc.timestamp_opt(1_800_000_000, 0).unwrap()),
                idem: MemoryIdempotency::default(),
                queue: MemoryQueue::default(),
                ledger: MemoryLedger::default(),
                merchants: MemoryMerchants(HashMap::from([("P1".to_owned(), "m-1".to_owned())])),
                metrics: MemoryMetrics::default(),
                settings: WhatsAppSettings {
                    max_body_bytes: 1 << 20,
                },
            }
        }

        async fn post(&self, body: &str, secret: &str) -> Result<Summary, WhatsAppError> {
            let uc = WhatsAppIngest {
                verifier: &self.verifier,
                hasher: &self.hasher,
                clock: &self.clock,
                idempotency: &self.idem,
                queue: &self.queue,
                ledger: &self.ledger,
                merchants: &self.merchants,
                metrics: &self.metrics,
                settings: &self.settings,
            };
            uc.handle(Some(&sign_header(secret, body.as_bytes())), body.as_bytes(), "t")
                .await
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
        assert_eq!(
            w.queue.sent.lock().unwrap().len(),
            1,
            "the message still reaches the transcript"
        );
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
        assert_eq!(
            w.post(&pref("stop", 1_799_999_000), "app_secret")
                .await
                .unwrap()
                .preferences,
            1
        );
        w.post(&pref("resume", 1_799_999_500), "app_secret").await.unwrap();
        let subject = w.hasher.hash(IdentifierKind::Phone, "31612345678").unwrap();
        let entries = w.ledger.entries.lock().unwrap();
        let mut actions: Vec<_> = entries
            .values()
            .filter(|e| e.subject == subject)
            .map(|e| (e.at, e.action))
            .collect();
        actions.sort_by_key(|a| a.0);
        assert_eq!(
            actions.iter().map(|a| a.1).collect::<Vec<_>>(),
            [ConsentAction::MetaStop, ConsentAction::MetaResume]
        );
        assert!(entries
            .values()
            .all(|e| e.merchant.as_deref() == Some("m-1") && e.source == "meta_user_preferences"));
    }

    #[tokio::test]
    async fn a_template_re_classified_by_meta_is_decided_on_its_new_category() {
        let mut w = World::new();
        w.merchants.0.insert("WABA1".into(), "m-1".into());
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"WABA1","changes":[{
            "field":"template_category_update","value":{"message_template_name":"order_update",
            "message_template_language":"en_US","previous_category":"UTILITY","new_category":"MARKETING"}}]}]}"#;
        assert_eq!(w.post(body, "app_secret").await.unwrap().template_updates, 1);
        let c = w
            .ledger
            .categories
            .lock()
            .unwrap()
            .get(&("m-1".to_owned(), "order_update".to_owned()))
            .copied();
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
        assert_eq!(w.queue.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_forged_post_leaves_nothing_and_a_failed_hand_off_is_retried_whole() {
        let w = World::new();
        assert!(matches!(
            w.post(&text("P1", "wamid.4", "STOP"), "wrong").await,
            Err(WhatsAppError::Signature(HubSignatureError::Mismatch))
        ));
        assert!(w.ledger.entries.lock().unwrap().is_empty() && !w.idem.contains("whatsapp-webhook#msg#wamid.4"));
        w.queue.fail.store(true, Ordering::SeqCst);
        assert!(matches!(
            w.post(&text("P1", "wamid.4", "hi"), "app_secret").await,
            Err(WhatsAppError::Unavailable(_))
        ));
        assert!(!w.idem.contains("whatsapp-webhook#msg#wamid.4"));
        w.queue.fail.store(false, Ordering::SeqCst);
        assert_eq!(
            w.post(&text("P1", "wamid.4", "hi"), "app_secret")
                .await
                .unwrap()
                .messages,
            1
        );
    }
}
