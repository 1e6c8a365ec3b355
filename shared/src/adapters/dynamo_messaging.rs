//! The messaging table (`pk`/`sk` strings; one access boundary: consent, conversations, receipts,
//! merchants' WhatsApp numbers).
//!
//! Items written here:
//! - `merchant-phone#<phone_number_id>` / `merchant`: which merchant a business number belongs to.
//! - `subject#<hash>` / `consent#<at>#<entry id>`: an append-only consent-ledger entry (evidence).
//! - `subject#<hash>` / `consent-state`: the subject's current consent (opt-out time, merchants opted in,
//!   merchants whose number Meta's "Stop promotions" applies to).
//!
//! Withdrawal evidence (and the state of an opted-out subject) is kept 24 months after the withdrawal
//! (retention class `ConsentLedgerEntry`); an opt-in has no deadline while it is live.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::aws::infra_error;
use crate::domain::retention::{self, DataClass};
use crate::ports::{ConsentAction, ConsentEntry, ConsentLedger, InfraError, MerchantDirectory};

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The action's name as stored and exported: the same as its serde name.
fn action_name(a: ConsentAction) -> &'static str {
    match a {
        ConsentAction::OptIn => "opt_in",
        ConsentAction::OptOut => "opt_out",
        ConsentAction::MetaStop => "meta_stop",
        ConsentAction::MetaResume => "meta_resume",
    }
}

/// How long a merchant lookup is trusted before it is read again.
const MERCHANT_CACHE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct DynamoMerchants {
    client: Client,
    table: String,
    cache: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl DynamoMerchants {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            cache: Mutex::default(),
        }
    }
}

impl MerchantDirectory for DynamoMerchants {
    async fn merchant_for_phone_number(&self, phone_number_id: &str) -> Result<Option<String>, InfraError> {
        if let Some((m, at)) = self.cache.lock().expect("cache lock").get(phone_number_id) {
            if at.elapsed() < MERCHANT_CACHE {
                return Ok(m.clone());
            }
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("merchant-phone#{phone_number_id}")))
            .key("sk", s("merchant"))
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem", e))?;
        let merchant = out
            .item
            .and_then(|i| i.get("merchant_id").and_then(|v| v.as_s().ok()).cloned());
        self.cache
            .lock()
            .expect("cache lock")
            .insert(phone_number_id.to_owned(), (merchant.clone(), Instant::now()));
        Ok(merchant)
    }
}

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl ConsentLedger for DynamoLedger {
    async fn record(&self, e: &ConsentEntry) -> Result<(), InfraError> {
        let pk = format!("subject#{}", e.subject);
        let merchant = e.merchant.clone().unwrap_or_else(|| "*".to_owned());
        let withdrawal = matches!(e.action, ConsentAction::OptOut | ConsentAction::MetaStop);
        let stamp = withdrawal
            .then(|| retention::stamp(DataClass::ConsentLedgerEntry, e.at, &pk))
            .flatten();

        let mut entry = Put::builder()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s(format!("consent#{}#{}", e.at.to_rfc3339(), e.id)))
            .item("subject", s(&e.subject))
            .item("merchant", s(&merchant))
            .item("action", s(action_name(e.action)))
            .item("source", s(&e.source))
            .item("at", s(e.at.to_rfc3339()))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(st) = &stamp {
            entry = entry
                .item("expires_at", n(st.expires_at))
                .item("due_bucket", s(&st.due_bucket))
                .item("due_action", s("delete"));
        }
        let mut state = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("consent-state"))
            .expression_attribute_values(":subject", s(&e.subject));
        state = match e.action {
            ConsentAction::OptOut => state
                .update_expression("SET subject = :subject, opted_out_at = :at, expires_at = :exp")
                .expression_attribute_values(":at", s(e.at.to_rfc3339())),
            ConsentAction::OptIn => state
                .update_expression("SET subject = :subject ADD opted_in :m")
                .expression_attribute_values(":m", AttributeValue::Ss(vec![merchant.clone()])),
            ConsentAction::MetaStop => state
                .update_expression("SET subject = :subject, expires_at = :exp ADD meta_stopped :m")
                .expression_attribute_values(":m", AttributeValue::Ss(vec![merchant.clone()])),
            ConsentAction::MetaResume => state
                .update_expression("SET subject = :subject DELETE meta_stopped :m")
                .expression_attribute_values(":m", AttributeValue::Ss(vec![merchant.clone()])),
        };
        if let Some(st) = &stamp {
            state = state.expression_attribute_values(":exp", n(st.expires_at));
        }
        let build = |what: &'static str| {
            move |err: aws_sdk_dynamodb::error::BuildError| InfraError {
                service: "dynamodb",
                operation: what,
                retryable: false,
                source: Some(Box::new(err)),
            }
        };
        let res = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(entry.build().map_err(build("Put"))?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .update(state.build().map_err(build("Update"))?)
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // The entry exists: this exact entry was recorded before, with its state change.
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(tc))
                        if tc.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed")
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(infra_error("dynamodb", "TransactWriteItems", err)),
        }
    }
}
