//! The Stripe path under injected AWS faults (issue 14): the functions talk to the emulator through the
//! fault layer (`nex_local::faults`), which fails a seeded share of calls as AWS does, before or after
//! applying them. Stripe redelivers what was not answered 2xx. Nothing may be lost or doubled.

use std::sync::Arc;

use nex_local::faults::{self, Plan, Stats};
use nex_shared::adapters::aws::Aws;
use nex_tests::*;

/// Builds `F` through the fault layer, as Lambda retries an init that failed.
async fn build<F: Function>(aws: &Aws, logical: &str, overrides: &[(&str, &str)]) -> F {
    let mut env = env_of(logical);
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    for _ in 0..20 {
        if let Ok(f) = F::build(aws, F::config(&env).unwrap(), system()).await {
            return f;
        }
    }
    panic!("{logical} never started through the fault layer");
}

#[tokio::test]
async fn under_injected_aws_faults_no_stripe_event_is_lost_or_handed_on_twice() {
    let h = Harness::new().await;
    let stats = Arc::new(Stats::default());
    let upstream = std::env::var("AWS_ENDPOINT_URL").expect("the emulator's URL");
    let proxy = faults::spawn(&upstream, Plan::new(0.10, 20261201), stats.clone()).await.unwrap();
    let aws = Aws::new(h.sdk.clone()).with_endpoint(&proxy);
    let webhook: StripeWebhook = build(&aws, "StripeWebhookFunction", &[("PLATFORM_TABLE", &h.platform)]).await;
    let overrides =
        [("PLATFORM_TABLE", h.platform.as_str()), ("NOTIFICATIONS_QUEUE_URL", h.notifications_url.as_str())];
    let worker: PaymentsWorker = build(&aws, "PaymentsWorkerFunction", &overrides).await;

    // 40 events, 12 of them delivered twice, in a shuffled order; each delivery retried as Stripe does
    // until it is answered 2xx.
    let events: Vec<_> = (0..40).map(|_| sample("payment_intent.succeeded")).collect();
    let deliveries: Vec<usize> = (0..40).chain(0..12).collect();
    let mut positions: Vec<(usize, usize)> = deliveries.into_iter().enumerate().collect();
    positions.sort_by_key(|(at, _)| (at * 7919) % 53);
    let deliveries: Vec<usize> = positions.into_iter().map(|(_, i)| i).collect();
    let mut retried = 0;
    for i in deliveries {
        let (body, _, _) = &events[i];
        let mut attempts = 0;
        loop {
            attempts += 1;
            let resp = webhook.handle(stripe_request(body, Some(&sign(body, now()))), "r").await;
            if (200..300).contains(&resp.status_code) {
                break;
            }
            assert!([429, 500, 502, 503, 504].contains(&resp.status_code), "a fault is a retryable answer: {resp:?}");
            assert!(attempts < 30, "Stripe would keep retrying; the webhook never accepted the event");
        }
        retried += attempts - 1;
    }

    // Every accepted event was handed on exactly once, however often it was delivered.
    h.pump().await;
    assert_eq!(h.depth(&h.queue_url).await, 40, "one queue message per event");
    // As in the template, a redelivery comes after the invocation's deadline (there: 180 s visibility,
    // 30 s timeout), so a claim whose answer was lost has expired by then.
    let mut rounds = Vec::new();
    for _ in 0..30 {
        let round = h
            .drain_queue(&h.queue_url, &h.queue_arn, 3, |event| {
                worker.handle_until(event, "r", chrono::Utc::now() + chrono::Duration::seconds(2))
            })
            .await;
        rounds.push(round);
        // Redelivered records are invisible until their visibility timeout ends: wait for them.
        if h.depth(&h.queue_url).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let round = rounds;
    assert_eq!(h.depth(&h.dlq_url).await, 0, "nothing reached the DLQ: {round:?}");
    assert_eq!(h.depth(&h.queue_url).await, 0, "every queued event was applied: {round:?}");
    for (_, _, pi) in &events {
        let record = h.payment(pi).await.unwrap_or_else(|| panic!("{pi} was lost"));
        assert_eq!(record["status"].as_s().unwrap(), "paid");
    }
    let injected = stats.injected_total();
    assert!(injected > 0, "the layer injected faults");
    println!(
        "faults: {injected} injected in {} AWS calls; {retried} Stripe retries; {round:?}",
        stats.calls.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Found by the soak (issue 14): a claim applied whose answer was lost read, on the SDK's retry, as
/// another invocation's claim; the work waited for the lock to lapse, and a mark that never lapses (the
/// sender's, before the Cloud API call) refused its own message for good.
#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_still_its_own_on_the_sdk_retry() {
    use nex_local::faults::Fault;
    use nex_shared::adapters::dynamo_idempotency::DynamoIdempotency;
    use nex_shared::ports::{Claim, IdempotencyStore};
    let h = Harness::new().await;
    let stats = Arc::new(Stats::default());
    let upstream = std::env::var("AWS_ENDPOINT_URL").expect("the emulator's URL");
    let plan = Plan {
        faults: vec![Fault::LostAnswer],
        operations: vec!["DynamoDB_20120810.PutItem".into()],
        ..Plan::new(0.5, 14)
    };
    let proxy = faults::spawn(&upstream, plan, stats.clone()).await.unwrap();
    let claims = DynamoIdempotency::new(Aws::new(h.sdk.clone()).with_endpoint(&proxy).dynamodb(), &h.platform);
    let now = chrono::Utc::now();
    let (mut acquired, mut failed) = (0, 0);
    for i in 0..24 {
        let key = format!("t#{}#{i}", uuid::Uuid::new_v4().simple());
        match claims.claim(&key, now, now + chrono::Duration::seconds(30), now + chrono::Duration::days(1)).await {
            Ok(Claim::Acquired) => acquired += 1,
            Ok(other) => panic!("a fresh key's claim came back {other:?}"),
            Err(_) => failed += 1, // every attempt's answer lost: the caller retries the record
        }
    }
    assert!(stats.injected_total() > 0 && acquired > 0, "answers were lost ({failed} claims failed outright)");
}
