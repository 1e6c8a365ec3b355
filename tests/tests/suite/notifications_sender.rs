use chrono::{Duration, Utc};
use nex_shared::adapters::dynamo_ledger::DynamoLedger;
use nex_shared::domain::subject::IdentifierKind;
use nex_shared::ports::{ConsentAction, ConsentEntry, ConsentLedger, Transcripts};
use nex_shared::usecases::send_notification::{
    confirm_sent, Content, NotifyError, Outcome, SendNotification, SendRequest,
};
use nex_tests::*;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PNID: &str = "106540352242922";

fn phone() -> String {
    format!("+3162{}", &uuid::Uuid::new_v4().as_u128().to_string()[..7])
}

fn request(to: &str, merchant: &str, content: Content, own_order: bool, order_open: bool) -> SendRequest {
    SendRequest {
        id: format!("req-{}", uuid::Uuid::new_v4().simple()),
        merchant: merchant.into(),
        phone_number_id: Some(PNID.into()),
        to: to.into(),
        content,
        own_order,
        order_open,
        private: false,
    }
}

fn template(name: &str) -> Content {
    Content::Template { name: name.into(), language: "en_US".into(), components: serde_json::Value::Null }
}

async fn meta(status: u16, body: serde_json::Value, edge: &str, times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PNID}/{edge}")))
        .and(header("authorization", "Bearer local-dev-cloud-api-token"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .expect(times)
        .mount(&server)
        .await;
    server
}

async fn send(app: &NotificationsSender, req: &SendRequest) -> Result<Outcome, NotifyError> {
    send_locked_until(app, req, Utc::now() + Duration::seconds(30)).await
}

/// [`send`] with a claim that lapses at `lock_until`.
async fn send_locked_until(
    app: &NotificationsSender, req: &SendRequest, lock_until: chrono::DateTime<Utc>,
) -> Result<Outcome, NotifyError> {
    send_waiting(app, req, lock_until, app.confirm_wait).await
}

/// [`send_locked_until`] with a send mark that waits `confirm_wait` for Meta's status webhook.
async fn send_waiting(
    app: &NotificationsSender, req: &SendRequest, lock_until: chrono::DateTime<Utc>, confirm_wait: Duration,
) -> Result<Outcome, NotifyError> {
    let uc = SendNotification {
        hasher: &app.hasher,
        clock: &app.clock,
        idempotency: &app.idempotency,
        context: &app.conversations,
        transcripts: &app.conversations,
        cloud: &app.cloud,
        metrics: &app.metrics,
        confirm_wait,
    };
    uc.handle(req, lock_until).await
}

async fn opt_in(h: &Harness, app: &NotificationsSender, to: &str, merchant: &str) {
    let ledger = DynamoLedger::new(h.ddb.clone(), table("MessagingTable"));
    let entry = ConsentEntry {
        id: format!("optin-{merchant}"),
        subject: app.hasher.hash(IdentifierKind::Phone, to).unwrap(),
        merchant: Some(merchant.into()),
        action: ConsentAction::OptIn,
        source: "checkout_page".into(),
        at: Utc::now() - Duration::days(1),
    };
    ledger.record(&entry).await.unwrap();
}

#[cfg_attr(fixtures, tokio::test)]
async fn a_utility_template_for_the_persons_own_order_is_sent_once_and_kept_in_the_transcript() {
    let h = Harness::new().await;
    let server = meta(200, meta_send_response(), "messages", 1).await;
    let app = h.sender(&server.uri()).await;
    let to = phone();
    let req = request(&to, "merchant-demo-1", template("order_confirmation"), true, true);
    let wamid = match send(&app, &req).await.unwrap() {
        Outcome::Sent { wamid } => wamid,
        other => panic!("{other:?}"),
    };
    assert!(wamid.starts_with("wamid."), "the wamid of Meta's documented answer is stored");
    assert!(matches!(send(&app, &req).await.unwrap(), Outcome::AlreadyDone(Some(w)) if w == wamid), "never twice");
    let subject = app.hasher.hash(IdentifierKind::Phone, &to).unwrap();
    let transcript = app.conversations.read("merchant-demo-1", &subject, Utc::now()).await.unwrap();
    assert_eq!(transcript.len(), 1);
    assert_eq!((transcript[0].direction.as_str(), transcript[0].wamid.as_str()), ("out", wamid.as_str()));
    let sent: serde_json::Value = server.received_requests().await.unwrap()[0].body_json().unwrap();
    assert_eq!(sent["template"]["name"], "order_confirmation");
    assert_eq!(sent["to"], to.as_str());
}

#[cfg_attr(fixtures, tokio::test)]
async fn after_stop_marketing_is_refused_for_every_merchant_and_an_open_order_utility_message_still_goes() {
    let h = Harness::new().await;
    let wa = h.whatsapp().await;
    let marketing_server = meta(200, meta_send_response(), "marketing_messages", 0).await;
    let app = h.sender(&marketing_server.uri()).await;
    let to = phone();
    for m in ["merchant-demo-1", "merchant-demo-2"] {
        opt_in(&h, &app, &to, m).await;
    }
    let stop = unique_wamids(&whatsapp_fixture("meta_openapi", "inbound_text.json"))
        .replace("Does it come in another color?", "STOP")
        .replace("16505551234", to.trim_start_matches('+'));
    let resp = wa.handle(whatsapp_request("POST", "", &stop, Some(&hub_sign(&stop))), "r").await;
    assert_eq!(body_json(&resp)["opt_outs"], 1);
    for m in ["merchant-demo-1", "merchant-demo-2"] {
        let out = send(&app, &request(&to, m, template("spring_sale"), false, false)).await.unwrap();
        assert_eq!(out, Outcome::Refused { reason: "opted_out".into() }, "{m}: opted in, then STOP");
    }
    let utility_server = meta(200, meta_send_response(), "messages", 1).await;
    let utility = h.sender(&utility_server.uri()).await;
    let open_order = request(&to, "merchant-demo-1", template("order_confirmation"), true, true);
    assert!(matches!(send(&utility, &open_order).await.unwrap(), Outcome::Sent { .. }));
    let closed_order = request(&to, "merchant-demo-1", template("order_confirmation"), true, false);
    assert_eq!(send(&utility, &closed_order).await.unwrap(), Outcome::Refused { reason: "opted_out".into() });
}

#[cfg_attr(fixtures, tokio::test)]
async fn marketing_needs_an_opt_in_and_goes_through_the_marketing_endpoint() {
    let h = Harness::new().await;
    let server = meta(200, meta_send_response(), "marketing_messages", 1).await;
    let app = h.sender(&server.uri()).await;
    let to = phone();
    let refused = send(&app, &request(&to, "merchant-demo-1", template("spring_sale"), false, false)).await.unwrap();
    assert_eq!(refused, Outcome::Refused { reason: "no_marketing_opt_in".into() });
    opt_in(&h, &app, &to, "merchant-demo-1").await;
    let sent = send(&app, &request(&to, "merchant-demo-1", template("spring_sale"), false, false)).await.unwrap();
    assert!(matches!(sent, Outcome::Sent { .. }));
}

#[cfg_attr(fixtures, tokio::test)]
async fn free_form_text_goes_only_inside_the_24_hour_window_opened_by_the_persons_message() {
    let h = Harness::new().await;
    let server = meta(200, meta_send_response(), "messages", 1).await;
    let app = h.sender(&server.uri()).await;
    let to = phone();
    let text = || Content::Text { body: "Your parcel left the warehouse".into() };
    let closed = send(&app, &request(&to, "merchant-demo-1", text(), true, true)).await.unwrap();
    assert_eq!(closed, Outcome::Refused { reason: "window_closed".into() });
    let subject = app.hasher.hash(IdentifierKind::Phone, &to).unwrap();
    let inbound = nex_shared::ports::TranscriptMessage {
        wamid: format!("wamid.{}", uuid::Uuid::new_v4().simple()),
        direction: "in".into(),
        kind: "text".into(),
        text: Some("where is my order?".into()),
        at: Utc::now() - Duration::hours(2),
    };
    app.conversations.append("merchant-demo-1", &subject, &inbound, true).await.unwrap();
    assert!(matches!(
        send(&app, &request(&to, "merchant-demo-1", text(), true, true)).await.unwrap(),
        Outcome::Sent { .. }
    ));
}

#[cfg_attr(fixtures, tokio::test)]
async fn metas_errors_are_handled_by_class() {
    let h = Harness::new().await;
    let to = phone();
    let utility = || request(&to, "merchant-demo-1", template("order_confirmation"), true, true);

    // 131047 and 131050: recorded refusals, never retried.
    for (code, reason) in
        [(131047, "window_closed_131047"), (131050, "marketing_stopped_131050"), (131009, "rejected_131009")]
    {
        let server = meta(400, meta_error(code), "messages", 1).await;
        let app = h.sender(&server.uri()).await;
        let req = utility();
        assert_eq!(send(&app, &req).await.unwrap(), Outcome::Refused { reason: reason.into() });
        assert!(matches!(send(&app, &req).await.unwrap(), Outcome::AlreadyDone(_)), "{code}: not retried");
    }

    // 130429 (throughput): retry later; the claim is released so the redelivery sends it.
    let limited = meta(429, meta_error(130429), "messages", 1).await;
    let app = h.sender(&limited.uri()).await;
    let req = utility();
    assert!(matches!(send(&app, &req).await, Err(NotifyError::RetryLater(_))));
    let ok = meta(200, meta_send_response(), "messages", 1).await;
    let app = h.sender(&ok.uri()).await;
    assert!(matches!(send(&app, &req).await.unwrap(), Outcome::Sent { .. }));

    // 190 (Meta's own error example: an OAuth failure): fails loudly and is retried, not swallowed.
    let auth = meta(401, meta_error(190), "messages", 1).await;
    let app = h.sender(&auth.uri()).await;
    assert!(matches!(send(&app, &utility()).await, Err(NotifyError::Auth(190))));
}

#[cfg_attr(fixtures, tokio::test)]
async fn a_template_meta_re_classifies_as_marketing_needs_an_opt_in_from_the_next_send_on() {
    let h = Harness::new().await;
    let wa = h.whatsapp().await;
    let name = format!("order_update_{}", uuid::Uuid::new_v4().simple());
    let reclassify = |category: &str| {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"419561257915477","time":1,"changes":[{{
            "field":"template_category_update","value":{{"message_template_id":1,"message_template_name":"{name}",
            "message_template_language":"en_US","previous_category":"UTILITY","new_category":"{category}"}}}}]}}]}}"#
        )
    };
    let wa = &wa;
    let post = |body: String| async move {
        let resp = wa.handle(whatsapp_request("POST", "", &body, Some(&hub_sign(&body))), "r").await;
        assert_eq!(body_json(&resp)["template_updates"], 1);
    };
    post(reclassify("UTILITY")).await;
    let server = meta(200, meta_send_response(), "messages", 1).await;
    let app = h.sender(&server.uri()).await;
    let to = phone();
    let not_their_order = request(&to, "merchant-demo-1", template(&name), false, false);
    assert_eq!(send(&app, &not_their_order).await.unwrap(), Outcome::Refused { reason: "not_their_order".into() });
    post(reclassify("MARKETING")).await;
    let own_order = request(&to, "merchant-demo-1", template(&name), true, true);
    let refused = send(&app, &own_order).await.unwrap();
    assert_eq!(refused, Outcome::Refused { reason: "no_marketing_opt_in".into() }, "decided on the current category");
    post(reclassify("UTILITY")).await;
    assert!(matches!(
        send(&app, &request(&to, "merchant-demo-1", template(&name), true, true)).await.unwrap(),
        Outcome::Sent { .. }
    ));
}

#[cfg_attr(fixtures, tokio::test)]
async fn a_paid_stripe_checkout_tells_the_customer_on_whatsapp_from_the_merchants_number() {
    let h = Harness::new().await;
    let webhook = h.webhook().await;
    let phone = phone();
    let (body, _, key) = unique(&stripe_fixture_with_contact(&phone));
    webhook.handle(stripe_request(&body, Some(&sign(&body, now()))), "r").await;
    h.drain(&h.worker().await, 1).await;
    let order = h.payment(&key).await.unwrap();
    assert_eq!(order["status"].as_s().unwrap(), "paid");
    assert!(!format!("{order:?}").contains(&phone[1..]), "the phone is not stored on the order");

    let queued = h.take(&h.notifications_url).await;
    assert_eq!(queued.len(), 1);
    let req = nex_shared::domain::envelope::Envelope::<SendRequest>::decode(&queued[0]).unwrap().payload;
    assert_eq!((req.merchant.as_str(), req.phone_number_id.as_deref()), ("merchant-demo-1", None));
    let server = meta(200, meta_send_response(), "messages", 1).await;
    let app = h.sender(&server.uri()).await;
    assert!(matches!(send(&app, &req).await.unwrap(), Outcome::Sent { .. }), "utility template, own open order");
    let sent: serde_json::Value = server.received_requests().await.unwrap()[0].body_json().unwrap();
    assert_eq!((sent["template"]["name"].as_str(), sent["to"].as_str()), (Some("payment_paid"), Some(phone.as_str())));
}

/// Meta's documented answer to a send, with an id of this test's own.
fn accepted(wamid: &str) -> serde_json::Value {
    serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": "+31600000000", "wa_id": "31600000000" }],
        "messages": [{ "id": wamid }],
    })
}

/// A Cloud API stand-in that answers the first send with `first`, then accepts every send as `wamid`.
async fn meta_once_then_accepted(first: ResponseTemplate, wamid: &str) -> MockServer {
    let server = MockServer::start().await;
    let messages = || Mock::given(method("POST")).and(path(format!("/v23.0/{PNID}/messages")));
    messages().respond_with(first).up_to_n_times(1).with_priority(1).mount(&server).await;
    messages().respond_with(ResponseTemplate::new(200).set_body_json(accepted(wamid))).mount(&server).await;
    server
}

/// Found by the soak (issue 14): an attempt cut off while the Cloud API call was under way left its claim
/// to lapse, and the redelivery sent the message again; then (with a mark that never lapsed) a send cut
/// off before Meta had it was never sent at all. Now the redelivery waits for Meta's status webhook, which
/// carries the request's id back (`biz_opaque_callback_data`) and completes the mark.
#[tokio::test]
async fn an_attempt_cut_off_during_the_cloud_api_call_waits_for_metas_status_webhook_and_is_not_sent_again() {
    let h = Harness::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PNID}/messages")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(accepted("wamid.cut"))
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let app = h.sender(&server.uri()).await;
    let req = request(&phone(), "merchant-demo-1", template("order_confirmation"), true, true);
    // Cut off while Meta is answering (the request has reached it), with a claim that lapses in 1 s.
    let lapses = Utc::now() + Duration::seconds(1);
    let cut = tokio::time::timeout(std::time::Duration::from_millis(800), send_locked_until(&app, &req, lapses));
    assert!(cut.await.is_err(), "the attempt was cut off mid-call");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let sent = server.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["biz_opaque_callback_data"].as_str(), Some(req.id.as_str()), "the request's id goes to Meta");
    assert!(matches!(send(&app, &req).await, Err(NotifyError::Unconfirmed)), "the redelivery waits for Meta's word");

    // Meta's status webhook for the message (the messaging worker applies it): the mark is completed.
    assert!(
        !confirm_sent(&app.idempotency, "merchant-demo-2", &req.id, "wamid.cut").await.unwrap(),
        "another merchant's status confirms nothing of this one's"
    );
    assert!(confirm_sent(&app.idempotency, "merchant-demo-1", &req.id, "wamid.cut").await.unwrap());
    assert_eq!(send(&app, &req).await.unwrap(), Outcome::Sent { wamid: "wamid.cut".into() });
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "Meta was called once");
    assert_eq!(send(&app, &req).await.unwrap(), Outcome::AlreadyDone(Some("wamid.cut".into())));
    assert!(
        !confirm_sent(&app.idempotency, "merchant-demo-1", "never-sent", "wamid.x").await.unwrap(),
        "a status creates nothing"
    );
}

/// An answer that does not say whether Meta took the message (here a 2xx without a message id; a timeout
/// alike) is not retried at once (Meta could get it twice): the redelivery waits for Meta's status
/// webhook, and once the wait passes with none, Meta never had it and it is sent.
#[tokio::test]
async fn a_send_without_a_usable_answer_is_sent_again_only_once_its_wait_for_metas_word_has_passed() {
    let h = Harness::new().await;
    let unusable = serde_json::json!({ "messaging_product": "whatsapp", "messages": [] });
    let server = meta_once_then_accepted(ResponseTemplate::new(200).set_body_json(unusable), "wamid.second").await;
    let app = h.sender(&server.uri()).await;
    let req = request(&phone(), "merchant-demo-1", template("order_confirmation"), true, true);
    let lock = || Utc::now() + Duration::seconds(30);
    let wait = Duration::seconds(2);
    assert!(matches!(send_waiting(&app, &req, lock(), wait).await, Err(NotifyError::Unconfirmed)));
    assert!(matches!(send_waiting(&app, &req, lock(), wait).await, Err(NotifyError::Unconfirmed)));
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "not sent again while Meta may still say");
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(send_waiting(&app, &req, lock(), wait).await.unwrap(), Outcome::Sent { wamid: "wamid.second".into() });
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_send_meta_refused_with_a_rate_limit_is_sent_by_the_redelivery() {
    let h = Harness::new().await;
    let limited = serde_json::json!({ "error": { "message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429, "fbtrace_id": "Nex" } });
    let server = meta_once_then_accepted(ResponseTemplate::new(429).set_body_json(limited), "wamid.later").await;
    let app = h.sender(&server.uri()).await;
    let req = request(&phone(), "merchant-demo-1", template("order_confirmation"), true, true);
    assert!(matches!(send(&app, &req).await, Err(NotifyError::RetryLater(_))));
    assert_eq!(send(&app, &req).await.unwrap(), Outcome::Sent { wamid: "wamid.later".into() });
}

/// Stripe's checkout.session.completed fixture as a merchant's Checkout sends it when it collects the
/// phone number and tags the session with its merchant id.
fn stripe_fixture_with_contact(phone: &str) -> String {
    fixture("checkout.session.completed.json")
        .replace("\"phone\": null", &format!("\"phone\": \"{phone}\""))
        .replace("\"metadata\": {\n      }", "\"metadata\": {\"merchant_id\": \"merchant-demo-1\"}")
}

/// Without `../shared/fixtures` beside the repository, this file's 7 conformance tests (marked
/// `cfg_attr(fixtures, ...)`) are not built; this says so in the run.
#[cfg(not(fixtures))]
#[test]
#[ignore = "7 conformance tests need ../shared/fixtures beside the repository"]
fn conformance_tests_skipped() {}
