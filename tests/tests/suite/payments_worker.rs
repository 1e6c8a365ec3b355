use nex_shared::domain::envelope::Envelope;
use nex_shared::ports::PaymentStore;
use nex_tests::*;

async fn deliver(webhook: &StripeWebhook, fixture_body: &str) {
    let resp = webhook.handle(stripe_request(fixture_body, Some(&sign(fixture_body, now()))), "r").await;
    assert_eq!(resp.status_code, 200, "{:?}", body_json(&resp));
}

/// The events of one order's life, in order, all on one PaymentIntent.
fn lifecycle(pi: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, name) in ["payment_intent.payment_failed.json", "payment_intent.succeeded.json", "charge.refunded.json"]
        .iter()
        .enumerate()
    {
        let body = fixture(name)
            .replace("evt_000000000000000000000000", &format!("evt_{pi}_{i}"))
            .replace("pi_000000000000000000000000", pi)
            .replace("\"payment_intent\": null", &format!("\"payment_intent\": \"{pi}\""));
        out.push(body);
    }
    out
}

#[cfg_attr(fixtures, tokio::test)]
async fn reordered_and_repeated_deliveries_end_in_the_state_of_the_ordered_sequence() {
    let h = Harness::new().await;
    let webhook = h.webhook().await;
    let worker = h.worker().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (ordered_pi, reversed_pi) = (format!("pi_o{tag}"), format!("pi_r{tag}"));
    for body in lifecycle(&ordered_pi) {
        deliver(&webhook, &body).await;
        h.drain(&worker, 1).await;
    }
    let mut reversed = lifecycle(&reversed_pi);
    reversed.reverse();
    reversed.push(reversed[0].clone());
    for body in &reversed {
        deliver(&webhook, body).await;
    }
    h.drain(&worker, 1).await;
    let a = h.payment(&ordered_pi).await.unwrap();
    let b = h.payment(&reversed_pi).await.unwrap();
    assert_eq!(a["status"].as_s().unwrap(), "partially_refunded", "100 of 2000 refunded");
    assert_eq!(a["status"], b["status"]);
    assert_eq!(a["facts"], b["facts"]);
    assert_eq!(a["expires_at"], b["expires_at"]);
}

#[cfg_attr(fixtures, tokio::test)]
async fn a_redelivered_message_is_applied_once() {
    let h = Harness::new().await;
    let worker = h.worker().await;
    let (body, _, key) = unique(&fixture("payment_intent.succeeded.json"));
    let nex_shared::domain::stripe::event::Classified::Handled { event, .. } =
        nex_shared::domain::stripe::event::parse(body.as_bytes()).unwrap()
    else {
        panic!("handled type")
    };
    let message = Envelope::new(event.event_id.clone(), chrono::Utc::now(), "t".into(), *event).encode();
    for _ in 0..2 {
        h.send(&h.queue_url, &message).await;
    }
    let round = h.drain(&worker, 1).await;
    assert_eq!((round.received, round.failed), (2, 0));
    let item = h.payment(&key).await.unwrap();
    assert_eq!(item["version"].as_n().unwrap(), "1", "the second copy changed nothing");
}

#[cfg_attr(fixtures, tokio::test)]
async fn a_poison_message_reaches_the_dlq_without_holding_back_the_rest_of_its_batch() {
    let h = Harness::new().await;
    let webhook = h.webhook().await;
    let worker = h.worker().await;
    let (good, _, key) = unique(&fixture("payment_intent.succeeded.json"));
    deliver(&webhook, &good).await;
    let unknown_version = r#"{"type":"stripe.payment_event","version":99,"id":"x","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","payload":{}}"#;
    for body in ["not json at all", unknown_version] {
        h.send(&h.queue_url, body).await;
    }
    let round = h.drain(&worker, 0).await;
    assert!(round.failed >= 2 * 5, "each poison message fails until maxReceiveCount (5): {round:?}");
    assert_eq!(h.payment(&key).await.unwrap()["status"].as_s().unwrap(), "paid");
    assert_eq!(h.depth(&h.queue_url).await, 0);
    assert_eq!(h.depth(&h.dlq_url).await, 2, "both poison messages were moved to the DLQ by the redrive policy");
}

#[tokio::test]
async fn a_payment_record_past_its_deadline_is_never_served_and_is_replaced_on_the_next_write() {
    let h = Harness::new().await;
    let store = nex_shared::adapters::dynamo_payments::DynamoPayments::new(h.ddb.clone(), table("PaymentsTable"));
    let key = format!("pi_exp{}", uuid::Uuid::new_v4().simple());
    let past = chrono::Utc::now() - chrono::Duration::days(1);
    let record = nex_shared::ports::PaymentRecord {
        payment_key: key.clone(),
        order_ref: None,
        status: "paid".into(),
        facts: Default::default(),
        amount: Some(1),
        currency: None,
        card: None,
        api_version: None,
        subject: None,
        merchant: None,
        last_event_at: past.timestamp(),
        updated_at: past,
        retention: nex_shared::domain::retention::Stamp {
            expires_at: past.timestamp(),
            due_bucket: "x#0".into(),
            due_action: nex_shared::domain::retention::Action::Delete,
        },
        version: 7,
    };
    assert_eq!(store.put(&record, None).await.unwrap(), nex_shared::ports::Written::Ok);
    let loaded = store.get(&key, chrono::Utc::now()).await.unwrap();
    assert_eq!((loaded.value, loaded.version), (None, Some(7)));
    assert_eq!(store.put(&record, None).await.unwrap(), nex_shared::ports::Written::Conflict);
    assert_eq!(store.put(&record, Some(7)).await.unwrap(), nex_shared::ports::Written::Ok);
}

/// Without `../shared/fixtures` beside the repository, this file's 3 conformance tests (marked
/// `cfg_attr(fixtures, ...)`) are not built; this says so in the run.
#[cfg(not(fixtures))]
#[test]
#[ignore = "3 conformance tests need ../shared/fixtures beside the repository"]
fn conformance_tests_skipped() {}
