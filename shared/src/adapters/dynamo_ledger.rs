//! The consent ledger in the messaging table:
//! - `subject#<hash>` / `consent#<at>#<entry id>`: an append-only consent-ledger entry (evidence).
//! - `subject#<hash>` / `consent-state`: the subject's current consent (opt-out time, merchants opted in,
//!   merchants whose number Meta's "Stop promotions" applies to).
//! - `template#<merchant>#<name>` / `category`: a message template's category, as Meta last said.
//!
//! Withdrawal evidence (and the state of an opted-out subject) is kept 24 months after the withdrawal
//! (retention class `ConsentLedgerEntry`); an opt-in has no deadline while it is live.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::aws::{infra_error, is_condition_failed};
use super::dynamo_attrs::{n, put, query, s, text, update};
use crate::domain::retention::{self, DataClass};
use crate::ports::{ConsentAction, ConsentEntry, ConsentLedger, InfraError};

/// The action's name as stored and exported: the same as its serde name.
fn action_name(a: ConsentAction) -> &'static str {
    match a {
        ConsentAction::OptIn => "opt_in",
        ConsentAction::OptOut => "opt_out",
        ConsentAction::MetaStop => "meta_stop",
        ConsentAction::MetaResume => "meta_resume",
    }
}

/// The consent state's per-merchant opt-in time attribute: `opted_in_at#<merchant>`.
pub(super) const OPTIN_AT: &str = "opted_in_at#";

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl ConsentLedger for DynamoLedger {
    async fn record(&self, e: &ConsentEntry) -> Result<(), InfraError> {
        let pk = format!("subject#{}", e.subject);
        let merchant = e.merchant.clone().unwrap_or_else(|| "*".to_owned());
        let withdrawal = matches!(e.action, ConsentAction::OptOut | ConsentAction::MetaStop);
        let stamp = withdrawal.then(|| retention::stamp(DataClass::ConsentLedgerEntry, e.at, &pk)).flatten();

        let mut entry = Put::builder()
            .table_name(&self.table)
            .item("pk", s(&pk))
            // Keyed by the entry's id alone: the same opt-in sent again (with another or no `at`) is the
            // same entry, recorded once.
            .item("sk", s(format!("consent#{}", e.id)))
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
            // In force with the entry; its time (and the state's deadline) only ever move forward, in
            // the step below, so a STOP delivered late cannot take an opt-in given since back.
            ConsentAction::OptOut => state
                .update_expression("SET subject = :subject, opted_out = :t")
                .expression_attribute_values(":t", AttributeValue::Bool(true)),
            // When, per merchant: an opt-in given after an opt-out restores marketing from that merchant.
            ConsentAction::OptIn => state
                .update_expression("SET subject = :subject, #optin_at = :at ADD opted_in :m")
                .expression_attribute_names("#optin_at", format!("{OPTIN_AT}{merchant}"))
                .expression_attribute_values(":at", s(e.at.to_rfc3339()))
                .expression_attribute_values(":m", AttributeValue::Ss(vec![merchant.clone()])),
            ConsentAction::MetaStop => state
                .update_expression(
                    "SET subject = :subject, expires_at = :exp, due_bucket = :b, due_action = :a ADD meta_stopped :m",
                )
                .expression_attribute_values(":m", AttributeValue::Ss(vec![merchant.clone()])),
            ConsentAction::MetaResume => state
                .update_expression("SET subject = :subject DELETE meta_stopped :m")
                .expression_attribute_values(":m", AttributeValue::Ss(vec![merchant.clone()])),
        };
        if let Some(st) = stamp.as_ref().filter(|_| e.action == ConsentAction::MetaStop) {
            state = state
                .expression_attribute_values(":exp", n(st.expires_at))
                .expression_attribute_values(":b", s(&st.due_bucket))
                .expression_attribute_values(":a", s("delete"));
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
            .transact_items(TransactWriteItem::builder().put(entry.build().map_err(build("Put"))?).build())
            .transact_items(TransactWriteItem::builder().update(state.build().map_err(build("Update"))?).build())
            .send()
            .await;
        let recorded = match res {
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
        };
        recorded?;
        // The opt-out's time and deadline, only forward (also on a redelivery, in case a previous run
        // stopped between the two steps; the webhook answers only after both).
        if let (ConsentAction::OptOut, Some(st)) = (e.action, &stamp) {
            let res = update(&self.client, &self.table, s(&pk), s("consent-state"))
                .update_expression(
                    "SET opted_out_at = :at, opted_out_epoch = :e, expires_at = :exp, due_bucket = :b, due_action = :a",
                )
                .condition_expression("attribute_not_exists(opted_out_epoch) OR opted_out_epoch < :e")
                .expression_attribute_values(":at", s(e.at.to_rfc3339()))
                .expression_attribute_values(":e", n(e.at.timestamp()))
                .expression_attribute_values(":exp", n(st.expires_at))
                .expression_attribute_values(":b", s(&st.due_bucket))
                .expression_attribute_values(":a", s("delete"))
                .send()
                .await;
            match res {
                Ok(_) => {}
                Err(err) if is_condition_failed(&err) => {}
                Err(err) => return Err(infra_error("dynamodb", "UpdateItem", err)),
            }
        }
        // A withdrawal starts the clock on the consent it withdraws: the opt-ins it ends are kept 24 months
        // from now on, like the withdrawal itself. (Also on a redelivery, in case a previous run stopped
        // between the two steps.)
        if let Some(st) = &stamp {
            let only = (e.action == ConsentAction::MetaStop).then_some(merchant.as_str());
            self.stamp_opt_ins(&pk, only, st).await?;
        }
        Ok(())
    }
}

impl crate::ports::LedgerReader for DynamoLedger {
    async fn read(&self, refs: &[crate::usecases::consent_audit::LedgerRef]) -> Result<Vec<ConsentEntry>, InfraError> {
        let keys =
            refs.iter().map(|r| HashMap::from([("pk".to_owned(), s(&r.pk)), ("sk".to_owned(), s(&r.sk))])).collect();
        Ok(super::aws::batch_get(&self.client, &self.table, keys, "BatchGetItem(ledger)")
            .await?
            .iter()
            .filter_map(decode_entry)
            .collect())
    }
}

/// A ledger entry item as written by [`DynamoLedger::record`].
fn decode_entry(item: &HashMap<String, AttributeValue>) -> Option<ConsentEntry> {
    let action = match text(item, "action")?.as_str() {
        "opt_in" => ConsentAction::OptIn,
        "opt_out" => ConsentAction::OptOut,
        "meta_stop" => ConsentAction::MetaStop,
        "meta_resume" => ConsentAction::MetaResume,
        _ => return None,
    };
    Some(ConsentEntry {
        id: text(item, "sk")?.strip_prefix("consent#")?.to_owned(),
        subject: text(item, "subject")?,
        merchant: text(item, "merchant").filter(|m| m != "*"),
        action,
        source: text(item, "source")?,
        at: text(item, "at")?.parse().ok()?,
    })
}

impl DynamoLedger {
    /// Gives the subject's live opt-in entries (of `merchant` only, if given) the withdrawal's deadline.
    async fn stamp_opt_ins(
        &self, pk: &str, merchant: Option<&str>, st: &crate::domain::retention::Stamp,
    ) -> Result<(), InfraError> {
        let mut start = None;
        loop {
            let mut q = query(&self.client, &self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :c)")
                .filter_expression("#action = :optin AND attribute_not_exists(expires_at)")
                .expression_attribute_names("#action", "action")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":c", s("consent#"))
                .expression_attribute_values(":optin", s(action_name(ConsentAction::OptIn)))
                .set_exclusive_start_key(start.take());
            if let Some(m) = merchant {
                q = q
                    .filter_expression("#action = :optin AND attribute_not_exists(expires_at) AND merchant = :m")
                    .expression_attribute_values(":m", s(m));
            }
            let page = q.send().await.map_err(|e| infra_error("dynamodb", "Query", e))?;
            for item in page.items() {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", item["pk"].clone())
                    .key("sk", item["sk"].clone())
                    .update_expression("SET expires_at = :exp, due_bucket = :b, due_action = :a")
                    .expression_attribute_values(":exp", n(st.expires_at))
                    .expression_attribute_values(":b", s(&st.due_bucket))
                    .expression_attribute_values(":a", s("delete"))
                    .send()
                    .await
                    .map_err(|e| infra_error("dynamodb", "UpdateItem", e))?;
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(()),
            }
        }
    }
}

impl crate::ports::TemplateCatalog for DynamoLedger {
    async fn set_category(
        &self, merchant: &str, template: &str, category: crate::domain::whatsapp::consent::Category,
    ) -> Result<(), InfraError> {
        let name = serde_json::to_value(category).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        put(&self.client, &self.table)
            .item("pk", s(format!("template#{merchant}#{template}")))
            .item("sk", s("category"))
            .item("category", s(name))
            .item("updated_at", s(chrono::Utc::now().to_rfc3339()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("dynamodb", "PutItem", e))
    }
}
