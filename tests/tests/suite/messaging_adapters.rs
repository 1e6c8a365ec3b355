//! The messaging table's adapters on their own, against the emulator: merchants, the consent ledger
//! (with what a send reads back through the conversations adapter) and template categories.

use chrono::{Duration, Utc};
use nex_shared::adapters::dynamo_conversations::DynamoConversations;
use nex_shared::adapters::dynamo_ledger::DynamoLedger;
use nex_shared::adapters::dynamo_merchants::DynamoMerchants;
use nex_shared::domain::whatsapp::consent::Category;
use nex_shared::ports::{
    ConsentAction, ConsentEntry, ConsentLedger, LedgerReader, MerchantDirectory, MerchantKeys, SendContext,
    TemplateCatalog,
};
use nex_shared::usecases::consent_audit::LedgerRef;
use nex_tests::*;
use sha2::{Digest, Sha256};

fn fresh() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test]
async fn merchants_are_found_by_number_account_and_key_and_a_contract_ends_once() {
    let h = Harness::new().await;
    let merchants = DynamoMerchants::new(h.ddb.clone(), table("MessagingTable"));
    assert_eq!(
        merchants.merchant_for_phone_number("106540352242922").await.unwrap().as_deref(),
        Some("merchant-demo-1")
    );
    assert_eq!(merchants.merchant_for_account("880480571844883").await.unwrap().as_deref(), Some("merchant-demo-2"));
    assert_eq!(merchants.merchant_for_phone_number("000").await.unwrap(), None);
    let key = hex::encode(Sha256::digest(MERCHANT_KEY.as_bytes()));
    assert_eq!(merchants.merchant_for_key(&key).await.unwrap().as_deref(), Some("merchant-demo-1"));
    assert_eq!(merchants.merchant_for_key(&hex::encode(Sha256::digest(b"other"))).await.unwrap(), None);

    let gone = format!("m-{}", fresh());
    let ended = Utc::now() - Duration::days(1);
    assert!(merchants.mark_terminated(&gone, ended).await.unwrap(), "first end recorded");
    assert!(!merchants.mark_terminated(&gone, Utc::now()).await.unwrap(), "the first end date is kept");
    let item =
        h.get(&table("MessagingTable"), &[("pk", &format!("merchant#{gone}")), ("sk", "contract")]).await.unwrap();
    assert_eq!(item["terminated_at"].as_s().unwrap(), &ended.to_rfc3339());
    assert!(item["expires_at"].as_n().is_ok(), "due at once, for the sweep");
}

#[tokio::test]
async fn a_ledger_entry_is_recorded_once_read_back_by_key_and_an_opt_out_is_in_force_at_once() {
    let h = Harness::new().await;
    let ledger = DynamoLedger::new(h.ddb.clone(), table("MessagingTable"));
    let conversations = DynamoConversations::new(h.ddb.clone(), table("MessagingTable"));
    let subject = fresh();
    let at = Utc::now() - Duration::minutes(5);
    let opt_in = ConsentEntry {
        id: format!("optin-{}", fresh()),
        subject: subject.clone(),
        merchant: Some("merchant-demo-1".into()),
        action: ConsentAction::OptIn,
        source: "checkout_page".into(),
        at,
    };
    ledger.record(&opt_in).await.unwrap();
    ledger.record(&opt_in).await.unwrap();
    let entries = h.consent_entries(&subject).await;
    assert_eq!(entries.len(), 1, "recording the same entry again changes nothing");
    let reference = LedgerRef { pk: format!("subject#{subject}"), sk: entries[0]["sk"].as_s().unwrap().clone() };
    assert_eq!(ledger.read(&[reference.clone(), reference]).await.unwrap(), vec![opt_in.clone()]);
    assert!(conversations.consent(&subject, "merchant-demo-1").await.unwrap().opted_in);

    let opt_out = ConsentEntry {
        id: format!("stop-{}", fresh()),
        merchant: None,
        action: ConsentAction::OptOut,
        at: at + Duration::minutes(1),
        ..opt_in
    };
    ledger.record(&opt_out).await.unwrap();
    let consent = conversations.consent(&subject, "merchant-demo-1").await.unwrap();
    assert!(consent.opted_out, "an opt-out after the opt-in is in force when record returns: {consent:?}");
}

#[tokio::test]
async fn a_templates_category_is_what_meta_said_last() {
    let h = Harness::new().await;
    let ledger = DynamoLedger::new(h.ddb.clone(), table("MessagingTable"));
    let conversations = DynamoConversations::new(h.ddb.clone(), table("MessagingTable"));
    let template = format!("t_{}", fresh());
    assert_eq!(conversations.template_category("merchant-demo-1", &template).await.unwrap(), None);
    ledger.set_category("merchant-demo-1", &template, Category::Utility).await.unwrap();
    ledger.set_category("merchant-demo-1", &template, Category::Marketing).await.unwrap();
    assert_eq!(conversations.template_category("merchant-demo-1", &template).await.unwrap(), Some(Category::Marketing));
    assert_eq!(conversations.template_category("merchant-demo-2", &template).await.unwrap(), None, "per merchant");
}
