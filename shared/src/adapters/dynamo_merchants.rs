//! Merchants in the messaging table: which merchant a WhatsApp business number or account belongs to
//! (`merchant-phone#<phone_number_id>`, `merchant-waba#<waba_id>` / `merchant`, cached a minute), whose API
//! key is whose (`merchant-key#<sha256>` / `merchant`), and contract ends (`merchant#<id>` / `contract`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;

use super::aws::{infra_error, is_condition_failed};
use super::dynamo_attrs::{get_item, n, put, s, text};
use crate::domain::retention::{self, DataClass};
use crate::ports::{InfraError, MerchantDirectory};

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
        Self { client, table: table.into(), cache: Mutex::default() }
    }
}

impl MerchantDirectory for DynamoMerchants {
    async fn merchant_for_phone_number(&self, phone_number_id: &str) -> Result<Option<String>, InfraError> {
        self.lookup(&format!("merchant-phone#{phone_number_id}")).await
    }

    async fn merchant_for_account(&self, waba_id: &str) -> Result<Option<String>, InfraError> {
        self.lookup(&format!("merchant-waba#{waba_id}")).await
    }
}

impl DynamoMerchants {
    /// A cached read of a `<kind>#<id>` / `merchant` item.
    async fn lookup(&self, pk: &str) -> Result<Option<String>, InfraError> {
        if let Some((m, at)) = self.cache.lock().expect("cache lock").get(pk) {
            if at.elapsed() < MERCHANT_CACHE {
                return Ok(m.clone());
            }
        }
        let merchant = get_item(&self.client, &self.table, pk.to_owned(), "merchant", false)
            .await?
            .and_then(|i| text(&i, "merchant_id"));
        self.cache.lock().expect("cache lock").insert(pk.to_owned(), (merchant.clone(), Instant::now()));
        Ok(merchant)
    }
}

impl DynamoMerchants {
    /// Records that `merchant`'s contract ended at `at`: `merchant#<id>` / `contract`, due at once
    /// (`WhatsAppOrderMetadata`), so the next sweep deletes the merchant's order metadata. Re-marking keeps
    /// the first end date.
    pub async fn mark_terminated(&self, merchant: &str, at: chrono::DateTime<chrono::Utc>) -> Result<bool, InfraError> {
        let pk = format!("merchant#{merchant}");
        let st = retention::stamp(DataClass::WhatsAppOrderMetadata, at, &pk)
            .ok_or_else(InfraError::deadline_out_of_range)?;
        let res = put(&self.client, &self.table)
            .item("pk", s(&pk))
            .item("sk", s("contract"))
            .item("merchant_id", s(merchant))
            .item("terminated_at", s(at.to_rfc3339()))
            .item("expires_at", n(st.expires_at))
            .item("due_bucket", s(&st.due_bucket))
            .item("due_action", s("delete"))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "PutItem", e)),
        }
    }
}

impl crate::ports::MerchantKeys for DynamoMerchants {
    async fn merchant_for_key(&self, key_sha256: &str) -> Result<Option<String>, InfraError> {
        let pk = format!("merchant-key#{key_sha256}");
        Ok(get_item(&self.client, &self.table, pk, "merchant", false).await?.and_then(|i| text(&i, "merchant_id")))
    }
}
