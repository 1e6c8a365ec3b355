//! The integration-test harness: the stack `infra/test.sh` started and provisioned from `template.yaml`,
//! the functions built as in Lambda but with request-counting SDK clients, a fresh queue pair per test
//! (so parallel tests never see each other's messages), the platforms' fixtures, and captured logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use chrono::{DateTime, Utc};
use nex_shared::adapters::aws::Aws;
pub use nex_shared::apps::merchant_api::MerchantApi;
pub use nex_shared::apps::messaging::{MessagingWorker, NotificationsSender, WhatsAppWebhook};
pub use nex_shared::apps::payments::{PaymentsWorker, StripeWebhook};
pub use nex_shared::apps::privacy::{AuditAppender, DataRequestsWorker, RetentionSweep};
pub use nex_shared::function::{Function, HttpFunction, Invocation, ScheduleFunction, SqsFunction};
use nex_shared::ports::{Clock, InfraError, SharedClock, SystemClock};
use serde_json::Value;

pub mod fuzz;
pub mod soak;

/// The wall clock, as functions are built with in Lambda.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// An invocation that has `secs` seconds left.
pub fn invocation(request_id: &str, secs: i64) -> Invocation {
    Invocation::new(request_id, Utc::now() + chrono::Duration::seconds(secs))
}

/// Calls an HTTP function with an API Gateway event, through `lambda_http` as in Lambda (30 s left).
pub trait CallHttp {
    fn handle(
        &self, event: ApiGatewayV2httpRequest, request_id: &str,
    ) -> impl std::future::Future<Output = ApiGatewayV2httpResponse>;
}

impl<F: HttpFunction> CallHttp for F {
    async fn handle(&self, event: ApiGatewayV2httpRequest, request_id: &str) -> ApiGatewayV2httpResponse {
        nex_shared::function::invoke_http(self, event, &invocation(request_id, 30)).await
    }
}

/// Calls an SQS consumer with a batch (15 minutes left, or until `deadline`).
pub trait CallSqs {
    fn handle(&self, event: SqsEvent, request_id: &str) -> impl std::future::Future<Output = SqsBatchResponse>;
    fn handle_until(
        &self, event: SqsEvent, request_id: &str, deadline: DateTime<Utc>,
    ) -> impl std::future::Future<Output = SqsBatchResponse>;
}

impl<F: SqsFunction> CallSqs for F {
    async fn handle(&self, event: SqsEvent, request_id: &str) -> SqsBatchResponse {
        self.sqs(event, &invocation(request_id, 900)).await
    }
    async fn handle_until(&self, event: SqsEvent, request_id: &str, deadline: DateTime<Utc>) -> SqsBatchResponse {
        self.sqs(event, &Invocation::new(request_id, deadline)).await
    }
}

/// Calls a scheduled function with its event, until `deadline`.
pub trait CallSchedule {
    fn handle(
        &self, event: Value, request_id: &str, deadline: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<Value, InfraError>>;
}

impl<F: ScheduleFunction> CallSchedule for F {
    async fn handle(&self, event: Value, request_id: &str, deadline: DateTime<Utc>) -> Result<Value, InfraError> {
        self.schedule(event, &Invocation::new(request_id, deadline)).await
    }
}

/// The development Stripe secret the stack was seeded with (`infra/local/dev-secrets.json`).
pub const STRIPE_SECRET: &str = "whsec_local_dev_only_not_a_real_secret";
pub const PEPPER: &str = "local-dev-pepper-not-a-real-secret";
/// The development WhatsApp App Secret and verify token.
pub const APP_SECRET: &str = "local_dev_app_secret_not_a_real_secret";
pub const VERIFY_TOKEN: &str = "local-dev-verify-token";
/// The development API key of `merchant-demo-1` (`infra/local/dev-seed.json` stores its SHA-256).
pub const MERCHANT_KEY: &str = "local-dev-merchant-api-key";
/// merchant-demo-2's key (seeded too): the other merchant of every scoping test.
pub const OTHER_MERCHANT_KEY: &str = "local-dev-merchant-api-key-2";

pub fn manifest() -> &'static Value {
    static M: OnceLock<Value> = OnceLock::new();
    M.get_or_init(|| {
        let path = std::env::var("NEX_STACK_MANIFEST")
            .expect("NEX_STACK_MANIFEST is not set: run the tests with infra/test.sh, which starts the emulator");
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest readable")).expect("manifest is JSON")
    })
}

pub fn env_of(function: &str) -> HashMap<String, String> {
    serde_json::from_value(manifest()["functions"][function]["env"].clone()).expect("function env")
}

pub fn table(logical: &str) -> String {
    manifest()["tables"][logical].as_str().expect("table in manifest").to_owned()
}

/// Counts every AWS request (each attempt) made through the clients it is attached to, and apart the
/// operations (an operation the SDK retries is one operation, several attempts).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl RequestCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    /// Operations, each counted once however often the SDK retried it (throttling, a conflict).
    pub fn operations(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }
    fn read_before_transmit(
        &self, _ctx: &BeforeTransmitInterceptorContextRef<'_>, _rc: &RuntimeComponents, _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn read_before_execution(
        &self,
        _ctx: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A test's own orders table, order events queue and the pipe between them.
pub struct OrdersStack {
    pub table: String,
    pub events_url: String,
    pub pipe: nex_local::pipes::Pipes,
}

/// One test's view of the stack.
pub struct Harness {
    pub sdk: aws_config::SdkConfig,
    /// The clients every function of this test is built with: they count their requests.
    pub aws: Aws,
    pub requests: RequestCounter,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    /// A fresh copy of the messaging queue (WhatsApp messages and receipts).
    pub messaging_url: String,
    /// Fresh copies of the data-requests and notifications queues.
    pub data_requests_url: String,
    pub notifications_url: String,
    /// A fresh copy of the platform table (the webhooks' inbox), with its stream, and the template's
    /// pipes from it to this test's queues.
    pub platform: String,
    pub pipes: nex_local::pipes::Pipes,
}

impl Harness {
    /// Builds clients and a fresh copy of the payment events queue and its DLQ, with the template's
    /// attributes (redrive policy pointing at the fresh DLQ).
    pub async fn new() -> Self {
        capture_logs();
        let sdk = nex_shared::adapters::aws::load_config().await;
        let requests = RequestCounter::default();
        let aws = Aws::new(sdk.clone()).with_interceptor(requests.clone());
        let ddb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(requests.clone()).build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk).interceptor(requests.clone()).build(),
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (queue_url, queue_arn, dlq_url) = fresh_pair(&sqs, "PaymentEventsQueue", &format!("t-{id}")).await;
        let (messaging_url, _, _) = fresh_pair(&sqs, "MessagingQueue", &format!("t-{id}-msg")).await;
        let (data_requests_url, _, _) = fresh_pair(&sqs, "DataRequestsQueue", &format!("t-{id}-dsr")).await;
        let (notifications_url, _, _) = fresh_pair(&sqs, "NotificationsQueue", &format!("t-{id}-ntf")).await;
        let platform = copy_table(&ddb, "PlatformTable", &id).await;
        let stream_arn = ddb
            .describe_table()
            .table_name(&platform)
            .send()
            .await
            .expect("DescribeTable")
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the platform table has a stream");
        let pipes = serde_json::from_value::<Vec<nex_local::manifest::PipeSpec>>(manifest()["pipes"].clone())
            .expect("pipes")
            .into_iter()
            .filter(|p| p.message == "inbox")
            .map(|p| nex_local::manifest::PipeSpec {
                stream_arn: stream_arn.clone(),
                target_url: match manifest()["pipes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == p.name.as_str())
                    .and_then(|m| m["target"].as_str())
                {
                    Some("PaymentEventsQueue") => queue_url.clone(),
                    Some("MessagingQueue") => messaging_url.clone(),
                    other => panic!("a pipe to {other:?}: give the harness its queue"),
                },
                ..p
            })
            .collect();
        let pipes = nex_local::pipes::Pipes::new(&sdk, aws_sdk_sqs::Client::new(&sdk), pipes);
        let h = Self {
            sdk,
            aws,
            requests,
            ddb,
            sqs,
            queue_url,
            queue_arn,
            dlq_url,
            messaging_url,
            data_requests_url,
            notifications_url,
            platform,
            pipes,
        };
        h.requests.0.store(0, Ordering::SeqCst);
        h.requests.1.store(0, Ordering::SeqCst);
        h
    }

    /// The function `F` as Lambda's init builds it, from the template's variables for `logical` with
    /// `overrides` (this test's own table and queues), with this test's counted clients and `clock`.
    pub async fn function<F: Function>(&self, logical: &str, overrides: &[(&str, &str)], clock: SharedClock) -> F {
        let mut env = env_of(logical);
        env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.build(env, clock).await
    }

    /// The function `F` built from `env`, with this test's counted clients.
    pub async fn build<F: Function>(&self, env: HashMap<String, String>, clock: SharedClock) -> F {
        let config = F::config(&env).expect("the template sets every variable");
        let app = F::build(&self.aws, config, clock).await.expect("init");
        self.requests.0.store(0, Ordering::SeqCst);
        self.requests.1.store(0, Ordering::SeqCst);
        app
    }

    /// The Stripe webhook function, writing to this test's inbox.
    pub async fn webhook(&self) -> StripeWebhook {
        self.function("StripeWebhookFunction", &[("PLATFORM_TABLE", &self.platform)], system()).await
    }

    /// The WhatsApp webhook function, writing to this test's inbox.
    pub async fn whatsapp(&self) -> WhatsAppWebhook {
        self.function("WhatsAppWebhookFunction", &[("PLATFORM_TABLE", &self.platform)], system()).await
    }

    /// The notifications sender, talking to the Cloud API at `base_url` (a local stand-in).
    pub async fn sender(&self, base_url: &str) -> NotificationsSender {
        self.function("NotificationsSenderFunction", &[("WHATSAPP_API_BASE_URL", base_url)], system()).await
    }

    /// The merchant API.
    pub async fn merchant_api(&self) -> MerchantApi {
        self.function("ConsentApiFunction", &[], system()).await
    }

    /// The messaging worker, reading this test's inbox and queueing onto this test's queues.
    pub async fn messaging_worker(&self) -> MessagingWorker {
        let overrides = [
            ("PLATFORM_TABLE", self.platform.as_str()),
            ("DATA_REQUESTS_QUEUE_URL", self.data_requests_url.as_str()),
            ("NOTIFICATIONS_QUEUE_URL", self.notifications_url.as_str()),
        ];
        self.function("MessagingWorkerFunction", &overrides, system()).await
    }

    /// Audits every consent-ledger entry of the stack's messaging table not audited yet, as production
    /// does: the template's ledger pipe (replayed from the stream's start) onto a fresh audit queue,
    /// drained by the audit appender into the stack's audit log. One test at a time (moto's transactions
    /// are not isolated; see the README).
    pub async fn audit_ledger(&self) -> nex_local::sqs::Round {
        static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = TURN.lock().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (url, arn, _) = fresh_pair(&self.sqs, "AuditQueue", &format!("t-{id}-audit")).await;
        let pipes: Vec<nex_local::manifest::PipeSpec> =
            serde_json::from_value(manifest()["pipes"].clone()).expect("pipes");
        let ledger = pipes
            .into_iter()
            .filter(|p| p.message == "ledger")
            .map(|p| nex_local::manifest::PipeSpec { target_url: url.clone(), ..p })
            .collect();
        let pipe = nex_local::pipes::Pipes::new(&self.sdk, aws_sdk_sqs::Client::new(&self.sdk), ledger);
        pipe.pump().await.expect("ledger pipe");
        let appender: AuditAppender = self.function("AuditAppenderFunction", &[], system()).await;
        self.drain_batches(&url, &arn, 1, 100, |event| appender.handle(event, "test")).await
    }

    /// A fresh copy of the orders table (with its stream) and of the order events queue, and the template's
    /// OrderEventsPipe between them.
    pub async fn orders(&self) -> OrdersStack {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let table = copy_table(&self.ddb, "OrdersTable", &id).await;
        let (events_url, _, _) = fresh_pair(&self.sqs, "OrderEventsQueue", &format!("t-{id}-ord")).await;
        let stream_arn = self
            .ddb
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .expect("DescribeTable")
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the orders table has a stream");
        let pipes: Vec<nex_local::manifest::PipeSpec> =
            serde_json::from_value(manifest()["pipes"].clone()).expect("pipes");
        let order_pipes: Vec<_> = pipes
            .into_iter()
            .filter(|p| p.message == "order_event")
            .map(|p| nex_local::manifest::PipeSpec {
                stream_arn: stream_arn.clone(),
                target_url: events_url.clone(),
                ..p
            })
            .collect();
        assert_eq!(order_pipes.len(), 1, "the template has one order events pipe");
        let pipe = nex_local::pipes::Pipes::new(&self.sdk, aws_sdk_sqs::Client::new(&self.sdk), order_pipes);
        OrdersStack { table, events_url, pipe }
    }

    /// Runs the inbox pipes once: what the webhooks wrote reaches this test's queues.
    pub async fn pump(&self) -> usize {
        self.pipes.pump().await.expect("inbox pipes")
    }

    /// Delivers this test's messaging queue to the messaging worker until it is empty (see `drain_queue`).
    pub async fn drain_messaging(&self, worker: &MessagingWorker) -> nex_local::sqs::Round {
        let arn = "arn:aws:sqs:us-east-1:123456789012:messaging";
        self.drain_queue(&self.messaging_url, arn, 1, |event| worker.handle(event, "test")).await
    }

    /// Puts `body` on the queue at `url`, as a producer would.
    pub async fn send(&self, url: &str, body: impl Into<String>) {
        self.sqs.send_message().queue_url(url).message_body(body).send().await.expect("SendMessage");
    }

    /// Bodies of everything on this test's messaging queue (received and deleted).
    pub async fn take_messaging(&self) -> Vec<String> {
        self.take(&self.messaging_url).await
    }

    /// Bodies of everything on `url` (received and deleted).
    pub async fn take(&self, url: &str) -> Vec<String> {
        self.pump().await;
        let mut out = Vec::new();
        loop {
            let r = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let msgs = r.messages.unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                out.push(m.body.clone().unwrap_or_default());
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// The payments worker, reading this test's inbox and queueing onto this test's notifications queue.
    pub async fn worker(&self) -> PaymentsWorker {
        let overrides =
            [("PLATFORM_TABLE", self.platform.as_str()), ("NOTIFICATIONS_QUEUE_URL", self.notifications_url.as_str())];
        self.function("PaymentsWorkerFunction", &overrides, system()).await
    }

    /// Delivers this test's payment events queue to the payments worker until it is empty (see `drain_queue`).
    pub async fn drain(&self, worker: &PaymentsWorker, visibility: i32) -> nex_local::sqs::Round {
        self.drain_queue(&self.queue_url, &self.queue_arn, visibility, |event| {
            worker.handle_until(event, "test-request", Utc::now() + chrono::Duration::seconds(30))
        })
        .await
    }

    /// Delivers `url` to `invoke` as Lambda's poller would, until two receives in a row find nothing.
    /// `visibility`: seconds a failed record stays invisible before its redelivery.
    pub async fn drain_queue<F, Fut>(&self, url: &str, arn: &str, visibility: i32, invoke: F) -> nex_local::sqs::Round
    where
        F: Fn(aws_lambda_events::sqs::SqsEvent) -> Fut,
        Fut: std::future::Future<Output = aws_lambda_events::sqs::SqsBatchResponse>,
    {
        self.drain_batches(url, arn, visibility, 10, invoke).await
    }

    /// `drain_queue` with batches of up to `batch` records.
    pub async fn drain_batches<F, Fut>(
        &self, url: &str, arn: &str, visibility: i32, batch: i32, invoke: F,
    ) -> nex_local::sqs::Round
    where
        F: Fn(aws_lambda_events::sqs::SqsEvent) -> Fut,
        Fut: std::future::Future<Output = aws_lambda_events::sqs::SqsBatchResponse>,
    {
        self.pump().await;
        let target = nex_local::sqs::Target {
            queue_url: url,
            queue_arn: arn,
            region: manifest()["region"].as_str().unwrap(),
            batch_size: batch,
            report_batch_item_failures: true,
            visibility_timeout: Some(visibility),
        };
        let mut total = nex_local::sqs::Round::default();
        let mut empty_rounds = 0;
        while empty_rounds < 2 {
            let round = nex_local::sqs::deliver_once(&self.sqs, &target, &invoke).await.expect("SQS reachable");
            empty_rounds = if round.received == 0 { empty_rounds + 1 } else { 0 };
            total.received += round.received;
            total.failed += round.failed;
        }
        total
    }

    pub async fn depth(&self, url: &str) -> usize {
        self.pump().await;
        let a = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = a.attributes.unwrap_or_default();
        attrs.values().map(|v| v.parse::<usize>().unwrap_or(0)).sum()
    }

    pub async fn item(&self, logical_table: &str, key: &str, value: &str) -> Option<HashMap<String, AttributeValue>> {
        self.get(&table(logical_table), &[(key, value)]).await
    }

    /// The inbox record `key` of this test's platform table.
    pub async fn inbox_item(&self, key: &str) -> Option<HashMap<String, AttributeValue>> {
        self.get(&self.platform, &[("pk", key)]).await
    }

    /// The item of physical table `table` with string key attributes `key` (strongly consistent).
    pub async fn get(&self, table: &str, key: &[(&str, &str)]) -> Option<HashMap<String, AttributeValue>> {
        let mut req = self.ddb.get_item().table_name(table).consistent_read(true);
        for (k, v) in key {
            req = req.key(*k, AttributeValue::S((*v).to_owned()));
        }
        req.send().await.expect("GetItem").item
    }

    /// A subject's consent-ledger entries in the messaging table (strongly consistent).
    pub async fn consent_entries(&self, subject: &str) -> Vec<HashMap<String, AttributeValue>> {
        let q = self
            .ddb
            .query()
            .table_name(table("MessagingTable"))
            .key_condition_expression("pk = :pk AND begins_with(sk, :c)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("subject#{subject}")))
            .expression_attribute_values(":c", AttributeValue::S("consent#".into()))
            .consistent_read(true);
        nex_shared::adapters::aws::query_all(q, "Query").await.expect("Query")
    }

    /// A subject's current consent state item in the messaging table (strongly consistent).
    pub async fn consent_state(&self, subject: &str) -> Option<HashMap<String, AttributeValue>> {
        self.ddb
            .get_item()
            .table_name(table("MessagingTable"))
            .key("pk", AttributeValue::S(format!("subject#{subject}")))
            .key("sk", AttributeValue::S("consent-state".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    pub async fn payment(&self, payment_key: &str) -> Option<HashMap<String, AttributeValue>> {
        self.item("PaymentsTable", "payment_key", payment_key).await
    }
}

/// A private copy of the suite's tables and exports bucket, for tests whose clock runs far ahead (the
/// retention sweep deletes whatever is due, which must never be another test's data).
#[derive(Debug, Clone)]
pub struct Private {
    pub tables: std::collections::BTreeMap<nex_shared::domain::data_inventory::Store, String>,
    pub platform: String,
    pub bucket: String,
    /// A fresh sweep continuation queue.
    pub sweep_queue: String,
}

impl Private {
    pub fn table(&self, store: nex_shared::domain::data_inventory::Store) -> &str {
        &self.tables[&store]
    }

    /// The variables the sweep and data-requests functions read, pointing at these copies.
    pub fn env(&self) -> HashMap<String, String> {
        use nex_shared::domain::data_inventory::Store;
        HashMap::from([
            ("PAYMENTS_TABLE".to_owned(), self.tables[&Store::Payments].clone()),
            ("MESSAGING_TABLE".to_owned(), self.tables[&Store::Messaging].clone()),
            ("DATA_REQUESTS_TABLE".to_owned(), self.tables[&Store::DataRequests].clone()),
            ("ORDERS_TABLE".to_owned(), self.tables[&Store::Orders].clone()),
            ("PLATFORM_TABLE".to_owned(), self.platform.clone()),
            ("EXPORTS_BUCKET".to_owned(), self.bucket.clone()),
            ("SWEEP_QUEUE_URL".to_owned(), self.sweep_queue.clone()),
            ("SWEEP_LOOKBACK_DAYS".to_owned(), "35".to_owned()),
        ])
    }
}

impl Harness {
    /// Copies of the four data tables and the platform table (same keys and indexes), an exports bucket
    /// and a sweep queue, all fresh.
    pub async fn private(&self) -> Private {
        use nex_shared::domain::data_inventory::Store;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut tables = std::collections::BTreeMap::new();
        for (store, logical) in [
            (Store::Payments, "PaymentsTable"),
            (Store::Messaging, "MessagingTable"),
            (Store::DataRequests, "DataRequestsTable"),
            (Store::Orders, "OrdersTable"),
        ] {
            tables.insert(store, copy_table(&self.ddb, logical, &id).await);
        }
        let platform = copy_table(&self.ddb, "PlatformTable", &id).await;
        let bucket = format!("t-{}", &id[..20]);
        let s3 = self.s3();
        s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
        let (sweep_queue, _, _) = fresh_pair(&self.sqs, "SweepQueue", &format!("t-{id}-sweep")).await;
        Private { tables, platform, bucket, sweep_queue }
    }

    pub fn sdk_secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk)
                .force_path_style(true)
                .interceptor(self.requests.clone())
                .build(),
        )
    }

    /// The stores of `p` with this test's counted clients.
    pub fn stores(&self, p: &Private) -> nex_shared::adapters::privacy::PrivacyStores {
        nex_shared::adapters::privacy::PrivacyStores::new(&self.aws, p.tables.clone(), p.bucket.clone())
    }

    /// The retention sweep on `p`, at the time `clock` says, with this test's counted clients.
    pub async fn sweep<C: Clock + 'static>(&self, p: &Private, clock: C) -> RetentionSweep {
        let mut app: RetentionSweep = self.build(p.env(), Arc::new(clock)).await;
        app.metrics = app.metrics.clone().silent();
        app
    }

    /// The data-requests worker on `p`, with this test's counted clients.
    pub async fn dsr_worker<C: Clock + 'static>(&self, p: &Private, clock: C) -> DataRequestsWorker {
        let mut env = p.env();
        env.insert("NOTIFICATIONS_QUEUE_URL".into(), self.notifications_url.clone());
        let mut app: DataRequestsWorker = self.build(env, Arc::new(clock)).await;
        app.metrics = app.metrics.clone().silent();
        app
    }

    /// The data-requests worker on the stack's own tables and bucket (safe for requests about a person
    /// only this test knows).
    pub async fn stack_dsr_worker(&self) -> DataRequestsWorker {
        let overrides = [("NOTIFICATIONS_QUEUE_URL", self.notifications_url.as_str())];
        let mut app: DataRequestsWorker = self.function("DataRequestsWorkerFunction", &overrides, system()).await;
        app.metrics = app.metrics.clone().silent();
        app
    }

    /// Delivers this test's data-requests queue to `worker` until it is empty.
    pub async fn drain_requests(&self, worker: &DataRequestsWorker) -> nex_local::sqs::Round {
        let arn = "arn:aws:sqs:us-east-1:123456789012:data-requests";
        self.drain_queue(&self.data_requests_url, arn, 30, |event| worker.handle(event, "test")).await
    }
}

/// A copy of the template's table `logical` (keys, attribute definitions, indexes), named after it.
async fn copy_table(ddb: &aws_sdk_dynamodb::Client, logical: &str, id: &str) -> String {
    use aws_sdk_dynamodb::types::{BillingMode, GlobalSecondaryIndex, Projection};
    let original =
        ddb.describe_table().table_name(table(logical)).send().await.expect("DescribeTable").table.expect("table");
    let name = format!("{}-t-{id}", table(logical));
    let mut req = ddb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(original.key_schema.clone())
        .set_attribute_definitions(original.attribute_definitions.clone());
    for g in original.global_secondary_indexes.unwrap_or_default() {
        let p = g.projection.clone().unwrap_or_else(|| Projection::builder().build());
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(g.index_name.unwrap_or_default())
                .set_key_schema(g.key_schema)
                .projection(p)
                .build()
                .expect("index"),
        );
    }
    if let Some(spec) = original.stream_specification {
        req = req.stream_specification(spec);
    }
    req.send().await.expect("CreateTable");
    name
}

/// A copy of the template's queue `logical` named `name`, with the template's attributes and its own DLQ
/// (a copy of the template's DLQ) in its redrive policy. Returns (queue url, queue arn, DLQ url).
async fn fresh_pair(sqs: &aws_sdk_sqs::Client, logical: &str, name: &str) -> (String, String, String) {
    let queues = &manifest()["queues"];
    let region = manifest()["region"].as_str().unwrap();
    let mut attrs: HashMap<String, String> = serde_json::from_value(queues[logical]["attributes"].clone()).unwrap();
    let mut redrive: Value = serde_json::from_str(&attrs["RedrivePolicy"]).unwrap();
    let dlq_logical = manifest()["queues"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, q)| q["arn"] == redrive["deadLetterTargetArn"])
        .map(|(l, _)| l.clone())
        .expect("the DLQ is a template queue");
    let dlq_attrs: HashMap<String, String> =
        serde_json::from_value(queues[&dlq_logical]["attributes"].clone()).unwrap();
    let dlq_url = create_queue(sqs, &format!("{name}-dlq"), dlq_attrs).await;
    redrive["deadLetterTargetArn"] = Value::String(format!("arn:aws:sqs:{region}:123456789012:{name}-dlq"));
    attrs.insert("RedrivePolicy".into(), redrive.to_string());
    let url = create_queue(sqs, name, attrs).await;
    (url, format!("arn:aws:sqs:{region}:123456789012:{name}"), dlq_url)
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str, attrs: HashMap<String, String>) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::from(k.as_str()), v);
    }
    req.send().await.expect("CreateQueue").queue_url.expect("queue url")
}

/// Where the platforms' published payloads are (see `tests/build.rs`). A test that reads them is marked
/// `#[cfg_attr(fixtures, tokio::test)]`: without them it is not built, and its file's
/// `conformance_tests_skipped` is reported as ignored, saying how many need the fixtures.
pub fn fixtures_dir() -> String {
    option_env!("NEX_FIXTURES_DIR")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}/../../shared/fixtures", env!("CARGO_MANIFEST_DIR")))
}

/// Meta's documented answer to a send (`Example response` of `POST /{Version}/{Phone-Number-ID}/messages`
/// in the Business Messaging OpenAPI file of the fixtures).
pub fn meta_send_response() -> Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        let path = format!("{}/whatsapp/meta_openapi/business-messaging-api_v23.0.yaml", fixtures_dir());
        let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let example = &doc["paths"]["/{Version}/{Phone-Number-ID}/messages"]["post"]["responses"]["200"]["content"]
            ["application/json"]["examples"]["Example response"]["value"];
        serde_json::to_value(example).unwrap()
    })
    .clone()
}

/// Meta's Graph API error object (from the fixtures) with the given error code.
pub fn meta_error(code: i64) -> Value {
    let path = format!("{}/meta_marketing/meta_docs/graph_api_error_response_example.json", fixtures_dir());
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["error"]["code"] = Value::from(code);
    v
}

/// A WhatsApp fixture body (`dir` is `meta_openapi` or `captured`), re-dated as Meta would deliver it
/// now (see [`redate`]); otherwise as published.
pub fn whatsapp_fixture(dir: &str, name: &str) -> String {
    let path = format!("{}/whatsapp/{dir}/{name}", fixtures_dir());
    redate(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// The newest `timestamp` in a WhatsApp body, epoch seconds.
pub fn body_timestamp(body: &str) -> i64 {
    let v: Value = serde_json::from_str(body).expect("json");
    fn newest(v: &Value) -> i64 {
        match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, x)| match (k.as_str(), x) {
                    ("timestamp", Value::String(s)) => s.parse().unwrap_or(0),
                    ("timestamp", Value::Number(n)) => n.as_i64().unwrap_or(0),
                    _ => newest(x),
                })
                .max()
                .unwrap_or(0),
            Value::Array(a) => a.iter().map(newest).max().unwrap_or(0),
            _ => 0,
        }
    }
    newest(&v)
}

/// Moves every `timestamp` of a WhatsApp body into Meta's retry window, as a delivery made now would
/// carry (the webhook ignores older items): the newest becomes an hour ago, the others keep their distance
/// to it, up to two days.
pub fn redate(body: &str) -> String {
    fn walk(v: &mut Value, f: &mut dyn FnMut(&mut Value)) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "timestamp" {
                        f(x);
                    } else {
                        walk(x, f);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, f)),
            _ => {}
        }
    }
    let num = |x: &Value| x.as_i64().or_else(|| x.as_str().and_then(|s| s.parse().ok()));
    let Ok(mut v) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let mut newest = 0;
    walk(&mut v, &mut |x| newest = newest.max(num(x).unwrap_or(0)));
    let base = chrono::Utc::now().timestamp() - 3600;
    walk(&mut v, &mut |x| {
        if let Some(ts) = num(x) {
            let t = base - (newest - ts).clamp(0, 2 * 86_400);
            *x = if x.is_string() { Value::from(t.to_string()) } else { Value::from(t) };
        }
    });
    v.to_string()
}

/// Every WhatsApp webhook fixture, as (name, body).
pub fn whatsapp_fixtures() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["meta_openapi", "captured"] {
        let path = format!("{}/whatsapp/{dir}", fixtures_dir());
        for e in std::fs::read_dir(path).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                out.push((name.clone(), whatsapp_fixture(dir, &name)));
            }
        }
    }
    out.sort();
    out
}

/// Gives a WhatsApp body fresh wamids so tests sharing a table never collide.
pub fn unique_wamids(body: &str) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    body.replace("\"wamid.", &format!("\"wamid.{tag}"))
}

/// A WhatsApp webhook request as API Gateway sends it.
pub fn whatsapp_request(method: &str, query: &str, body: &str, signature: Option<&str>) -> ApiGatewayV2httpRequest {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(s) = signature {
        headers.push(("x-hub-signature-256".to_owned(), s.to_owned()));
    }
    nex_local::events::http_v2(method, "/webhooks/whatsapp", query, &headers, body.as_bytes(), "req-wa")
}

pub fn hub_sign(body: &str) -> String {
    nex_shared::domain::whatsapp::signature::sign_header(APP_SECRET, body.as_bytes())
}

/// This repository's sample of the Stripe event type `kind` (from `events/stripe/`), given its own event,
/// PaymentIntent and charge ids so tests sharing a table never collide. Returns (body, event id, payment key).
pub fn sample(kind: &str) -> (String, String, String) {
    let dir = format!("{}/../events/stripe", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("events/stripe").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    let body = files
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(&std::fs::read_to_string(p).ok()?).ok())
        .filter_map(|e| e["body"].as_str().map(str::to_owned))
        .find(|b| serde_json::from_str::<Value>(b).is_ok_and(|v| v["type"] == kind && v.get("api_version").is_some()))
        .unwrap_or_else(|| panic!("no {kind} sample in {dir}"));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (evt, pi) = (format!("evt_{tag}"), format!("pi_{tag}"));
    let body = replace_ids(&body, "evt_1NexDemo", &evt, 3);
    let body = replace_ids(&body, "pi_3NexDemoOrder", &pi, 1);
    let body = replace_ids(&body, "ch_3NexDemoOrder", &format!("ch_{tag}"), 1);
    (body, evt, pi)
}

/// Replaces every `prefix` followed by `suffix_len` more characters (the sample's own id) with `with`.
fn replace_ids(text: &str, prefix: &str, with: &str, suffix_len: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        out.push_str(with);
        rest = &rest[(i + prefix.len() + suffix_len).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// A Stripe fixture body, byte-exact.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/stripe/events/{name}", fixtures_dir());
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn fixture_names() -> Vec<String> {
    let dir = format!("{}/stripe/events", fixtures_dir());
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures present beside the repo")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// The fixtures zero every id; gives this body its own event id and PaymentIntent/charge ids so tests
/// running side by side on one table never collide. Returns (body, event id, payment key).
pub fn unique(body: &str) -> (String, String, String) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let evt = format!("evt_{tag}");
    let pi = format!("pi_{tag}");
    let ch = format!("ch_{tag}");
    let body = body
        .replace("evt_000000000000000000000000", &evt)
        .replace("evt_00000000000000", &evt)
        .replace("pi_000000000000000000000000", &pi)
        .replace("pi_00000000000000", &pi)
        .replace("ch_000000000000000000000000", &ch);
    let key = if body.contains(&pi) { pi } else { ch };
    (body, evt, key)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn sign(body: &str, at: i64) -> String {
    nex_shared::domain::stripe::signature::sign_header(&[STRIPE_SECRET], at, body.as_bytes())
}

/// A `POST /webhooks/stripe` event as API Gateway sends it.
pub fn stripe_request(body: &str, signature: Option<&str>) -> ApiGatewayV2httpRequest {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(s) = signature {
        headers.push(("stripe-signature".to_owned(), s.to_owned()));
    }
    nex_local::events::http_v2("POST", "/webhooks/stripe", "", &headers, body.as_bytes(), "req-test")
}

pub fn body_json(r: &ApiGatewayV2httpResponse) -> Value {
    match &r.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Everything logged by this test binary, in order.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.get_or_init(Default::default).lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the suite's JSON subscriber writing into the capture buffer (once per test binary).
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::env::set_var("RUST_LOG", "info,nex_shared=debug,stripe_webhook=debug,payments_worker=debug");
        nex_shared::telemetry::init_with_writer(|| Capture);
    });
}

/// The local merchant endpoint (`infra/local/receiver.py`): verifies every delivery with the reference
/// `standardwebhooks` verifier from PyPI and answers as told. One process per test binary.
pub struct Receiver {
    pub base: String,
    client: reqwest::Client,
}

impl Receiver {
    /// The running receiver (started on first use; it exits with the test binary).
    pub async fn get() -> &'static Receiver {
        static R: tokio::sync::OnceCell<Receiver> = tokio::sync::OnceCell::const_new();
        R.get_or_init(|| async {
            let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
            let port_file = std::env::temp_dir().join(format!("nex-receiver-{}", uuid::Uuid::new_v4().simple()));
            // Not waited on: it lives as long as this test binary and exits when it does (--parent-pid).
            #[allow(clippy::zombie_processes)]
            let _child = std::process::Command::new(format!("{root}/infra/.venv/bin/python"))
                .arg(format!("{root}/infra/local/receiver.py"))
                .arg("--port-file")
                .arg(&port_file)
                .arg("--parent-pid")
                .arg(std::process::id().to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("infra/.venv/bin/python runs infra/local/receiver.py (infra/test.sh installs it)");
            let mut port = String::new();
            for _ in 0..200 {
                if let Ok(p) = std::fs::read_to_string(&port_file) {
                    port = p;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(!port.is_empty(), "the receiver started");
            Receiver { base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() }
        })
        .await
    }

    /// A new hook's URL, verifying with `secrets` and answering `answers` then `default`.
    pub async fn hook(&self, secrets: &[&str], answers: &[&str], default: &str) -> (String, String) {
        let name = uuid::Uuid::new_v4().simple().to_string();
        self.set(&name, secrets, answers, default).await;
        (name.clone(), format!("{}/hooks/{name}", self.base))
    }

    pub async fn set(&self, name: &str, secrets: &[&str], answers: &[&str], default: &str) {
        let body = serde_json::json!({ "secrets": secrets, "answers": answers, "default": default });
        let r = self.client.put(format!("{}/_control/{name}", self.base)).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }

    /// What the hook received, in order.
    pub async fn received(&self, name: &str) -> Vec<Value> {
        let r: Value =
            self.client.get(format!("{}/_control/{name}", self.base)).send().await.unwrap().json().await.unwrap();
        r["received"].as_array().cloned().unwrap_or_default()
    }
}

/// One test's forwarding stack: fresh copies of the webhooks table, the deliveries queue and the orders
/// table (with its pipe to a fresh order events queue), and the functions built on them.
pub struct ForwardingStack {
    pub webhooks: String,
    pub deliveries_url: String,
    pub deliveries_arn: String,
    pub orders: OrdersStack,
}

impl Harness {
    pub async fn forwarding(&self) -> ForwardingStack {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let webhooks = copy_table(&self.ddb, "WebhooksTable", &id).await;
        let (deliveries_url, deliveries_arn, _) =
            fresh_pair(&self.sqs, "DeliveriesQueue", &format!("t-{id}-dlv")).await;
        let orders = self.orders().await;
        ForwardingStack { webhooks, deliveries_url, deliveries_arn, orders }
    }
}

impl ForwardingStack {
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WEBHOOKS_TABLE", self.webhooks.clone()),
            ("DELIVERIES_QUEUE_URL", self.deliveries_url.clone()),
            ("ORDERS_TABLE", self.orders.table.clone()),
        ]
    }

    async fn build<F: Function>(&self, h: &Harness, logical: &str, extra: &[(&str, &str)], clock: SharedClock) -> F {
        let mut o: Vec<(&str, String)> = self.overrides();
        o.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let o: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.function(logical, &o, clock).await
    }

    pub async fn merchant_api(&self, h: &Harness, clock: SharedClock) -> nex_shared::apps::merchant_api::MerchantApi {
        self.build(h, "ConsentApiFunction", &[], clock).await
    }
    pub async fn dispatcher(&self, h: &Harness, clock: SharedClock) -> nex_shared::apps::webhooks::WebhookDispatcher {
        self.build(h, "WebhookDispatcherFunction", &[], clock).await
    }
    pub async fn sender(
        &self, h: &Harness, extra: &[(&str, &str)], clock: SharedClock,
    ) -> nex_shared::apps::webhooks::WebhookSender {
        self.build(h, "WebhookSenderFunction", extra, clock).await
    }
    pub async fn scheduler(&self, h: &Harness, clock: SharedClock) -> nex_shared::apps::webhooks::WebhookScheduler {
        self.build(h, "WebhookSchedulerFunction", &[], clock).await
    }

    /// Runs the orders pipe, then the dispatcher over the order events queue until it is empty.
    pub async fn dispatch(
        &self, h: &Harness, d: &nex_shared::apps::webhooks::WebhookDispatcher,
    ) -> nex_local::sqs::Round {
        self.orders.pipe.pump().await.expect("orders pipe");
        h.drain_queue(&self.orders.events_url, "arn:aws:sqs:us-east-1:123456789012:order-events", 1, |e| {
            d.handle(e, "t")
        })
        .await
    }

    /// The sender over the deliveries queue until it is empty (visible jobs only).
    pub async fn send(&self, h: &Harness, s: &nex_shared::apps::webhooks::WebhookSender) -> nex_local::sqs::Round {
        h.drain_queue(&self.deliveries_url, &self.deliveries_arn, 1, |e| s.handle(e, "t")).await
    }
}

impl Harness {
    /// A fresh copy of the insights table (its `by_retailer` index included).
    pub async fn insights_table(&self) -> String {
        copy_table(&self.ddb, "InsightsTable", &uuid::Uuid::new_v4().simple().to_string()).await
    }
}

/// A paid payment record stamped for the retention sweep with `st`, as the sweep's bench and the soak
/// seed their tables.
pub fn swept_payment(key: &str, st: &nex_shared::domain::retention::Stamp) -> aws_sdk_dynamodb::types::WriteRequest {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let put = aws_sdk_dynamodb::types::PutRequest::builder()
        .item("payment_key", s(key))
        .item("status", s("paid"))
        .item("amount", AttributeValue::N("1299".into()))
        .item("currency", s("eur"))
        .item("subject", s("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
        .item("expires_at", AttributeValue::N(st.expires_at.to_string()))
        .item("due_bucket", s(&st.due_bucket))
        .item("due_action", s("delete"))
        .build()
        .expect("put");
    aws_sdk_dynamodb::types::WriteRequest::builder().put_request(put).build()
}
