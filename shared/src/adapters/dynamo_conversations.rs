//! Conversations in the messaging table: transcripts, delivery receipts and what a send needs to know.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::aws::{infra_error, is_condition_failed};
use super::dynamo_attrs::{get_item, n, num, put, query, s, text, update, Item};
use super::dynamo_ledger::OPTIN_AT;
use crate::domain::retention::{self, DataClass};
use crate::ports::InfraError;

/// The end of `t`'s UTC day: messages are stamped at day granularity, so a conversation with daily
/// activity re-stamps its messages at most once a day, and never to a TTL before its deadline.
fn day_end(t: chrono::DateTime<chrono::Utc>) -> i64 {
    let day = t.timestamp().div_euclid(86_400);
    (day + 1) * 86_400 - 1
}

/// Transcripts and receipts in the messaging table.
///
/// - `conv#<merchant>#<subject>` / `meta`: `last_interaction_at`, `last_inbound_at` (epoch seconds),
///   `expires_at` = 90 days after the last interaction, with the due-date index keys.
/// - `conv#<merchant>#<subject>` / `msg#<time>#<wamid>`: one message; its `expires_at` is the end of the
///   UTC day of the conversation's deadline, raised whenever that deadline moves past it.
/// - `wamid#<wamid>` / `receipt`: the delivery state of an outbound message.
#[derive(Debug, Clone)]
pub struct DynamoConversations {
    client: Client,
    table: String,
}

impl DynamoConversations {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Raises every message of `pk` from `window_start` on (epoch seconds; the current window of the
    /// conversation) stamped before `exp` to `exp`. Messages of an earlier window keep their deadline.
    async fn restamp(&self, pk: &str, exp: i64, bucket: &str, window_start: Option<i64>) -> Result<usize, InfraError> {
        let from = match window_start.and_then(|w| chrono::DateTime::from_timestamp(w, 0)) {
            Some(w) => format!("msg#{}", w.to_rfc3339()),
            None => "msg#".to_owned(),
        };
        let mut start = None;
        let mut raised = 0;
        loop {
            let page = query(&self.client, &self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .filter_expression("expires_at < :exp")
                .projection_expression("pk, sk")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":from", s(&from))
                .expression_attribute_values(":to", s("msg$"))
                .expression_attribute_values(":exp", n(exp))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", "Query", e))?;
            for item in page.items() {
                let res = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", item["pk"].clone())
                    .key("sk", item["sk"].clone())
                    .update_expression("SET expires_at = :exp, due_bucket = :b")
                    .condition_expression("attribute_exists(pk) AND expires_at < :exp")
                    .expression_attribute_values(":exp", n(exp))
                    .expression_attribute_values(":b", s(bucket))
                    .send()
                    .await;
                match res {
                    Ok(_) => raised += 1,
                    Err(e) if is_condition_failed(&e) => {}
                    Err(e) => return Err(infra_error("dynamodb", "UpdateItem", e)),
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(raised),
            }
        }
    }
}

impl crate::ports::Transcripts for DynamoConversations {
    async fn append(
        &self, merchant: &str, subject: &str, m: &crate::ports::TranscriptMessage, inbound: bool,
    ) -> Result<chrono::DateTime<chrono::Utc>, InfraError> {
        let pk = format!("conv#{merchant}#{subject}");
        let stamp =
            retention::stamp(DataClass::WhatsAppTranscript, m.at, &pk).ok_or_else(InfraError::deadline_out_of_range)?;
        // Move the conversation's deadline forward if this message is its latest interaction.
        let inbound_set = if inbound { ", last_inbound_at = :t" } else { "" };
        let moved = update(&self.client, &self.table, s(&pk), s("meta"))
            .update_expression(format!(
                "SET merchant = :m, subject = :s, last_interaction_at = :t, expires_at = :exp, due_bucket = :b, due_action = :a{inbound_set}"
            ))
            .condition_expression("attribute_not_exists(last_interaction_at) OR last_interaction_at < :t")
            .expression_attribute_values(":m", s(merchant))
            .expression_attribute_values(":s", s(subject))
            .expression_attribute_values(":t", n(m.at.timestamp()))
            .expression_attribute_values(":exp", n(stamp.expires_at))
            .expression_attribute_values(":b", s(&stamp.due_bucket))
            .expression_attribute_values(":a", s("delete"))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let num = |item: Option<&Item>, k: &str| item.and_then(|i| num(i, k));
        // `previous`: the deadline this write replaced (`None` for a new conversation); `kept`: the
        // conversation was not moved (an older message arriving late, or a redelivery); `window`: when the
        // conversation's current window began (a message after its deadline starts a new one).
        let (deadline, previous, kept, mut window) = match moved {
            Ok(out) => {
                let old = out.attributes.as_ref();
                (stamp.expires_at, num(old, "expires_at"), false, num(old, "window_start"))
            }
            Err(e) if is_condition_failed(&e) => {
                let current = match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
                    _ => None,
                };
                let exp = num(current.as_ref(), "expires_at").ok_or_else(|| InfraError {
                    service: "dynamodb",
                    operation: "UpdateItem",
                    retryable: true,
                    source: Some("condition failed without the current conversation item".into()),
                })?;
                (exp, None, true, num(current.as_ref(), "window_start"))
            }
            Err(e) => return Err(infra_error("dynamodb", "UpdateItem", e)),
        };
        // The conversation had ended (its deadline passed) before this message: a new window begins, and
        // the old window's messages are never served again nor given the new deadline; they keep theirs,
        // which the retention sweep enforces.
        let restarted = previous.is_some_and(|p| retention::is_past(p, m.at));
        if restarted {
            let res = update(&self.client, &self.table, s(&pk), s("meta"))
                .update_expression("SET window_start = :t")
                .condition_expression("attribute_not_exists(window_start) OR window_start < :t")
                .expression_attribute_values(":t", n(m.at.timestamp()))
                .send()
                .await;
            match res {
                Ok(_) => {}
                Err(e) if is_condition_failed(&e) => {}
                Err(e) => return Err(infra_error("dynamodb", "UpdateItem", e)),
            }
            window = Some(m.at.timestamp());
        }
        let deadline_at = chrono::DateTime::from_timestamp(deadline, 0).unwrap_or(m.at);
        let msg_exp = day_end(deadline_at);
        let bucket = retention::due_bucket(deadline_at, &pk);
        let mut put = put(&self.client, &self.table)
            .item("pk", s(&pk))
            .item("sk", s(format!("msg#{}#{}", m.at.to_rfc3339(), m.wamid)))
            .item("subject", s(subject))
            .item("merchant", s(merchant))
            .item("wamid", s(&m.wamid))
            .item("direction", s(&m.direction))
            .item("kind", s(&m.kind))
            .item("at", s(m.at.to_rfc3339()))
            .item("expires_at", n(msg_exp))
            .item("due_bucket", s(&bucket))
            .item("due_action", s("delete"))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(t) = &m.text {
            put = put.item("text", s(t));
        }
        match put.send().await {
            Ok(_) => {}
            Err(e) if is_condition_failed(&e) => {}
            Err(e) => return Err(infra_error("dynamodb", "PutItem", e)),
        }
        // Every message is stamped with the end of its deadline's day, so older messages can be below
        // `msg_exp` only if this write moved the deadline into a later day. When the conversation was
        // kept, check anyway: a retry may follow a run that moved it and stopped before re-stamping.
        let moved_to_later_day =
            previous.and_then(|p| chrono::DateTime::from_timestamp(p, 0)).is_some_and(|p| day_end(p) < msg_exp);
        if !restarted && (kept || moved_to_later_day) {
            self.restamp(&pk, msg_exp, &bucket, window).await?;
        }
        Ok(deadline_at)
    }

    async fn read(
        &self, merchant: &str, subject: &str, now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::ports::TranscriptMessage>, InfraError> {
        let pk = format!("conv#{merchant}#{subject}");
        let page = query(&self.client, &self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(&pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "Query", e))?;
        let items = page.items();
        // The conversation's deadline rules: past it, nothing is served, whatever the messages' TTL says.
        let meta = items.iter().find(|i| text(i, "sk").as_deref() == Some("meta"));
        let live = meta.and_then(|i| num(i, "expires_at")).is_some_and(|exp| !retention::is_past(exp, now));
        if !live {
            return Ok(Vec::new());
        }
        // Messages of a window that ended before the current one began are not the conversation's any more.
        let window = meta.and_then(|i| num(i, "window_start")).unwrap_or(i64::MIN);
        let at = |i: &HashMap<String, AttributeValue>| {
            text(i, "at").and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok()).map(|t| t.timestamp())
        };
        Ok(items
            .iter()
            .filter(|i| text(i, "sk").is_some_and(|sk| sk.starts_with("msg#")))
            .filter(|i| num(i, "expires_at").is_some_and(|exp| !retention::is_past(exp, now)))
            .filter(|i| at(i).is_none_or(|t| t >= window))
            .map(|i| crate::ports::TranscriptMessage {
                wamid: text(i, "wamid").unwrap_or_default(),
                direction: text(i, "direction").unwrap_or_default(),
                kind: text(i, "kind").unwrap_or_default(),
                text: text(i, "text"),
                at: text(i, "at").and_then(|t| t.parse().ok()).unwrap_or(now),
            })
            .collect())
    }
}

impl crate::ports::Receipts for DynamoConversations {
    async fn apply(
        &self, merchant: &str, wamid: &str, subject: Option<&str>, status: crate::domain::whatsapp::delivery::Delivery,
        error_code: Option<i64>, at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), InfraError> {
        use crate::domain::whatsapp::delivery::Delivery;
        let key = |b: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder| {
            b.table_name(&self.table).key("pk", s(format!("wamid#{wamid}"))).key("sk", s("receipt"))
        };
        let stamp = retention::stamp(DataClass::WhatsAppTranscript, at, wamid);
        let rank = status as i64;
        // The state only moves up the order sent < failed < delivered < read < played.
        let mut up = key(self.client.update_item())
            .update_expression(
                "SET #state = :state, #rank = :rank, expires_at = :exp, due_bucket = :b, due_action = :a, merchant = :m",
            )
            .condition_expression("attribute_not_exists(#rank) OR #rank < :rank")
            .expression_attribute_values(":m", s(merchant))
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":state", s(format!("{status:?}").to_lowercase()))
            .expression_attribute_values(":rank", n(rank))
            .expression_attribute_values(":exp", n(stamp.as_ref().map_or(0, |st| st.expires_at)))
            .expression_attribute_values(":b", s(stamp.as_ref().map_or("", |st| st.due_bucket.as_str())))
            .expression_attribute_values(":a", s("delete"));
        if let Some(sub) = subject {
            up = up
                .update_expression(
                    "SET #state = :state, #rank = :rank, expires_at = :exp, due_bucket = :b, due_action = :a, merchant = :m, subject = :sub",
                )
                .expression_attribute_values(":sub", s(sub));
        }
        match up.send().await {
            Ok(_) => {}
            Err(e) if is_condition_failed(&e) => {}
            Err(e) => return Err(infra_error("dynamodb", "UpdateItem", e)),
        }
        if let (Delivery::Failed, Some(code)) = (status, error_code) {
            let res = key(self.client.update_item())
                .update_expression("SET error_code = :c")
                .condition_expression("attribute_not_exists(error_code) OR error_code > :c")
                .expression_attribute_values(":c", n(code))
                .send()
                .await;
            match res {
                Ok(_) => {}
                Err(e) if is_condition_failed(&e) => {}
                Err(e) => return Err(infra_error("dynamodb", "UpdateItem", e)),
            }
        }
        Ok(())
    }

    async fn get(
        &self, wamid: &str, now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::domain::whatsapp::delivery::DeliveryState>, InfraError> {
        let Some(item) = get_item(&self.client, &self.table, format!("wamid#{wamid}"), "receipt", true).await? else {
            return Ok(None);
        };
        if num(&item, "expires_at").is_none_or(|e| retention::is_past(e, now)) {
            return Ok(None);
        }
        let state = text(&item, "state").and_then(|st| crate::domain::whatsapp::delivery::Delivery::parse(&st));
        let error_code = num(&item, "error_code");
        Ok(Some(crate::domain::whatsapp::delivery::DeliveryState { state, error_code }))
    }
}

impl crate::ports::SendContext for DynamoConversations {
    async fn consent(
        &self, subject: &str, merchant: &str,
    ) -> Result<crate::domain::whatsapp::consent::Consent, InfraError> {
        let pk = format!("subject#{subject}");
        let Some(item) = get_item(&self.client, &self.table, pk, "consent-state", true).await? else {
            return Ok(Default::default());
        };
        let has = |attr: &str| {
            item.get(attr).and_then(|v| v.as_ss().ok()).is_some_and(|set| set.iter().any(|m| m == merchant))
        };
        let time = |attr: &str| text(&item, attr).and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
        // A keyword opt-out holds for every merchant, except one the person opted in to again afterwards.
        let opted_out_since = time("opted_out_at");
        let opted_in_at = time(&format!("{OPTIN_AT}{merchant}"));
        // Opted out with no time recorded yet: out for every merchant, no restore.
        let keyword_out = match opted_out_since {
            Some(out) => opted_in_at.is_none_or(|inn| inn <= out),
            None => item.get("opted_out").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        };
        Ok(crate::domain::whatsapp::consent::Consent {
            opted_in: has("opted_in"),
            opted_out: keyword_out || has("meta_stopped"),
        })
    }

    async fn last_inbound(
        &self, merchant: &str, subject: &str, now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, InfraError> {
        let pk = format!("conv#{merchant}#{subject}");
        let Some(item) = get_item(&self.client, &self.table, pk, "meta", true).await? else {
            return Ok(None);
        };
        if num(&item, "expires_at").is_none_or(|e| retention::is_past(e, now)) {
            return Ok(None);
        }
        Ok(num(&item, "last_inbound_at").and_then(|t| chrono::DateTime::from_timestamp(t, 0)))
    }

    async fn template_category(
        &self, merchant: &str, template: &str,
    ) -> Result<Option<crate::domain::whatsapp::consent::Category>, InfraError> {
        let pk = format!("template#{merchant}#{template}");
        Ok(get_item(&self.client, &self.table, pk, "category", true)
            .await?
            .and_then(|i| text(&i, "category"))
            .and_then(|c| serde_json::from_value(serde_json::Value::String(c)).ok()))
    }

    async fn merchant_number(&self, merchant: &str) -> Result<Option<String>, InfraError> {
        Ok(get_item(&self.client, &self.table, format!("merchant#{merchant}"), "whatsapp", false)
            .await?
            .and_then(|i| text(&i, "phone_number_id")))
    }

    async fn record_refusal(
        &self, merchant: &str, subject: &str, request_id: &str, reason: &str, at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), InfraError> {
        let pk = format!("conv#{merchant}#{subject}");
        let stamp = retention::stamp(DataClass::WhatsAppTranscript, at, &pk);
        let mut put = put(&self.client, &self.table)
            .item("pk", s(&pk))
            .item("sk", s(format!("refusal#{request_id}")))
            .item("subject", s(subject))
            .item("merchant", s(merchant))
            .item("reason", s(reason))
            .item("at", s(at.to_rfc3339()));
        if let Some(st) = stamp {
            put = put
                .item("expires_at", n(st.expires_at))
                .item("due_bucket", s(st.due_bucket))
                .item("due_action", s("delete"));
        }
        put.send().await.map(|_| ()).map_err(|e| infra_error("dynamodb", "PutItem", e))
    }
}
