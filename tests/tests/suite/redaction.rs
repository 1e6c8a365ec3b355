use nex_tests::*;

/// A full run with the real payloads, then every captured log line of this test binary is searched for
/// personal data and secrets. Other tests in the binary log into the same buffer, so it covers them too.
#[cfg_attr(fixtures, tokio::test)]
async fn no_personal_data_signature_or_secret_reaches_a_log_line() {
    let h = Harness::new().await;
    let webhook = h.webhook().await;
    let worker = h.worker().await;
    let mut signatures = Vec::new();
    for name in fixture_names() {
        let (body, _, _) = unique(&fixture(&name));
        let sig = sign(&body, now());
        webhook.handle(stripe_request(&body, Some(&sig)), "req-redaction").await;
        webhook.handle(stripe_request(&body, Some(&sig)), "req-redaction-dup").await;
        let forged = nex_shared::domain::stripe::signature::sign_header(&["whsec_x"], now(), body.as_bytes());
        webhook.handle(stripe_request(&body, Some(&forged)), "req-redaction-forged").await;
        signatures.push(sig);
        signatures.push(forged);
    }
    // A checkout that collected the customer's phone for WhatsApp order messages.
    let with_phone = fixture("checkout.session.completed.json")
        .replace("\"phone\": null", "\"phone\": \"+31611112222\"")
        .replace("\"metadata\": {\n      }", "\"metadata\": {\"merchant_id\": \"merchant-demo-1\"}");
    let (with_phone, _, _) = unique(&with_phone);
    webhook.handle(stripe_request(&with_phone, Some(&sign(&with_phone, now()))), "req-redaction-phone").await;
    h.drain(&worker, 1).await;
    assert!(logs().contains("order notification queued"));

    // WhatsApp: every fixture (message texts, contact names, phone numbers), plus a STOP.
    let wa = h.whatsapp().await;
    let mut texts = Vec::new();
    // Meta's message ids are base64 of a record that holds the person's number: logged by reference only.
    let mut wamids = Vec::new();
    for (_, body) in whatsapp_fixtures() {
        let body = unique_wamids(&body);
        wa.handle(whatsapp_request("POST", "", &body, Some(&hub_sign(&body))), "req-redaction-wa").await;
        let forged = nex_shared::domain::whatsapp::signature::sign_header("x", body.as_bytes());
        wa.handle(whatsapp_request("POST", "", &body, Some(&forged)), "req-redaction-wa-forged").await;
        for item in nex_shared::domain::whatsapp::webhook::parse(body.as_bytes()).unwrap() {
            use nex_shared::domain::whatsapp::webhook::Item;
            match item {
                Item::Message { text, wamid, .. } => {
                    texts.extend(text);
                    wamids.push(wamid);
                }
                Item::Status { wamid, .. } => wamids.push(wamid),
                _ => {}
            }
        }
    }
    let stop =
        unique_wamids(&whatsapp_fixture("captured", "bindambc_inbound_text.json")).replace("hi everyone!", "STOP");
    wa.handle(whatsapp_request("POST", "", &stop, Some(&hub_sign(&stop))), "req-redaction-wa-stop").await;
    assert!(texts.len() >= 5);

    h.send(&h.queue_url, "{\"email\":\"leak@example.com\"}").await;
    h.drain(&worker, 0).await;

    let logs = logs();
    assert!(logs.contains("req-redaction"), "the capture saw this run");
    assert!(logs.contains("stripe event queued") && logs.contains("payment event applied"));
    let forbidden = [
        "Jenny Rosen",
        "510 Townsend",
        "San Francisco",
        "94103",
        "stripe@example.com",
        "example@example.com",
        "leak@example.com",
        STRIPE_SECRET,
        PEPPER,
        "whsec_",
        // WhatsApp fixtures and the flows above: contact names, phone numbers, secrets, API keys.
        "Sheena Nelson",
        "Mauricio Binda",
        "16505551234",
        "1111111111111",
        "5511111111111",
        "31611112222",
        APP_SECRET,
        VERIFY_TOKEN,
        MERCHANT_KEY,
    ];
    for needle in forbidden.iter().map(|s| s.to_string()).chain(signatures.iter().cloned()) {
        assert!(!logs.contains(&needle), "log output contains {needle}");
    }
    for wamid in wamids.iter().filter(|w| w.len() > 8) {
        assert!(!logs.contains(wamid.as_str()), "a wamid reached the logs: {wamid}");
    }
    for text in texts.iter().filter(|t| t.len() > 3) {
        assert!(!logs.contains(text.as_str()), "message text reached the logs: {text}");
    }
    assert!(logs.contains("opt-out keyword recorded"));
    for sig in &signatures {
        let v1 = sig.split("v1=").nth(1).unwrap();
        assert!(!logs.contains(v1), "a signature reached the logs");
    }
    assert!(!logs.contains("\"body\""), "no request body is logged");
}

/// Without `../shared/fixtures` beside the repository, this file's 1 conformance tests (marked
/// `cfg_attr(fixtures, ...)`) are not built; this says so in the run.
#[cfg(not(fixtures))]
#[test]
#[ignore = "1 conformance tests need ../shared/fixtures beside the repository"]
fn conformance_tests_skipped() {}
