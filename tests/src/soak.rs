//! The soak (issue 14): Stripe and WhatsApp deliveries, with duplicates, shuffled, many at a time, sent
//! over HTTP to the local runner (`nex_local::runner`) while its functions' AWS calls fail at a seeded
//! rate and some invocations are cut off; each delivery retried as the platforms retry what was not
//! answered 2xx. Then it reconciles what the platforms sent against what the stack holds, and runs the
//! retention sweep under the same faults on a seeded table.
//!
//! The same code runs quick in the tests (`tests/tests/soak.rs`, asserting zeros) and long in the
//! benchmark (`infra/bench.sh soak`, printing the table). Both need a stack of their own: the runner polls
//! the stack's queues, so `infra/test.sh` and `infra/bench.sh` provision a fresh emulator for it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::StreamExt;
use nex_local::faults::{self, Plan, Rng};
use nex_local::manifest::Manifest;
use nex_local::runner::{self, Cuts};
use nex_shared::domain::subject::{IdentifierKind, SubjectHasher};
use serde_json::{json, Value};

use crate::{hub_sign, sign, PEPPER};

mod capabilities;
pub use capabilities::Capabilities;

#[derive(Debug, Clone)]
pub struct Config {
    /// Deliveries of each platform (duplicates included).
    pub stripe: usize,
    pub whatsapp: usize,
    /// The share of deliveries that repeat an earlier one.
    pub duplicates: f64,
    pub concurrency: usize,
    /// The share of the functions' AWS calls that fail.
    pub faults: f64,
    /// The share of invocations cut off.
    pub cuts: f64,
    pub seed: u64,
    /// Items of the sweep's seeded table (a fifth of them due).
    pub sweep_items: usize,
    /// How long to wait for the stack to settle after the last delivery.
    pub settle: Duration,
    /// Merchants connected to the three marketplace stand-ins, each with an endpoint for its order events
    /// (and, when there is any, one endpoint of the storefront's for its payment events).
    pub merchants: usize,
    /// Ad accounts pulled from the Graph stand-in.
    pub ad_accounts: usize,
}

impl Config {
    /// The soak: 10,000 + 10,000 deliveries, 30% duplicates, 32 at a time, 10% faults, 1% cuts.
    pub fn full() -> Self {
        Self {
            stripe: 10_000,
            whatsapp: 10_000,
            duplicates: 0.30,
            concurrency: 32,
            faults: 0.10,
            cuts: 0.01,
            seed: 20261201,
            sweep_items: 5_000,
            // At the emulator's ~100 requests/s the streams' backlog drains for many minutes after the last
            // delivery; the run waits for it (the table says how long it took).
            settle: Duration::from_secs(3600),
            merchants: 50,
            ad_accounts: 20,
        }
    }

    /// `full()` with what the environment overrides (`NEX_SOAK_STRIPE`, `NEX_SOAK_WHATSAPP`,
    /// `NEX_SOAK_FAULTS`, `NEX_SOAK_CUTS`, `NEX_SOAK_SEED`, `NEX_SOAK_SWEEP_ITEMS`, `NEX_SOAK_MERCHANTS`,
    /// `NEX_SOAK_AD_ACCOUNTS`).
    pub fn from_env(self) -> Self {
        fn var<T: std::str::FromStr>(k: &str, default: T) -> T {
            std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        }
        Self {
            stripe: var("NEX_SOAK_STRIPE", self.stripe),
            whatsapp: var("NEX_SOAK_WHATSAPP", self.whatsapp),
            faults: var("NEX_SOAK_FAULTS", self.faults),
            cuts: var("NEX_SOAK_CUTS", self.cuts),
            seed: var("NEX_SOAK_SEED", self.seed),
            sweep_items: var("NEX_SOAK_SWEEP_ITEMS", self.sweep_items),
            merchants: var("NEX_SOAK_MERCHANTS", self.merchants),
            ad_accounts: var("NEX_SOAK_AD_ACCOUNTS", self.ad_accounts),
            ..self
        }
    }
}

/// What one distinct platform event is, and what it must leave behind.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A paid Checkout Session: a paid payment record and one `payment_paid` notification.
    StripeCheckout { payment_key: String, phone: String },
    /// An inbound text: one transcript message.
    Message { wamid: String },
    /// A delivery receipt: the message's state.
    Receipt { wamid: String },
    /// STOP: one ledger entry, one audit entry, the person opted out.
    Stop { wamid: String, subject: String },
    /// DATA: a request opened and answered, the person told once of each.
    Data { wamid: String, phone: String },
}

#[derive(Debug, Clone)]
struct Event {
    kind: Kind,
    body: String,
}

const MERCHANT: &str = "merchant-demo-1";
/// merchant-demo-1's WhatsApp number (`infra/local/dev-seed.json`).
const PHONE_NUMBER_ID: &str = "106540352242922";

/// `api_version`: the stack's pinned one (`STRIPE_API_VERSION`), as the account's endpoint sends.
fn stripe_event(tag: &str, nonce: usize, i: usize, now: i64, api_version: &str) -> Event {
    let payment_key = format!("pi_soak{tag}{i:06}");
    let phone = format!("+3197{nonce:03}{i:05}");
    let body = json!({
        "id": format!("evt_soak{tag}{i:06}"),
        "object": "event",
        "api_version": api_version,
        "created": now,
        "data": { "object": {
            "id": format!("cs_test_soak{tag}{i:06}"),
            "object": "checkout.session",
            "amount_subtotal": 1299 + i as i64,
            "amount_total": 1299 + i as i64,
            "client_reference_id": null,
            "currency": "eur",
            "customer": null,
            "customer_details": { "email": null, "name": null, "phone": phone, "tax_exempt": "none", "tax_ids": [] },
            "livemode": false,
            "metadata": { "order_id": format!("SOAK-{i}"), "merchant_id": MERCHANT },
            "mode": "payment",
            "payment_intent": payment_key,
            "payment_status": "paid",
            "status": "complete",
        }},
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": "checkout.session.completed",
    });
    Event { kind: Kind::StripeCheckout { payment_key, phone }, body: serde_json::to_string_pretty(&body).unwrap() }
}

fn whatsapp_value(value: Value) -> String {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({ "display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID });
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "419561257915477", "changes": [{ "field": "messages", "value": value }] }],
    });
    serde_json::to_string(&body).unwrap()
}

fn inbound(wamid: &str, phone: &str, text: &str, now: i64) -> String {
    whatsapp_value(json!({
        "contacts": [{ "profile": { "name": "Soak Person" }, "wa_id": phone }],
        "messages": [{ "from": phone, "id": wamid, "timestamp": now.to_string(), "type": "text", "text": { "body": text } }],
    }))
}

fn whatsapp_event(tag: &str, nonce: usize, i: usize, now: i64, hasher: &SubjectHasher, rng: &mut Rng) -> Event {
    let phone = format!("3198{nonce:03}{i:05}");
    let wamid = format!("wamid.soak{tag}{i:06}");
    let roll = rng.unit();
    if roll < 0.60 {
        let body = inbound(&wamid, &phone, &format!("Is order SOAK-{i} on its way?"), now);
        Event { kind: Kind::Message { wamid }, body }
    } else if roll < 0.85 {
        let body = whatsapp_value(json!({
            "statuses": [{
                "id": wamid, "status": "delivered", "timestamp": now.to_string(), "recipient_id": phone,
                "conversation": { "id": format!("soakconv{i}"), "origin": { "type": "utility" } },
                "pricing": { "billable": true, "pricing_model": "PMP", "category": "utility" },
            }],
        }));
        Event { kind: Kind::Receipt { wamid }, body }
    } else if roll < 0.95 {
        let subject = hasher.hash(IdentifierKind::Phone, &phone).expect("a phone hashes");
        Event { kind: Kind::Stop { wamid: wamid.clone(), subject }, body: inbound(&wamid, &phone, "STOP", now) }
    } else {
        Event {
            kind: Kind::Data { wamid: wamid.clone(), phone: phone.clone() },
            body: inbound(&wamid, &phone, "DATA", now),
        }
    }
}

/// `distinct` events and `total - distinct` repeats of them, shuffled.
fn deliveries(distinct: usize, total: usize, rng: &mut Rng) -> Vec<usize> {
    let mut out: Vec<usize> = (0..distinct).collect();
    out.extend((distinct..total).map(|_| rng.below(distinct.max(1))));
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i + 1));
    }
    out
}

/// What the platforms saw of their deliveries.
#[derive(Debug, Default)]
struct Sent {
    attempts: AtomicU64,
    /// Answers by status (0: the connection failed).
    statuses: Mutex<BTreeMap<u16, u64>>,
    micros: Mutex<Vec<u64>>,
    /// Deliveries never answered 2xx within the retry budget.
    given_up: AtomicU64,
}

async fn deliver(client: &reqwest::Client, url: &str, stripe: bool, body: &str, sent: &Sent) {
    for attempt in 0..30u32 {
        sent.attempts.fetch_add(1, Ordering::Relaxed);
        let mut req = client.post(url).header("content-type", "application/json").body(body.to_owned());
        req = if stripe {
            req.header("stripe-signature", sign(body, crate::now())).header("user-agent", "Stripe/1.0")
        } else {
            req.header("x-hub-signature-256", hub_sign(body))
        };
        let started = Instant::now();
        let status = match req.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        sent.micros.lock().unwrap().push(started.elapsed().as_micros() as u64);
        *sent.statuses.lock().unwrap().entry(status).or_default() += 1;
        if (200..300).contains(&status) {
            return;
        }
        // The platforms back off; shortened here (Stripe: hours, Meta: minutes) so that a run ends.
        tokio::time::sleep(Duration::from_millis((25u64 << attempt.min(5)).min(800))).await;
    }
    sent.given_up.fetch_add(1, Ordering::Relaxed);
}

/// The rows of the reconciliation, by effect: each expected effect counted once, as applied exactly as
/// often as it should be, less (lost) or more (doubled).
#[derive(Default)]
pub struct Tally(BTreeMap<String, Row>);

impl Tally {
    pub fn add(&mut self, flow: &str, count: u64, expected: u64) {
        let r = self.0.entry(flow.to_owned()).or_insert_with(|| Row { flow: flow.to_owned(), ..Row::default() });
        r.expected += 1;
        match count.cmp(&expected) {
            std::cmp::Ordering::Equal => r.once += 1,
            std::cmp::Ordering::Less => r.lost += 1,
            std::cmp::Ordering::Greater => r.doubled += 1,
        }
    }
}

/// One row of the reconciliation: a kind of effect.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub flow: String,
    pub expected: u64,
    pub once: u64,
    pub lost: u64,
    pub doubled: u64,
}

#[derive(Debug, Default)]
pub struct SweepRow {
    pub items: u64,
    pub due: u64,
    pub removed: u64,
    pub early: u64,
    pub late: u64,
    pub runs: u64,
    pub failed_runs: u64,
    pub injected: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub config: String,
    pub deliveries: u64,
    pub distinct: u64,
    pub attempts: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub given_up: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rows: Vec<Row>,
    /// What the rows do not say (forwarding's resends under the same id, what ran).
    pub notes: Vec<String>,
    pub dlq: Vec<String>,
    /// Sends refused as unconfirmed (none since sends are confirmed by Meta's status webhooks).
    pub unconfirmed: u64,
    pub aws_calls: u64,
    pub injected: BTreeMap<String, u64>,
    pub invocations: u64,
    pub by_function: BTreeMap<String, nex_local::runner::Counts>,
    pub cut: u64,
    pub timed_out: u64,
    pub failed_invocations: u64,
    pub panics: u64,
    pub settled_secs: f64,
    /// Whether the stack settled before `Config::settle` ran out (if not, what is unfinished is lost).
    pub settled: bool,
    pub run_secs: f64,
    pub sweep: SweepRow,
}

impl Report {
    pub fn lost(&self) -> u64 {
        self.rows.iter().map(|r| r.lost).sum::<u64>() + self.given_up
    }
    pub fn doubled(&self) -> u64 {
        self.rows.iter().map(|r| r.doubled).sum()
    }

    pub fn print(&self) {
        println!("\nsoak: {}\n", self.config);
        println!(
            "deliveries {} ({} distinct), {} HTTP attempts, answers {:?}, given up {}",
            self.deliveries, self.distinct, self.attempts, self.statuses, self.given_up
        );
        println!(
            "faults injected {} of {} AWS calls: {:?}",
            self.injected.values().sum::<u64>(),
            self.aws_calls,
            self.injected
        );
        println!(
            "invocations {}, cut off {}, timed out {}, failed {}; panics {}; {} {:.0} s after the last delivery ({:.0} s in all)\n",
            self.invocations,
            self.cut,
            self.timed_out,
            self.failed_invocations,
            self.panics,
            if self.settled { "settled" } else { "NOT SETTLED: gave up waiting" },
            self.settled_secs,
            self.run_secs
        );
        for (f, c) in &self.by_function {
            let mean = c.micros as f64 / 1000.0 / (c.invoked - c.cut - c.timed_out).max(1) as f64;
            println!(
                "  {f}: {} invocations ({mean:.0} ms on average), {} cut off, {} timed out, {} failed",
                c.invoked, c.cut, c.timed_out, c.failed
            );
        }
        println!();
        println!("| {:<44} | {:>8} | {:>10} | {:>6} | {:>8} |", "effect", "expected", "exactly 1", "lost", "doubled");
        println!("|{:-<46}|{:->10}|{:->12}|{:->8}|{:->10}|", "", "", "", "", "");
        for r in &self.rows {
            println!("| {:<44} | {:>8} | {:>10} | {:>6} | {:>8} |", r.flow, r.expected, r.once, r.lost, r.doubled);
        }
        println!(
            "| {:<44} | {:>8} | {:>10} | {:>6} | {:>8} |",
            "total (lost includes deliveries given up)",
            self.rows.iter().map(|r| r.expected).sum::<u64>(),
            self.rows.iter().map(|r| r.once).sum::<u64>(),
            self.lost(),
            self.doubled()
        );
        println!();
        println!("sends refused as unconfirmed (an earlier attempt may have reached Meta): {}", self.unconfirmed);
        for n in &self.notes {
            println!("{n}");
        }
        println!("left in DLQs: {}{}", self.dlq.len(), if self.dlq.is_empty() { "" } else { ":" });
        for d in &self.dlq {
            println!("  {d}");
        }
        println!(
            "answer time per HTTP attempt: p50 {:.1} ms, p99 {:.1} ms; AWS requests per delivery {:.1} (the functions' own, retries included)",
            self.p50_ms,
            self.p99_ms,
            self.aws_calls as f64 / self.deliveries.max(1) as f64
        );
        let s = &self.sweep;
        if s.items == 0 {
            println!("\nretention sweep: not run yet");
            return;
        }
        println!(
            "\nretention sweep under the same faults: {} items, {} due, {} removed, {} removed early, {} left past their deadline ({} runs, {} failed and resumed, {} faults injected)",
            s.items, s.due, s.removed, s.early, s.late, s.runs, s.failed_runs, s.injected
        );
    }
}

async fn scan_all(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        // A page the loaded emulator does not answer in time is asked for again (the first long run with
        // the later capabilities lost its table to one such timeout).
        let mut tries = 0;
        let page = loop {
            match ddb.scan().table_name(table).consistent_read(true).set_exclusive_start_key(start.clone()).send().await
            {
                Ok(page) => break page,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("soak: a scan of {table} failed ({e}); asked again");
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Err(e) => panic!("Scan {table}: {e}"),
            }
        };
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return out,
        }
    }
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> &'a str {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or("")
}

/// Every queue of the stack: (logical, url, is a DLQ).
fn queues(manifest: &Value) -> Vec<(String, String, bool)> {
    let all = manifest["queues"].as_object().expect("queues");
    let dlq_arns: HashSet<String> = all
        .values()
        .filter_map(|q| q["attributes"]["RedrivePolicy"].as_str())
        .filter_map(|r| serde_json::from_str::<Value>(r).ok()?["deadLetterTargetArn"].as_str().map(str::to_owned))
        .collect();
    all.iter()
        .map(|(name, q)| {
            let arn = q["arn"].as_str().unwrap_or_default();
            let url = q["url"].as_str().map(str::to_owned).unwrap_or_else(|| {
                let account = arn.split(':').nth(4).unwrap_or("123456789012");
                let queue = arn.rsplit(':').next().unwrap_or_default();
                format!("{}/{account}/{queue}", manifest["endpoint"].as_str().unwrap_or_default())
            });
            (name.clone(), url, dlq_arns.contains(arn))
        })
        .collect()
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let Ok(a) = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
    else {
        return u64::MAX;
    };
    a.attributes.unwrap_or_default().values().map(|v| v.parse::<u64>().unwrap_or(0)).sum()
}

/// Runs the soak against the stack of `NEX_STACK_MANIFEST` (which must be the soak's own).
pub async fn run(cfg: &Config) -> Report {
    let started = Instant::now();
    let panics = Arc::new(AtomicU64::new(0));
    {
        let panics = panics.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            panics.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    }
    let path = std::env::var("NEX_STACK_MANIFEST").expect("NEX_STACK_MANIFEST: the soak's own stack");
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("JSON");
    let mut manifest = Manifest::load(&path).expect("manifest");
    let api_version =
        manifest.functions["StripeWebhookFunction"].env.get("STRIPE_API_VERSION").cloned().unwrap_or_default();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let local = format!("http://127.0.0.1:{port}");
    // The runner stands in for the Cloud API (and records every send); the functions' time limits are
    // capped at the template's usual 30 s (the sweep's 900 s, say, would hold a cut-off batch for an
    // hour), and the pollers' visibility timeout kept just above the longest, so a cut-off batch is
    // redelivered in a minute (the template: 180 s visibility), never while a live invocation holds it.
    // The runner stops an invocation at its limit, as Lambda does: a tighter cap than the template's
    // only measured the loaded emulator (batches of 10 slower than 10 s came back whole and reached
    // DLQs). The puller keeps 30 s of its limit for what it must finish: it gets 45 s. The forwarder's
    // backstop for a lost job is shortened alike (15 -> 2 min).
    let capabilities = cfg.merchants + cfg.ad_accounts > 0;
    let mut longest = 0;
    for (name, spec) in manifest.functions.iter_mut() {
        let cap = match name.as_str() {
            "InsightsPullerFunction" if capabilities => 45,
            _ => 30,
        };
        spec.timeout = spec.timeout.min(cap);
        longest = longest.max(spec.timeout);
        if let Some(v) = spec.env.get_mut("WHATSAPP_API_BASE_URL") {
            *v = format!("{local}/_local/graph");
        }
        for (k, v) in spec.env.iter_mut() {
            if let Some(url) = capabilities::stand_in(k, &local) {
                *v = url;
            }
        }
        if spec.env.contains_key("DELIVERIES_QUEUE_URL") {
            spec.env.insert("WEBHOOK_BACKSTOP_SECS".into(), "120".into());
        }
        // A send cut off before Meta had it is sent again 60 s after its mark (not 10 minutes).
        if name == "NotificationsSenderFunction" {
            spec.env.insert("NOTIFY_CONFIRM_WAIT_SECS".into(), "60".into());
        }
    }
    let secret_prefix = manifest
        .functions
        .get("ConsentApiFunction")
        .and_then(|f| f.env.get("WEBHOOK_SECRET_PREFIX"))
        .cloned()
        .unwrap_or_default();
    let sdk = nex_shared::adapters::aws::load_config().await;
    let plan = Plan::new(cfg.faults, cfg.seed);
    let opts = runner::Options {
        port,
        reap_every: Duration::from_secs(3600),
        // Always through the layer, which counts the functions' AWS calls (a share of 0 injects nothing).
        faults: Some(plan.clone()),
        cuts: (cfg.cuts > 0.0).then_some(Cuts { share: cfg.cuts, seed: cfg.seed ^ 0x5eed }),
        visibility_timeout: Some(longest as i32 + 15),
        pollers: 5,
        ..runner::Options::default()
    };
    // Ids and phone numbers of this run only (a second run on the same stack is not a redelivery).
    let nonce = (uuid::Uuid::new_v4().as_u128() % 1000) as usize;
    let tag = format!("{:x}n{nonce:03}", cfg.seed % 0xffff_ffff);
    // The storefront's payment events are forwarded too when there are any.
    let storefront = if cfg.stripe > 0 { MERCHANT } else { "" };
    let later = Capabilities::setup(&sdk, &raw, &secret_prefix, &tag, cfg.merchants, cfg.ad_accounts, storefront).await;
    let running = runner::start(manifest, &sdk, opts).await.expect("the runner starts");
    // The polls and pulls, fired by their schedules' names through the runner (faults and cuts included):
    // three rounds while the deliveries run (the later two re-poll and re-pull what is unchanged), then
    // while settling whenever something is still unpolled or unpulled (a cut-off left its lease).
    let fire = {
        let (client, local) = (reqwest::Client::builder().no_proxy().build().unwrap(), local.clone());
        move || {
            let (client, local) = (client.clone(), local.clone());
            async move {
                for name in ["Poll", "Pull"] {
                    let _ = client.post(format!("{local}/_local/schedules/{name}")).send().await;
                }
            }
        }
    };
    let firing = capabilities.then(|| {
        let fire = fire.clone();
        tokio::spawn(async move {
            for _ in 0..capabilities::ROUNDS {
                fire().await;
                tokio::time::sleep(capabilities::FIRE_EVERY).await;
            }
        })
    });

    // The platforms' events.
    let mut rng = Rng::new(cfg.seed);
    let now = chrono::Utc::now().timestamp();
    let hasher = SubjectHasher::new(&secrecy::SecretString::from(PEPPER.to_owned()));
    let stripe_distinct = ((cfg.stripe as f64) * (1.0 - cfg.duplicates)).round() as usize;
    let wa_distinct = ((cfg.whatsapp as f64) * (1.0 - cfg.duplicates)).round() as usize;
    let stripe: Vec<Event> = (0..stripe_distinct).map(|i| stripe_event(&tag, nonce, i, now, &api_version)).collect();
    let whatsapp: Vec<Event> =
        (0..wa_distinct).map(|i| whatsapp_event(&tag, nonce, i, now, &hasher, &mut rng)).collect();
    let mut plan_out: Vec<(bool, usize)> = deliveries(stripe_distinct, cfg.stripe, &mut rng)
        .into_iter()
        .map(|i| (true, i))
        .chain(deliveries(wa_distinct, cfg.whatsapp, &mut rng).into_iter().map(|i| (false, i)))
        .collect();
    for i in (1..plan_out.len()).rev() {
        plan_out.swap(i, rng.below(i + 1));
    }

    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
    let sent = Sent::default();
    let (stripe_url, wa_url) = (format!("{local}/webhooks/stripe"), format!("{local}/webhooks/whatsapp"));
    let total = plan_out.len();
    let done = AtomicU64::new(0);
    futures_util::stream::iter(plan_out)
        .map(|(is_stripe, i)| {
            let (client, sent, done) = (&client, &sent, &done);
            let (url, body) = if is_stripe { (&stripe_url, &stripe[i].body) } else { (&wa_url, &whatsapp[i].body) };
            async move {
                deliver(client, url, is_stripe, body, sent).await;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 2000 == 0 {
                    eprintln!("soak: {n} of {total} deliveries answered ({:.0} s)", started.elapsed().as_secs_f64());
                }
            }
        })
        .buffer_unordered(cfg.concurrency)
        .collect::<Vec<()>>()
        .await;

    // Settle: every queue empty (visible, in flight, delayed) and no new send, three checks 3 s apart.
    let sent_at = Instant::now();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // Reconciliation reads whole tables: moto answers a large scan page slower than the functions' 3 s.
    let slow = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(120))
        .operation_timeout(Duration::from_secs(600))
        .build();
    let ddb =
        aws_sdk_dynamodb::Client::from_conf(aws_sdk_dynamodb::config::Builder::from(&sdk).timeout_config(slow).build());
    let all = queues(&raw);
    let mut quiet = 0;
    let mut last_sends = 0u64;
    let mut fired = Instant::now();
    while quiet < 3 && sent_at.elapsed() < cfg.settle {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut busy = 0u64;
        let mut which = Vec::new();
        for (name, url, dlq) in &all {
            if !dlq {
                let d = depth(&sqs, url).await;
                if d > 0 {
                    which.push(format!("{name} {d}"));
                }
                // u64::MAX when the emulator did not answer: busy, not an overflow.
                busy = busy.saturating_add(d);
            }
        }
        if sent_at.elapsed().as_secs() % 30 < 3 && !which.is_empty() {
            eprintln!("soak: settling, {:.0} s: {}", sent_at.elapsed().as_secs_f64(), which.join(", "));
        }
        let sends: u64 = running.sends.snapshot().values().sum();
        // The capabilities' own state, read only once the queues are quiet (whole-table reads).
        let mut rest = Ok(());
        if busy == 0 && sends == last_sends && later.active() {
            rest = later.settled(&ddb).await;
            if let Err(unsettled) = &rest {
                if sent_at.elapsed().as_secs() % 30 < 3 {
                    eprintln!("soak: settling, {:.0} s: {}", sent_at.elapsed().as_secs_f64(), unsettled.why);
                }
                if unsettled.refire
                    && fired.elapsed() >= capabilities::FIRE_EVERY
                    && firing.as_ref().is_some_and(|f| f.is_finished())
                {
                    fire().await;
                    fired = Instant::now();
                }
            }
        }
        quiet = if busy == 0 && sends == last_sends && rest.is_ok() { quiet + 1 } else { 0 };
        last_sends = sends;
    }
    let settled_secs = sent_at.elapsed().as_secs_f64();
    let settled = quiet >= 3;
    if let Some(f) = firing {
        f.abort();
    }
    eprintln!(
        "soak: deliveries answered in {:.0} s, settled {settled_secs:.0} s later",
        (sent_at - started).as_secs_f64()
    );

    // Reconcile.
    let table = |logical: &str| raw["tables"][logical].as_str().expect("table").to_owned();
    let payments = scan_all(&ddb, &table("PaymentsTable")).await;
    let messaging = scan_all(&ddb, &table("MessagingTable")).await;
    // The audit log is kept in the data-requests table.
    let requests = scan_all(&ddb, &table("DataRequestsTable")).await;
    let audit = &requests;
    let paid: HashMap<&str, &str> = payments.iter().map(|i| (text(i, "payment_key"), text(i, "status"))).collect();
    let mut transcript: HashMap<String, u64> = HashMap::new();
    let mut ledger: HashMap<String, u64> = HashMap::new();
    let mut receipts: HashMap<String, String> = HashMap::new();
    let mut opted_out: HashSet<String> = HashSet::new();
    let mut unconfirmed = 0u64;
    for i in &messaging {
        let (pk, sk) = (text(i, "pk"), text(i, "sk"));
        if pk.starts_with("conv#") && sk.starts_with("msg#") {
            *transcript.entry(sk.rsplit('#').next().unwrap_or_default().to_owned()).or_default() += 1;
        } else if let (true, Some(id)) = (pk.starts_with("subject#"), sk.strip_prefix("consent#")) {
            *ledger.entry(id.to_owned()).or_default() += 1;
        } else if sk.starts_with("refusal#") && text(i, "reason").starts_with("unconfirmed") {
            unconfirmed += 1;
        } else if let (Some(wamid), "receipt") = (pk.strip_prefix("wamid#"), sk) {
            receipts.insert(wamid.to_owned(), text(i, "state").to_owned());
        } else if sk == "consent-state" && i.get("opted_out").and_then(|v| v.as_bool().ok()) == Some(&true) {
            opted_out.insert(pk.trim_start_matches("subject#").to_owned());
        }
    }
    let mut audited: HashMap<String, u64> = HashMap::new();
    for i in audit.iter().filter(|i| text(i, "action") == "consent.opt_out") {
        if let Ok(d) = serde_json::from_str::<Value>(text(i, "detail")) {
            // The audit log names the ledger entry by reference (its id encodes the person's number).
            *audited.entry(d["entry"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
    }
    let answered: HashMap<&str, &str> = requests
        .iter()
        .filter(|i| text(i, "sk") == "request")
        .map(|i| (text(i, "pk").trim_start_matches("dsr#"), text(i, "status")))
        .collect();
    let mut sends: HashMap<String, u64> = HashMap::new();
    for (key, n) in running.sends.snapshot() {
        let to = key.split(' ').next().unwrap_or_default().trim_start_matches('+').to_owned();
        *sends.entry(to).or_default() += n;
    }

    let mut tally = Tally::default();
    for e in &stripe {
        let Kind::StripeCheckout { payment_key, phone } = &e.kind else { continue };
        tally.add("Stripe: payment record paid", u64::from(paid.get(payment_key.as_str()) == Some(&"paid")), 1);
        tally.add(
            "Stripe: payment_paid sent to the customer",
            *sends.get(phone.trim_start_matches('+')).unwrap_or(&0),
            1,
        );
    }
    for e in &whatsapp {
        match &e.kind {
            Kind::Message { wamid } => {
                tally.add("WhatsApp message: in the transcript", *transcript.get(wamid).unwrap_or(&0), 1)
            }
            Kind::Receipt { wamid } => tally.add(
                "WhatsApp receipt: delivery state applied",
                u64::from(receipts.get(wamid).is_some_and(|s| s == "delivered")),
                1,
            ),
            Kind::Stop { wamid, subject } => {
                tally.add("WhatsApp STOP: consent-ledger entry", *ledger.get(wamid).unwrap_or(&0), 1);
                let entry = nex_shared::telemetry::log_ref(wamid);
                tally.add("WhatsApp STOP: audit entry", *audited.get(&entry).unwrap_or(&0), 1);
                tally.add("WhatsApp STOP: the person opted out", u64::from(opted_out.contains(subject)), 1);
            }
            Kind::Data { wamid, phone } => {
                let id = format!("wa-{wamid}");
                tally.add(
                    "WhatsApp DATA: request answered",
                    u64::from(answered.get(id.as_str()) == Some(&"completed")),
                    1,
                );
                // A confirmation that the request was received, then the answer (a link to the copy).
                tally.add("WhatsApp DATA: confirmation + answer sent", *sends.get(phone.as_str()).unwrap_or(&0), 2);
                tally.add("WhatsApp DATA: in the transcript", *transcript.get(wamid).unwrap_or(&0), 1);
            }
            Kind::StripeCheckout { .. } => {}
        }
    }
    let paid_keys: Vec<String> = stripe
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::StripeCheckout { payment_key, .. } => Some(payment_key.clone()),
            _ => None,
        })
        .collect();
    let notes = later.reconcile(&ddb, &paid_keys, &mut tally).await;
    later.retire().await;
    let rows: Vec<Row> = tally.0.into_values().collect();

    // What is left in the DLQs, each explained by its body's kind and how often it was received.
    let mut dlq = Vec::new();
    for (name, url, is_dlq) in &all {
        if !is_dlq {
            continue;
        }
        loop {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                .visibility_timeout(600)
                .send()
                .await
                .expect("ReceiveMessage");
            let got = out.messages.unwrap_or_default();
            if got.is_empty() {
                break;
            }
            for m in got {
                let body = m.body().unwrap_or_default();
                let what = serde_json::from_str::<Value>(body)
                    .ok()
                    .map(|v| match v.get("type").and_then(Value::as_str) {
                        Some(t) => format!("{t} {}", v["id"].as_str().unwrap_or_default()),
                        None => v.to_string().chars().take(120).collect(),
                    })
                    .unwrap_or_else(|| body.chars().take(120).collect());
                dlq.push(format!("{name}: {what}"));
            }
        }
    }

    let mut micros = std::mem::take(&mut *sent.micros.lock().unwrap());
    micros.sort_unstable();
    let pct = |p: f64| micros.get(((micros.len() as f64 * p) as usize).min(micros.len().saturating_sub(1))).copied();
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, fault), n) in running.faults.injected.lock().unwrap().iter() {
        *injected.entry(format!("{fault:?}")).or_default() += n;
    }
    let inv = running.invocations.total();
    let by_function = running.invocations.snapshot();
    let statuses = sent.statuses.lock().unwrap().clone();
    let aws_calls = running.faults.calls.load(Ordering::Relaxed);
    drop(running);

    // The deliveries' table first, so that a failure in the sweep never loses it.
    let early = Report {
        config: "the effects, before the sweep (the whole report follows it)".into(),
        rows: rows.clone(),
        notes: notes.clone(),
        dlq: dlq.clone(),
        settled,
        settled_secs,
        ..Report::default()
    };
    early.print();
    let sweep = sweep_under_faults(cfg).await;
    let config = format!(
        "{} Stripe + {} WhatsApp deliveries, {:.0}% duplicates, {} at a time; {:.0}% of AWS calls failed ({}), {:.1}% of invocations cut off; seed {}",
        cfg.stripe,
        cfg.whatsapp,
        cfg.duplicates * 100.0,
        cfg.concurrency,
        cfg.faults * 100.0,
        faults::ALL.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", "),
        cfg.cuts * 100.0,
        cfg.seed
    );
    Report {
        config,
        deliveries: total as u64,
        distinct: (stripe.len() + whatsapp.len()) as u64,
        attempts: sent.attempts.load(Ordering::Relaxed),
        statuses,
        given_up: sent.given_up.load(Ordering::Relaxed),
        p50_ms: pct(0.50).unwrap_or(0) as f64 / 1000.0,
        p99_ms: pct(0.99).unwrap_or(0) as f64 / 1000.0,
        rows,
        notes,
        dlq,
        unconfirmed,
        aws_calls,
        injected,
        invocations: inv.invoked,
        by_function,
        cut: inv.cut,
        timed_out: inv.timed_out,
        failed_invocations: inv.failed,
        panics: panics.load(Ordering::SeqCst),
        settled_secs,
        settled,
        run_secs: started.elapsed().as_secs_f64(),
        sweep,
    }
}

/// The retention sweep, through the fault layer, over a private copy of the payments table seeded with
/// `cfg.sweep_items` items: a fifth due (deadlines in the last days), the rest not, some due within the
/// hour after the sweep's `now`. A failed run is followed by the next, which resumes from its checkpoint,
/// as the scheduled sweep does.
async fn sweep_under_faults(cfg: &Config) -> SweepRow {
    use chrono::{Duration as D, Utc};
    use nex_shared::adapters::dynamo_audit::DynamoAudit;
    use nex_shared::adapters::dynamo_data::{DynamoCheckpoints, DynamoData};
    use nex_shared::adapters::dynamo_requests::DynamoDataRequests;
    use nex_shared::adapters::memory::FixedClock;
    use nex_shared::adapters::s3_objects::S3Objects;
    use nex_shared::domain::data_inventory::Store;
    use nex_shared::domain::retention::{self, DataClass};
    use nex_shared::usecases::sweep::{Options, Sweep};

    let h = crate::Harness::new().await;
    let p = h.private().await;
    let table = p.table(Store::Payments).to_owned();
    let now = Utc::now();
    let mut due_keys = HashSet::new();
    let mut rng = Rng::new(cfg.seed ^ 0x5eeb);
    let mut writes = Vec::new();
    for i in 0..cfg.sweep_items {
        let key = format!("pi_sweep{i:07}");
        let due = i % 5 == 0;
        // An invoice record is kept six years after the last event; due ones ended 1 h to 20 days ago,
        // live ones end from a minute to six years after `now`.
        let last_event = if due {
            now - D::days(6 * 366) - D::minutes(60 + rng.below(20 * 24 * 60) as i64)
        } else if i % 5 == 1 {
            now - D::days(6 * 365) + D::minutes(1 + rng.below(60) as i64)
        } else {
            now - D::days(rng.below(6 * 365) as i64)
        };
        let st = retention::stamp(DataClass::InvoiceTaxRecord, last_event, &key).expect("stamp");
        if st.expires_at <= now.timestamp() {
            due_keys.insert(key.clone());
        }
        writes.push(crate::swept_payment(&key, &st));
    }
    for chunk in writes.chunks(25) {
        let mut pending = chunk.to_vec();
        while !pending.is_empty() {
            let out = h.ddb.batch_write_item().request_items(&table, pending).send().await.expect("BatchWriteItem");
            pending = out.unprocessed_items.and_then(|mut u| u.remove(&table)).unwrap_or_default();
        }
    }

    let stats = Arc::new(faults::Stats::default());
    let upstream = std::env::var("AWS_ENDPOINT_URL").expect("the emulator's URL");
    let proxy = faults::spawn(&upstream, Plan::new(cfg.faults, cfg.seed ^ 0x5eec), stats.clone()).await.unwrap();
    let aws = nex_shared::adapters::aws::Aws::new(h.sdk.clone()).with_endpoint(proxy);
    let ddb = aws.dynamodb();
    let data = DynamoData::new(ddb.clone(), [(Store::Payments, table.clone())].into_iter().collect());
    let checkpoints = DynamoCheckpoints::new(ddb.clone(), &p.platform);
    let requests = DynamoDataRequests::new(ddb.clone(), p.table(Store::DataRequests));
    let audit = DynamoAudit::new(ddb.clone(), p.table(Store::DataRequests));
    let exports = S3Objects::new(aws.s3(), p.bucket.clone());
    let sweep =
        Sweep { data: &data, checkpoints: &checkpoints, exports: Some(&exports), requests: &requests, audit: &audit };
    let mut row = SweepRow { items: cfg.sweep_items as u64, due: due_keys.len() as u64, ..SweepRow::default() };
    for _ in 0..50 {
        row.runs += 1;
        let opts = Options {
            dry_run: false,
            lookback_days: 31,
            stop_at: Utc::now() + D::minutes(5),
            crash_after_pages: None,
            checkpoint_every: nex_shared::usecases::sweep::CHECKPOINT_EVERY,
        };
        match sweep.run(now, &FixedClock::at(now), &opts, &()).await {
            Ok(r) if r.complete => break,
            Ok(_) => {}
            Err(_) => row.failed_runs += 1,
        }
    }
    let left: HashSet<String> =
        scan_all(&h.ddb, &table).await.iter().map(|i| text(i, "payment_key").to_owned()).collect();
    row.removed = (cfg.sweep_items - left.len()) as u64;
    row.late = due_keys.iter().filter(|k| left.contains(*k)).count() as u64;
    row.early = (0..cfg.sweep_items)
        .map(|i| format!("pi_sweep{i:07}"))
        .filter(|k| !due_keys.contains(k) && !left.contains(k))
        .count() as u64;
    row.injected = stats.injected_total();
    row
}
