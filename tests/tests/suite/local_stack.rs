use nex_tests::*;

#[tokio::test]
async fn the_ttl_reaper_deletes_only_items_whose_deadline_has_passed() {
    let h = Harness::new().await;
    let platform = table("PlatformTable");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let now = chrono::Utc::now().timestamp();
    for (key, expires) in [(format!("reap#{tag}#old"), now - 10), (format!("reap#{tag}#live"), now + 3600)] {
        h.ddb
            .put_item()
            .table_name(&platform)
            .item("pk", aws_sdk_dynamodb::types::AttributeValue::S(key))
            .item("expires_at", aws_sdk_dynamodb::types::AttributeValue::N(expires.to_string()))
            .send()
            .await
            .unwrap();
    }
    let deleted = nex_local::ttl::reap_table(&h.ddb, &platform, "expires_at", now).await.unwrap();
    assert!(deleted >= 1);
    assert!(h.item("PlatformTable", "pk", &format!("reap#{tag}#old")).await.is_none());
    assert!(h.item("PlatformTable", "pk", &format!("reap#{tag}#live")).await.is_some());
}

#[test]
fn every_table_the_template_declares_has_ttl_enabled_in_the_provisioned_stack() {
    let m = manifest();
    let tables = m["tables"].as_object().unwrap();
    let ttl = m["ttl"].as_object().unwrap();
    for logical in tables.keys() {
        assert_eq!(ttl[logical]["attribute"], "expires_at", "{logical}");
    }
}

#[test]
fn every_sample_event_is_a_valid_http_api_v2_event_signed_with_the_local_secret() {
    let dir = format!("{}/../events/stripe", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let event: aws_lambda_events::apigw::ApiGatewayV2httpRequest =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let body = event.body.as_deref().unwrap();
        let sig = event.headers.get("stripe-signature").unwrap().to_str().unwrap();
        let verifier =
            nex_shared::domain::stripe::signature::Verifier::new(&[secrecy::SecretString::from(STRIPE_SECRET)])
                .unwrap();
        verifier.verify(Some(sig), body.as_bytes(), 0, None).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        n += 1;
    }
    assert!(n >= 7);
}

#[tokio::test]
async fn the_sample_sqs_batch_applies_its_valid_record_and_reports_only_the_unknown_version() {
    let h = Harness::new().await;
    let path = format!("{}/../events/sqs/payments-worker-batch.json", env!("CARGO_MANIFEST_DIR"));
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(30);
    let response = h.worker().await.handle_until(event, "sample", deadline).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["00000002-0000-4000-8000-000000000000"]);
    assert!(h.payment("pi_3NexDemoOrderA").await.is_some());
}

#[tokio::test]
async fn an_s3_object_is_stored_encrypted_and_readable_only_through_a_short_lived_link() {
    use nex_shared::ports::ObjectStore;
    let h = Harness::new().await;
    let bucket = format!("t-{}", uuid::Uuid::new_v4().simple());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&h.sdk).force_path_style(true).build());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let store = nex_shared::adapters::s3_objects::S3Objects::new(h.aws.s3(), bucket.clone());
    store.put_private("exports/x.json", b"{\"ok\":true}".to_vec(), "application/json").await.unwrap();
    let head = s3.head_object().bucket(&bucket).key("exports/x.json").send().await.unwrap();
    assert_eq!(head.server_side_encryption(), Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256));
    let link = store.presigned_get("exports/x.json", std::time::Duration::from_secs(300)).await.unwrap();
    assert!(link.contains("X-Amz-Expires=300") && link.contains("X-Amz-Signature="), "{link}");
    store.delete("exports/x.json").await.unwrap();
    store.delete("exports/x.json").await.unwrap();
    assert!(s3.head_object().bucket(&bucket).key("exports/x.json").send().await.is_err());
}

fn sample<T: serde::de::DeserializeOwned>(rel: &str) -> T {
    let path = format!("{}/../events/{rel}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

#[tokio::test]
async fn the_whatsapp_and_consent_sample_events_run_through_their_handlers() {
    let h = Harness::new().await;
    let wa = h.whatsapp().await;
    let resp = wa.handle(sample("whatsapp/01-verification-handshake.json"), "sample").await;
    assert_eq!(resp.status_code, 200);
    for name in ["02-inbound-text", "03-receipt-delivered", "04-receipt-failed-131047"] {
        let resp = wa.handle(sample(&format!("whatsapp/{name}.json")), "sample").await;
        assert_eq!(resp.status_code, 200, "{name}: {:?}", body_json(&resp));
    }
    let resp = h.merchant_api().await.handle(sample("http/consent-opt-in.json"), "sample").await;
    assert_eq!(resp.status_code, 201);
    let batch: aws_lambda_events::sqs::SqsEvent = sample("sqs/messaging-worker-batch.json");
    assert!(h.messaging_worker().await.handle(batch, "sample").await.batch_item_failures.is_empty());
    let sends: aws_lambda_events::sqs::SqsEvent = sample("sqs/notifications-sender-batch.json");
    for r in sends.records {
        let body = r.body.unwrap();
        nex_shared::domain::envelope::Envelope::<nex_shared::usecases::send_notification::SendRequest>::decode(&body)
            .unwrap();
    }
}

#[tokio::test]
async fn the_sweep_and_data_request_sample_events_run_through_their_handlers() {
    use nex_shared::adapters::memory::FixedClock;
    let h = Harness::new().await;
    let p = h.private().await;
    let sweep = h.sweep(&p, FixedClock::at(chrono::Utc::now())).await;
    let deadline = chrono::Utc::now() + chrono::Duration::minutes(15);
    // The EventBridge scheduled event starts a run; the continuation message runs it on.
    let out = sweep.handle(sample("schedule/retention-sweep.json"), "sample", deadline).await.unwrap();
    assert_eq!(out["complete"], true);
    let out = sweep.handle(sample("sqs/retention-sweep-continue.json"), "sample", deadline).await.unwrap();
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    // The merchant API's data-request routes, and a batch for the worker naming a request it can answer.
    let mut api = h.merchant_api().await;
    api.requests_queue = nex_shared::adapters::sqs_queue::SqsQueue::new(h.sqs.clone(), h.data_requests_url.clone());
    let opened = api.handle(sample("http/data-request-open.json"), "sample").await;
    assert_eq!(opened.status_code, 202, "{:?}", body_json(&opened));
    let shown = api.handle(sample("http/data-request-show.json"), "sample").await;
    assert_eq!(shown.status_code, 404, "the sample names a request this stack never opened");
    let batch: aws_lambda_events::sqs::SqsEvent = sample("sqs/data-requests-worker-batch.json");
    let worker = h.dsr_worker(&p, nex_shared::ports::SystemClock).await;
    let failures = worker.handle(batch, "sample").await.batch_item_failures;
    assert_eq!(failures.len(), 1, "an unknown request fails (and reaches the DLQ), it is not made up");
}

#[tokio::test]
async fn the_audit_appender_sample_batch_fails_only_what_is_not_a_ledger_reference() {
    let h = Harness::new().await;
    let appender: AuditAppender = h.function("AuditAppenderFunction", &[], system()).await;
    let batch: aws_lambda_events::sqs::SqsEvent = sample("sqs/audit-appender-batch.json");
    let failures = appender.handle(batch, "sample").await.batch_item_failures;
    // The two references name entries this stack never recorded: nothing to attest, nothing failed.
    let ids: Vec<&str> = failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(ids, ["00000001-0000-4000-8000-000000000003"]);
}

#[tokio::test]
async fn the_registry_and_the_template_name_the_same_functions_and_each_builds_from_its_variables() {
    use nex_shared::function::Kind;
    let h = Harness::new().await;
    let functions = manifest()["functions"].as_object().expect("functions");
    let mut deployed: Vec<&str> = functions.values().filter_map(|f| f["binary"].as_str()).collect();
    deployed.sort();
    let mut registered: Vec<&str> = nex_shared::registry::FUNCTIONS.iter().map(|e| e.name).collect();
    registered.sort();
    assert_eq!(deployed, registered, "template.yaml builds exactly the registry's functions");
    let routed: Vec<&str> = manifest()["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| functions[r["function"].as_str()?]["binary"].as_str())
        .collect();
    for (logical, spec) in functions {
        let entry = nex_shared::registry::find(spec["binary"].as_str().unwrap()).unwrap();
        let is_routed = routed.contains(&entry.name);
        assert_eq!(entry.trigger == Kind::Http, is_routed, "{logical}: HTTP exactly when it has routes");
        entry
            .build(&h.aws, &env_of(logical), system())
            .await
            .unwrap_or_else(|e| panic!("{logical} builds from the template's variables: {e}"));
    }
}

#[tokio::test]
async fn the_marketplace_sample_events_run_through_their_handlers() {
    let h = Harness::new().await;
    let scheduler: nex_shared::apps::orders::MarketplaceScheduler =
        h.function("MarketplaceSchedulerFunction", &[("POLL_QUEUE_URL", &h.data_requests_url)], system()).await;
    let event: serde_json::Value = sample("schedule/marketplace-scheduler.json");
    let out =
        nex_shared::function::ScheduleFunction::schedule(&scheduler, event, &invocation("sample", 60)).await.unwrap();
    assert!(out["queued"].is_u64());
    let poller: nex_shared::apps::orders::MarketplacePoller =
        h.function("MarketplacePollerFunction", &[], system()).await;
    let batch: aws_lambda_events::sqs::SqsEvent = sample("sqs/marketplace-poller-batch.json");
    assert!(poller.handle(batch, "sample").await.batch_item_failures.is_empty(), "an unknown connection is skipped");
    let api = h.merchant_api().await;
    assert_eq!(api.handle(sample("http/connections-list.json"), "sample").await.status_code, 200);
    assert_eq!(api.handle(sample("http/connection-start-amazon.json"), "sample").await.status_code, 201);
    let ebay: nex_shared::apps::orders::EbayAccountDeletion =
        h.function("EbayAccountDeletionFunction", &[], system()).await;
    let resp = ebay.handle(sample("http/ebay-account-deletion-check.json"), "sample").await;
    assert_eq!(resp.status_code, 200);
    assert_eq!(body_json(&resp)["challengeResponse"].as_str().map(str::len), Some(64));
}

#[tokio::test]
async fn the_forwarding_sample_events_run_through_their_handlers() {
    let h = Harness::new().await;
    let f = h.forwarding().await;
    // The order event names an event item this stack never wrote, the payment one a record it never held:
    // nothing to forward, nothing failed.
    let dispatcher = f.dispatcher(&h, system()).await;
    let batch: aws_lambda_events::sqs::SqsEvent = sample("sqs/webhook-dispatcher-batch.json");
    assert!(dispatcher.handle(batch, "sample").await.batch_item_failures.is_empty());
    let sender = f.sender(&h, &[], system()).await;
    let batch: aws_lambda_events::sqs::SqsEvent = sample("sqs/webhook-sender-batch.json");
    assert!(sender.handle(batch, "sample").await.batch_item_failures.is_empty(), "an unknown delivery is stale");
    let scheduler = f.scheduler(&h, system()).await;
    let out = scheduler
        .handle(sample("schedule/webhook-scheduler.json"), "sample", chrono::Utc::now() + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(out["queued"], 0);
    let api = f.merchant_api(&h, system()).await;
    let created = api.handle(sample("http/endpoint-create.json"), "sample").await;
    assert_eq!(created.status_code, 201, "{:?}", body_json(&created));
    let listed = body_json(&api.handle(sample("http/endpoints-list.json"), "sample").await);
    assert_eq!(listed["endpoints"].as_array().map(Vec::len), Some(1));
    let replay = api.handle(sample("http/endpoint-replay.json"), "sample").await;
    assert_eq!(replay.status_code, 404, "the sample names an endpoint this stack never registered");
}

#[tokio::test]
async fn the_insights_sample_events_run_through_their_handlers() {
    let h = Harness::new().await;
    let table = h.insights_table().await;
    let scheduler: nex_shared::apps::insights::InsightsScheduler = h
        .function(
            "InsightsSchedulerFunction",
            &[("INSIGHTS_TABLE", &table), ("INSIGHTS_QUEUE_URL", &h.data_requests_url)],
            system(),
        )
        .await;
    let out = scheduler
        .handle(
            sample("schedule/insights-scheduler.json"),
            "sample",
            chrono::Utc::now() + chrono::Duration::seconds(60),
        )
        .await
        .unwrap();
    assert_eq!(out["queued"], 0, "no ad account registered in a fresh table");
    assert!(out["version_days_left"].as_i64().unwrap() > 45, "the configured version is not near its end");
    let puller: nex_shared::apps::insights::InsightsPuller =
        h.function("InsightsPullerFunction", &[("INSIGHTS_TABLE", &table)], system()).await;
    let batch: aws_lambda_events::sqs::SqsEvent = sample("sqs/insights-puller-batch.json");
    assert!(
        puller.handle(batch, "sample").await.batch_item_failures.is_empty(),
        "an unknown account is skipped; the mapping is kept"
    );
    let api: MerchantApi = h.function("ConsentApiFunction", &[("INSIGHTS_TABLE", &table)], system()).await;
    let perf = api.handle(sample("http/ad-performance.json"), "sample").await;
    assert_eq!(perf.status_code, 200);
    assert_eq!(api.handle(sample("http/ad-campaign-claim.json"), "sample").await.status_code, 202, "a request, kept");
    // The version in the template is checked at init: an expired one refuses to start.
    let mut env = env_of("InsightsPullerFunction");
    env.insert("META_API_VERSION".into(), "v24.0".into());
    let old = nex_shared::apps::insights::InsightsPuller::config(&env).unwrap();
    assert!(nex_shared::apps::insights::InsightsPuller::build(&h.aws, old, system()).await.is_err());
}
