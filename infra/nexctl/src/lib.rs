//! `nexctl`'s operations, callable in-process (the tests drive them against the emulator): the retention
//! sweep, data-subject requests, the audit log, dead-letter queues and contract ends. Every operator action
//! that changes something is written to the audit log as `operator`.
//!
//! Where the stack is: a local stack manifest (`--manifest`, written by `infra/local/provision.py`), or,
//! against AWS, the environment variables the functions themselves use (see `Stack::from_env`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nex_shared::adapters::aws::Aws;
use nex_shared::adapters::dynamo_data::DynamoCheckpoints;
use nex_shared::adapters::dynamo_merchants::DynamoMerchants;
use nex_shared::adapters::secrets;
use nex_shared::adapters::sqs_queue::SqsQueue;
use nex_shared::apps::privacy::{DataRequestsWorker, RetentionSweep};
use nex_shared::config::{store_tables, ConfigError, Vars};
use nex_shared::domain::audit::{self, Entry, NewEntry, Verification};
use nex_shared::domain::data_inventory::Store;
use nex_shared::domain::subject::SubjectHasher;
use nex_shared::function::Function;
use nex_shared::ports::{
    AuditLog, Checkpoints, DataRequests, InfraError, ObjectStore, RequestRecord, SharedClock, SystemClock,
};
use nex_shared::usecases::data_requests::{self, Intake, IntakeError, Opened, Origin, Outcome, ProcessError};
use nex_shared::usecases::sweep::{self, Progress, Report};
use serde::{Deserialize, Serialize};

/// How long an export link printed for an operator works.
const LINK_VALID: std::time::Duration = std::time::Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Infra(#[from] InfraError),
    #[error("{0}")]
    Intake(#[from] IntakeError),
    #[error("{0}")]
    Process(#[from] ProcessError),
    #[error("{0}")]
    NotFound(String),
}

impl From<nex_shared::config::InitError> for OpsError {
    fn from(e: nex_shared::config::InitError) -> Self {
        OpsError::Config(e.to_string())
    }
}

impl From<ConfigError> for OpsError {
    fn from(e: ConfigError) -> Self {
        OpsError::Config(e.to_string())
    }
}

/// Where the suite's resources are.
#[derive(Debug, Clone)]
pub struct Stack {
    pub vars: BTreeMap<String, String>,
    /// Source queues (those with a dead-letter queue), by name.
    pub queues: BTreeMap<String, String>,
}

impl Vars for Stack {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    region: Option<String>,
    functions: BTreeMap<String, ManifestFunction>,
    queues: BTreeMap<String, ManifestQueue>,
    secrets: BTreeMap<String, ManifestSecret>,
}

#[derive(Deserialize)]
struct ManifestFunction {
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ManifestQueue {
    url: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ManifestSecret {
    name: String,
}

/// The SDK configuration for a local stack manifest: its emulator's endpoint and region, and the
/// emulator's placeholder credentials, so `nexctl --manifest ...` works from a fresh shell.
pub async fn manifest_sdk_config(path: &str) -> Result<aws_config::SdkConfig, OpsError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| OpsError::Config(format!("cannot read manifest {path}: {e}")))?;
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| OpsError::Config(format!("manifest {path} is invalid: {e}")))?;
    let endpoint = m.endpoint.ok_or_else(|| OpsError::Config(format!("manifest {path} names no endpoint")))?;
    let region = m.region.unwrap_or_else(|| "us-east-1".into());
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "nex-manifest"))
        .load()
        .await)
}

impl Stack {
    /// From a local stack manifest: the functions' own variables, and every queue with a redrive policy.
    pub fn from_manifest(path: &str) -> Result<Self, OpsError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| OpsError::Config(format!("cannot read manifest {path}: {e}")))?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| OpsError::Config(format!("manifest {path} is invalid: {e}")))?;
        let mut vars: BTreeMap<String, String> = m.functions.into_values().flat_map(|f| f.env).collect();
        if let Some(s) = m.secrets.get("SubjectPepperSecret") {
            vars.insert("SUBJECT_PEPPER_SECRET_ID".into(), s.name.clone());
        }
        let queues = m
            .queues
            .into_iter()
            .filter(|(_, q)| q.attributes.contains_key("RedrivePolicy"))
            .map(|(name, q)| (name, q.url))
            .collect();
        Ok(Self { vars, queues })
    }

    /// From the environment, against AWS: `PAYMENTS_TABLE`, `MESSAGING_TABLE`, `DATA_REQUESTS_TABLE`,
    /// `ORDERS_TABLE`, `PLATFORM_TABLE`, `EXPORTS_BUCKET`, `SWEEP_QUEUE_URL`, `DATA_REQUESTS_QUEUE_URL`,
    /// `SUBJECT_PEPPER_SECRET_ID` (the stack's outputs) and `NEX_QUEUE_URLS` (comma-separated source queues).
    pub fn from_env() -> Self {
        let vars = std::env::vars().collect();
        let queues = std::env::var("NEX_QUEUE_URLS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| (u.rsplit('/').next().unwrap_or(u).to_owned(), u.to_owned()))
            .collect();
        Self { vars, queues }
    }
}

/// A progress bar, or nothing.
pub struct Bar(pub Option<indicatif::ProgressBar>);

impl Progress for Bar {
    fn buckets(&self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }
}

pub struct Ops {
    pub stack: Stack,
    pub sdk: aws_config::SdkConfig,
    pub sweep: RetentionSweep,
    pub worker: DataRequestsWorker,
    pub merchants: DynamoMerchants,
    pub checkpoints: DynamoCheckpoints,
    pub sqs: aws_sdk_sqs::Client,
}

/// A dead-letter queue and what feeds it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetters {
    pub source: String,
    pub dlq: String,
    pub dlq_url: String,
    pub depth: u64,
}

/// A message seen in a dead-letter queue: the envelope's metadata (bodies may hold personal data).
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub receive_count: u64,
    pub sent_at: Option<DateTime<Utc>>,
    pub kind: Option<String>,
    pub version: Option<u64>,
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A request as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    #[serde(flatten)]
    pub record: RequestRecord,
    pub export_url: Option<String>,
}

impl Ops {
    pub async fn new(stack: Stack, sdk: aws_config::SdkConfig) -> Result<Self, OpsError> {
        let messaging_table = store_tables(&stack)?.get(&Store::Messaging).cloned().unwrap_or_default();
        let platform = stack.required("PLATFORM_TABLE")?;
        // Metrics are the functions' (EMF on a Lambda's stdout); here stdout is the operator's.
        let aws = Aws::new(sdk.clone());
        let clock: SharedClock = std::sync::Arc::new(SystemClock);
        let mut sweep = RetentionSweep::build(&aws, RetentionSweep::config(&stack)?, clock.clone()).await?;
        sweep.metrics = sweep.metrics.clone().silent();
        // An operator's run answers no person (the answer's address travels only in the queue message
        // of a person's own request), so the worker's notifications queue is never used from here.
        let mut worker_vars = stack.vars.clone();
        worker_vars
            .entry("NOTIFICATIONS_QUEUE_URL".into())
            .or_insert_with(|| "unused:operator-runs-answer-no-person".into());
        let mut worker = DataRequestsWorker::build(&aws, DataRequestsWorker::config(&worker_vars)?, clock).await?;
        worker.metrics = worker.metrics.clone().silent();
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        Ok(Self {
            merchants: DynamoMerchants::new(ddb.clone(), messaging_table),
            checkpoints: DynamoCheckpoints::new(ddb, platform),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sweep,
            worker,
            stack,
            sdk,
        })
    }

    async fn record(&self, action: &str, subject: Option<&str>, detail: serde_json::Value) -> Result<(), OpsError> {
        self.worker.stores.audit.append(NewEntry::new("operator", action, subject, &detail), Utc::now()).await?;
        Ok(())
    }

    /// Runs (or dry-runs) the sweep now, continuing from its checkpoint, for up to `budget`.
    pub async fn sweep(&self, dry_run: bool, budget: chrono::Duration, progress: &Bar) -> Result<Report, OpsError> {
        Ok(self.sweep.run(dry_run, Utc::now() + budget, progress).await?)
    }

    /// The sweep's saved position, as stored.
    pub async fn sweep_status(&self) -> Result<serde_json::Value, OpsError> {
        let cp = self.checkpoints.load(sweep::CHECKPOINT).await?;
        Ok(cp
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or(serde_json::json!({ "swept_through": null, "cursor": null })))
    }

    /// Opens a request for a person (identifiers hashed here, never stored) and queues it.
    pub async fn open_request(
        &self, intake: &Intake, merchant: Option<&str>, reference: Option<&str>,
    ) -> Result<Opened, OpsError> {
        let pepper = secrets::fetch(
            &aws_sdk_secretsmanager::Client::new(&self.sdk),
            &self.stack.required("SUBJECT_PEPPER_SECRET_ID")?,
        )
        .await?;
        let hasher = SubjectHasher::new(&pepper);
        let queue = SqsQueue::new(self.sqs.clone(), self.stack.required("DATA_REQUESTS_QUEUE_URL")?);
        let origin = Origin {
            id: data_requests::request_id("op", "operator", reference),
            source: nex_shared::ports::SOURCE_OPERATOR.into(),
            merchant: merchant.map(str::to_owned),
        };
        let opened =
            data_requests::open(&self.worker.stores.requests, &queue, &hasher, intake, origin, Utc::now()).await?;
        let subject = opened.request.subjects.first().cloned();
        self.record(
            "dsr.opened",
            subject.as_deref(),
            serde_json::json!({ "request": opened.request.id, "kind": opened.request.kind, "new": opened.new }),
        )
        .await?;
        Ok(opened)
    }

    /// Closes a request an operator answered (a correction, or anything left `needs_operator`), with a
    /// short outcome code (`corrected`, `declined`, ...): it leaves the open list and the deadline alarm,
    /// and the closing is audited.
    pub async fn close_request(&self, id: &str, outcome: &str) -> Result<(), OpsError> {
        if !nex_shared::domain::validate::is_token(outcome) {
            return Err(OpsError::Config(
                "--outcome is a short code: lower-case letters, digits and _ (e.g. corrected, declined)".into(),
            ));
        }
        let record = self.request(id).await?;
        if matches!(record.status.as_str(), "completed" | "closed") {
            return Err(OpsError::Config(format!("request {id} is already {}", record.status)));
        }
        let result = serde_json::json!({ "outcome": outcome, "closed_by": "operator" });
        let now = Utc::now();
        self.worker
            .stores
            .audit
            .append(
                NewEntry::new(
                    "operator",
                    "dsr.closed",
                    record.request.subjects.first().map(String::as_str),
                    &serde_json::json!({ "request": id, "outcome": outcome }),
                )
                .keyed(format!("dsr#{id}#closed")),
                now,
            )
            .await?;
        self.worker.stores.requests.update(id, "closed", Some(&result.to_string()), None, now).await?;
        Ok(())
    }

    pub async fn open_requests(&self) -> Result<Vec<(String, DateTime<Utc>)>, OpsError> {
        Ok(self.worker.stores.requests.open_requests().await?)
    }

    /// Request `id`, or `NotFound`.
    async fn request(&self, id: &str) -> Result<nex_shared::ports::RequestRecord, OpsError> {
        self.worker
            .stores
            .requests
            .get(id)
            .await?
            .ok_or_else(|| OpsError::NotFound(format!("no data-subject request {id}")))
    }

    pub async fn show_request(&self, id: &str) -> Result<RequestView, OpsError> {
        let record = self.request(id).await?;
        let export_url = match &record.export_key {
            Some(k) => Some(self.worker.stores.exports.presigned_get(k, LINK_VALID).await?),
            None => None,
        };
        Ok(RequestView { record, export_url })
    }

    /// Processes a request now (as the worker would); `again` re-runs a completed one.
    pub async fn run_request(&self, id: &str, again: bool) -> Result<Outcome, OpsError> {
        Ok(self.worker.processor("operator").process(id, Utc::now(), again).await?)
    }

    pub async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<Entry>, OpsError> {
        Ok(self.worker.stores.audit.entries(after, limit).await?)
    }

    /// Reads the whole chain and checks every link and the head.
    pub async fn verify_audit(&self) -> Result<Verification, OpsError> {
        let head = self.worker.stores.audit.head().await?;
        let mut all = Vec::new();
        loop {
            let after = all.last().map_or(0, |e: &Entry| e.seq);
            let page = self.worker.stores.audit.entries(after, 1000).await?;
            if page.is_empty() {
                break;
            }
            all.extend(page);
        }
        Ok(audit::verify(&all, head.as_ref().map(|(n, h)| (*n, h.as_str()))))
    }

    fn connections(&self) -> Result<nex_shared::adapters::dynamo_connections::DynamoConnections, OpsError> {
        let table = self.stack.required("CONNECTIONS_TABLE")?;
        Ok(nex_shared::adapters::dynamo_connections::DynamoConnections::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
        ))
    }

    fn insights(&self) -> Result<nex_shared::adapters::dynamo_insights::DynamoInsights, OpsError> {
        let table = self.stack.required("INSIGHTS_TABLE")?;
        Ok(nex_shared::adapters::dynamo_insights::DynamoInsights::new(aws_sdk_dynamodb::Client::new(&self.sdk), table))
    }

    /// The ad accounts the platform pulls, with their state.
    pub async fn insights_accounts(&self) -> Result<Vec<nex_shared::adapters::dynamo_insights::AdAccount>, OpsError> {
        Ok(self.insights()?.accounts().await?)
    }

    /// Adds an ad account (its currency and time zone are read from Meta on its first pull). Audited.
    pub async fn insights_add_account(&self, id: &str) -> Result<bool, OpsError> {
        let a = nex_shared::adapters::dynamo_insights::AdAccount::new(id);
        let added = self.insights()?.add_account(&a).await?;
        self.record("insights.account_added", None, serde_json::json!({ "account": a.id, "added": added })).await?;
        Ok(added)
    }

    /// Pulls a stopped account again (after its token was fixed). Audited.
    pub async fn insights_resume(&self, id: &str) -> Result<bool, OpsError> {
        let store = self.insights()?;
        let Some(mut a) = store.account(id).await? else { return Ok(false) };
        a.status = "active".into();
        a.throttle_until = None;
        a.last_error = None;
        a.lease_until = None;
        a.head_failures = 0;
        store.save_account(&a, None).await?;
        self.record("insights.account_resumed", None, serde_json::json!({ "account": id })).await?;
        Ok(true)
    }

    /// Maps a campaign to a retailer (an operator's word; its stored rows and rollups follow). Audited.
    pub async fn insights_map(&self, campaign: &str, account: &str, retailer: &str) -> Result<usize, OpsError> {
        let moved = nex_shared::usecases::insights::map_campaign(
            &self.insights()?,
            campaign,
            account,
            retailer,
            "operator",
            chrono::Utc::now(),
        )
        .await?;
        self.record(
            "insights.campaign_mapped",
            None,
            serde_json::json!({ "campaign": campaign, "account": account, "retailer": retailer, "rows": moved }),
        )
        .await?;
        Ok(moved)
    }

    /// Campaigns seen in pulls without a mapping, every mapping, and retailers' pending requests.
    #[allow(clippy::type_complexity)]
    pub async fn insights_campaigns(
        &self,
    ) -> Result<
        (Vec<(String, String)>, std::collections::HashMap<String, String>, Vec<(String, String, String, i64)>),
        OpsError,
    > {
        let store = self.insights()?;
        Ok((store.unmapped().await?, store.mappings().await?, store.mapping_requests().await?))
    }

    fn webhooks(&self) -> Result<nex_shared::adapters::dynamo_webhooks::DynamoWebhooks, OpsError> {
        let table = self.stack.required("WEBHOOKS_TABLE")?;
        Ok(nex_shared::adapters::dynamo_webhooks::DynamoWebhooks::new(aws_sdk_dynamodb::Client::new(&self.sdk), table))
    }

    /// A merchant's webhook endpoints with their health (never their secrets).
    pub async fn endpoints_list(&self, merchant: &str) -> Result<Vec<nex_shared::ports::Endpoint>, OpsError> {
        use nex_shared::ports::WebhookStore;
        Ok(self.webhooks()?.endpoints(merchant).await?)
    }

    /// An endpoint's recent attempts (newest first) and its deliveries that are not succeeded.
    pub async fn endpoint_activity(
        &self, merchant: &str, endpoint: &str, limit: usize,
    ) -> Result<(Vec<nex_shared::ports::Attempt>, Vec<nex_shared::ports::Delivery>), OpsError> {
        let w = self.webhooks()?;
        let attempts = w.attempts(merchant, endpoint, limit).await?;
        use nex_shared::ports::DeliveryState;
        let open = w
            .deliveries_where(merchant, endpoint, &[DeliveryState::Pending, DeliveryState::Failed], None, 1000)
            .await?
            .0;
        Ok((attempts, open))
    }

    /// Every marketplace connection (or one merchant's) and its health: status, watermark, last success,
    /// last error class, backoff. Never credentials.
    pub async fn connections_list(
        &self, merchant: Option<&str>,
    ) -> Result<Vec<nex_shared::domain::orders::connection::Connection>, OpsError> {
        let c = self.connections()?;
        let mut list = match merchant {
            Some(m) => c.for_merchant(m).await?,
            None => c.all().await?,
        };
        list.sort_by(|a, b| {
            (&a.merchant, a.marketplace.as_str(), &a.id).cmp(&(&b.merchant, b.marketplace.as_str(), &b.id))
        });
        Ok(list)
    }

    /// Pauses or resumes a connection (an operator's action, audited).
    pub async fn connection_pause(&self, id: &str, paused: bool) -> Result<bool, OpsError> {
        let changed = self.connections()?.set_paused(id, None, paused).await?;
        let action = if paused { "connection.paused" } else { "connection.resumed" };
        self.record(action, None, serde_json::json!({ "connection": id, "changed": changed })).await?;
        Ok(changed)
    }

    /// Marks a merchant's contract as ended; the next sweep deletes its order metadata.
    pub async fn terminate_merchant(&self, merchant: &str, at: DateTime<Utc>) -> Result<bool, OpsError> {
        let new = self.merchants.mark_terminated(merchant, at).await?;
        self.record("merchant.contract_ended", None, serde_json::json!({ "merchant": merchant, "at": at, "new": new }))
            .await?;
        Ok(new)
    }

    /// Every source queue's dead-letter queue and its depth.
    pub async fn dead_letter_queues(&self) -> Result<Vec<DeadLetters>, OpsError> {
        let mut out = Vec::new();
        for (name, url) in &self.stack.queues {
            let attrs = self
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .map_err(|e| nex_shared::adapters::aws::infra_error("sqs", "GetQueueAttributes", e))?;
            let Some(policy) =
                attrs.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
            else {
                continue;
            };
            let arn = serde_json::from_str::<serde_json::Value>(policy)
                .ok()
                .and_then(|v| v.get("deadLetterTargetArn").and_then(|a| a.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let dlq = arn.rsplit(':').next().unwrap_or_default().to_owned();
            let dlq_url = self
                .sqs
                .get_queue_url()
                .queue_name(&dlq)
                .send()
                .await
                .map_err(|e| nex_shared::adapters::aws::infra_error("sqs", "GetQueueUrl", e))?
                .queue_url
                .unwrap_or_default();
            let depth = self
                .sqs
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .map_err(|e| nex_shared::adapters::aws::infra_error("sqs", "GetQueueAttributes", e))?
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            out.push(DeadLetters { source: name.clone(), dlq, dlq_url, depth });
        }
        Ok(out)
    }

    async fn dlq_for(&self, queue: &str) -> Result<DeadLetters, OpsError> {
        self.dead_letter_queues()
            .await?
            .into_iter()
            .find(|d| d.source == queue || d.dlq == queue)
            .ok_or_else(|| OpsError::NotFound(format!("no queue {queue} with a dead-letter queue")))
    }

    /// Up to `n` messages of `url` with their system attributes, invisible for `visibility` seconds.
    async fn receive(
        &self, url: &str, n: usize, visibility: i32,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>, OpsError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(n as i32)
            .visibility_timeout(visibility)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| nex_shared::adapters::aws::infra_error("sqs", "ReceiveMessage", e))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Looks at up to `max` dead letters without taking them off the queue.
    pub async fn inspect_dlq(&self, queue: &str, max: usize, with_body: bool) -> Result<Vec<DeadLetter>, OpsError> {
        let d = self.dlq_for(queue).await?;
        let mut seen: BTreeMap<String, DeadLetter> = BTreeMap::new();
        let mut handles = Vec::new();
        while seen.len() < max {
            let msgs = self.receive(&d.dlq_url, (max - seen.len()).min(10), 30).await?;
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                handles.push(m.receipt_handle.clone().unwrap_or_default());
                let body = m.body.clone().unwrap_or_default();
                let env = serde_json::from_str::<serde_json::Value>(&body).ok();
                let get = |k: &str| env.as_ref().and_then(|v| v.get(k)).cloned();
                let attr =
                    |k: aws_sdk_sqs::types::MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&k)).cloned();
                let id = m.message_id.clone().unwrap_or_default();
                seen.insert(
                    id.clone(),
                    DeadLetter {
                        message_id: id,
                        receive_count: attr(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0),
                        sent_at: attr(aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
                            .and_then(|t| t.parse::<i64>().ok())
                            .and_then(DateTime::from_timestamp_millis),
                        kind: get("type").and_then(|v| v.as_str().map(str::to_owned)),
                        version: get("version").and_then(|v| v.as_u64()),
                        id: get("id").and_then(|v| v.as_str().map(str::to_owned)),
                        body: with_body.then_some(body),
                    },
                );
            }
        }
        // Put them back at once: looking is not taking.
        for h in handles {
            self.sqs
                .change_message_visibility()
                .queue_url(&d.dlq_url)
                .receipt_handle(h)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(|e| nex_shared::adapters::aws::infra_error("sqs", "ChangeMessageVisibility", e))?;
        }
        Ok(seen.into_values().collect())
    }

    /// Moves up to `max` dead letters back to their source queue (each sent before it is deleted, so a
    /// failure midway duplicates at worst, which every consumer absorbs). Audited.
    pub async fn redrive(&self, queue: &str, max: Option<usize>) -> Result<u64, OpsError> {
        let d = self.dlq_for(queue).await?;
        let source_url =
            self.stack.queues.get(&d.source).cloned().ok_or_else(|| OpsError::NotFound(d.source.clone()))?;
        let mut moved = 0u64;
        loop {
            let room = max.map_or(10, |m| (m as u64 - moved).min(10) as usize);
            if room == 0 {
                break;
            }
            let msgs = self.receive(&d.dlq_url, room, 60).await?;
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                self.sqs
                    .send_message()
                    .queue_url(&source_url)
                    .message_body(m.body.unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| nex_shared::adapters::aws::infra_error("sqs", "SendMessage", e))?;
                self.sqs
                    .delete_message()
                    .queue_url(&d.dlq_url)
                    .receipt_handle(m.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| nex_shared::adapters::aws::infra_error("sqs", "DeleteMessage", e))?;
                moved += 1;
            }
        }
        self.record("dlq.redrive", None, serde_json::json!({ "source": d.source, "dlq": d.dlq, "moved": moved }))
            .await?;
        Ok(moved)
    }
}
