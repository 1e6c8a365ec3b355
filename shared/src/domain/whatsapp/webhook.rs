//! The WhatsApp webhook payload, walked tolerantly.
//!
//! Meta batches: every `entry` x `change` x `message`/`status` is one item, and all of them are returned.
//! A person is identified by phone (`wa_id` / `from`) and/or business-scoped user id (BSUID) when given:
//! neither is assumed. Unknown message types and unknown `field`s come back as items too (to be counted
//! and acknowledged), never dropped silently and never an error. Message text is kept only as long as the
//! caller needs it (keyword detection, the transcript); it is never logged.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not a WhatsApp webhook payload")]
    NotAPayload,
}

/// A person as the webhook names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// E.164 digits as Meta sends them (`wa_id` / `from`), when present.
    pub phone: Option<String>,
    /// Business-scoped user id, when present.
    pub bsuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An inbound message.
    Message {
        phone_number_id: String,
        wamid: String,
        from: Person,
        /// Epoch seconds.
        timestamp: i64,
        /// Meta's `type` (text, image, interactive, button, order, ... or a type added later).
        kind: String,
        /// The text a person typed or tapped (text body, button text, interactive reply title), if any.
        text: Option<String>,
    },
    /// A receipt for an outbound message.
    Status {
        phone_number_id: String,
        wamid: String,
        status: String,
        timestamp: i64,
        recipient: Person,
        error_code: Option<i64>,
        /// `biz_opaque_callback_data` as we sent it with the message (our request's id), echoed by Meta.
        callback: Option<String>,
    },
    /// Meta's "Stop promotions" control (`user_preferences`, category `marketing_messages`).
    MarketingPreference { phone_number_id: String, person: Person, stop: bool, timestamp: i64 },
    /// Meta re-classified a template (`template_category_update`): the category to decide sends on.
    TemplateCategory { waba_id: String, name: String, language: String, category: String },
    /// A change of a `field` the suite does not act on (yet): acknowledged and counted.
    Other { field: String },
}

#[derive(Deserialize)]
struct Payload {
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize, Default)]
struct Value {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<RawMessage>,
    #[serde(default)]
    statuses: Vec<RawStatus>,
    #[serde(default)]
    user_preferences: Vec<RawPreference>,
    // template_category_update
    #[serde(default)]
    message_template_name: Option<String>,
    #[serde(default)]
    message_template_language: Option<String>,
    #[serde(default)]
    new_category: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    phone_number_id: String,
}

#[derive(Deserialize)]
struct Contact {
    #[serde(default)]
    wa_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    from_user_id: Option<String>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<TextBody>,
    #[serde(default)]
    button: Option<ButtonBody>,
    #[serde(default)]
    interactive: Option<Interactive>,
}

#[derive(Deserialize)]
struct TextBody {
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct ButtonBody {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Interactive {
    #[serde(default)]
    button_reply: Option<Reply>,
    #[serde(default)]
    list_reply: Option<Reply>,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    recipient_id: Option<String>,
    #[serde(default)]
    recipient_user_id: Option<String>,
    #[serde(default)]
    errors: Vec<RawError>,
    #[serde(default)]
    biz_opaque_callback_data: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    code: Option<i64>,
}

#[derive(Deserialize)]
struct RawPreference {
    #[serde(default)]
    wa_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    category: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
}

fn epoch(ts: Option<&str>) -> i64 {
    ts.and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}

/// Every item of a verified body, in payload order.
pub fn parse(body: &[u8]) -> Result<Vec<Item>, PayloadError> {
    let payload: Payload = serde_json::from_slice(body).map_err(|_| PayloadError::NotAPayload)?;
    if payload.object != "whatsapp_business_account" {
        return Err(PayloadError::NotAPayload);
    }
    let mut items = Vec::new();
    for (waba_id, change) in payload.entry.into_iter().flat_map(|e| {
        let id = e.id;
        e.changes.into_iter().map(move |c| (id.clone(), c))
    }) {
        let value = change.value;
        let phone_number_id = value.metadata.map(|m| m.phone_number_id).unwrap_or_default();
        match change.field.as_str() {
            "messages" => {
                // The only contact of a one-to-one change carries the BSUID when Meta withholds `from`.
                let contact = value.contacts.first();
                for m in value.messages {
                    let text = match m.kind.as_str() {
                        "text" => m.text.and_then(|t| t.body),
                        "button" => m.button.and_then(|b| b.text),
                        "interactive" => {
                            m.interactive.and_then(|i| i.button_reply.or(i.list_reply)).and_then(|r| r.title)
                        }
                        _ => None,
                    };
                    items.push(Item::Message {
                        phone_number_id: phone_number_id.clone(),
                        wamid: m.id,
                        from: Person {
                            phone: nonempty(m.from).or_else(|| nonempty(contact.and_then(|c| c.wa_id.clone()))),
                            bsuid: nonempty(m.from_user_id)
                                .or_else(|| nonempty(contact.and_then(|c| c.user_id.clone()))),
                        },
                        timestamp: epoch(m.timestamp.as_deref()),
                        kind: m.kind,
                        text,
                    });
                }
                for s in value.statuses {
                    items.push(Item::Status {
                        phone_number_id: phone_number_id.clone(),
                        wamid: s.id,
                        status: s.status,
                        timestamp: epoch(s.timestamp.as_deref()),
                        recipient: Person { phone: nonempty(s.recipient_id), bsuid: nonempty(s.recipient_user_id) },
                        error_code: s.errors.iter().find_map(|e| e.code),
                        callback: nonempty(s.biz_opaque_callback_data),
                    });
                }
            }
            "user_preferences" => {
                for p in value.user_preferences.into_iter().filter(|p| p.category == "marketing_messages") {
                    let timestamp = match &p.timestamp {
                        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
                        Some(serde_json::Value::String(s)) => epoch(Some(s)),
                        _ => 0,
                    };
                    items.push(Item::MarketingPreference {
                        phone_number_id: phone_number_id.clone(),
                        person: Person { phone: nonempty(p.wa_id), bsuid: nonempty(p.user_id) },
                        stop: p.value.eq_ignore_ascii_case("stop"),
                        timestamp,
                    });
                }
            }
            "template_category_update" => match (value.message_template_name, value.new_category) {
                (Some(name), Some(category)) => items.push(Item::TemplateCategory {
                    waba_id,
                    name,
                    language: value.message_template_language.unwrap_or_default(),
                    category,
                }),
                _ => items.push(Item::Other { field: change.field }),
            },
            other => items.push(Item::Other { field: other.to_owned() }),
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_yields_every_message_and_status_of_every_entry_and_change() {
        let body = br#"{"object":"whatsapp_business_account","entry":[
            {"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"P1"},
                "messages":[{"from":"311","id":"wamid.a","timestamp":"10","type":"text","text":{"body":"STOP"}},
                            {"from":"312","id":"wamid.b","timestamp":"11","type":"hologram"}]}}]},
            {"id":"2","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"P2"},
                "statuses":[{"id":"wamid.c","status":"read","timestamp":"12","recipient_user_id":"NL.abc"}]}},
                {"field":"account_alerts","value":{}}]}]}"#;
        let items = parse(body).unwrap();
        assert_eq!(items.len(), 4);
        assert!(matches!(&items[0], Item::Message { text: Some(t), .. } if t == "STOP"));
        assert!(matches!(&items[1], Item::Message { kind, text: None, .. } if kind == "hologram"));
        assert!(matches!(&items[2], Item::Status { recipient: Person { phone: None, bsuid: Some(_) }, .. }));
        assert!(matches!(&items[3], Item::Other { field } if field == "account_alerts"));
    }

    #[test]
    fn a_status_carries_back_the_callback_data_we_sent_with_the_message() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",
            "value":{"metadata":{"phone_number_id":"P1"},"statuses":[{"id":"wamid.s","status":"sent","timestamp":"12",
            "recipient_id":"31600000000","biz_opaque_callback_data":"payment_paid:pi_1"},
            {"id":"wamid.t","status":"sent","timestamp":"12","recipient_id":"31600000000","biz_opaque_callback_data":""}]}}]}]}"#;
        let items = parse(body).unwrap();
        assert!(matches!(&items[0], Item::Status { callback: Some(c), .. } if c == "payment_paid:pi_1"));
        assert!(matches!(&items[1], Item::Status { callback: None, .. }), "empty is none");
    }

    #[test]
    fn a_template_category_update_names_the_account_the_template_and_its_new_category() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"WABA1","time":1,"changes":[{
            "field":"template_category_update","value":{"message_template_id":1,"message_template_name":"order_update",
            "message_template_language":"en_US","previous_category":"UTILITY","new_category":"MARKETING"}}]}]}"#;
        assert_eq!(
            parse(body).unwrap(),
            [Item::TemplateCategory {
                waba_id: "WABA1".into(),
                name: "order_update".into(),
                language: "en_US".into(),
                category: "MARKETING".into()
            }]
        );
    }

    #[test]
    fn other_objects_and_non_json_are_not_payloads() {
        assert_eq!(parse(b"{\"object\":\"page\",\"entry\":[]}").unwrap_err(), PayloadError::NotAPayload);
        assert_eq!(parse(b"nope").unwrap_err(), PayloadError::NotAPayload);
    }
}
