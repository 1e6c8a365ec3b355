//! Meta ad insights: the scheduler (one pull job per active ad account, and the Marketing API version's
//! days left as a metric), the puller (one account per invocation; campaign mappings too), and the merchant
//! API's ad performance routes.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::NaiveDate;
use tracing::{info, Instrument};

use crate::adapters::aws::Aws;
use crate::adapters::dynamo_insights::DynamoInsights;
use crate::adapters::emf::EmfMetrics;
use crate::adapters::meta_graph::GraphClient;
use crate::adapters::secrets;
use crate::adapters::sqs_batch::{self, Failure};
use crate::adapters::sqs_queue::SqsQueue;
use crate::config;
use crate::config::InitError;
use crate::domain::insights;
use crate::function::{Function, Invocation, ScheduleFunction, SqsFunction};
use crate::ports::{Clock, InfraError, Metrics, SharedClock};
use crate::usecases::insights::{map_campaign, Outcome, PullSettings, Puller};

/// Queue messages of the insights queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsightsMessage {
    /// Pull one ad account.
    InsightsPull { account_id: String },
    /// A campaign was created for a retailer (the platform's campaign tooling says so).
    CampaignMapped { campaign_id: String, account_id: String, retailer: String },
}

impl InsightsMessage {
    pub fn parse(body: &str) -> Option<Self> {
        let m: Self = serde_json::from_str(body).ok()?;
        let id_ok = |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit());
        match &m {
            Self::InsightsPull { account_id } if id_ok(account_id) => Some(m),
            Self::CampaignMapped { campaign_id, account_id, retailer }
                if id_ok(campaign_id) && id_ok(account_id) && !retailer.is_empty() && retailer.len() <= 128 =>
            {
                Some(m)
            }
            _ => None,
        }
    }
}

fn checked_version(v: &str) -> Result<(), InitError> {
    match insights::api_version_major(v) {
        Some(m) if m >= insights::MIN_API_VERSION => Ok(()),
        _ => Err(InitError::Unusable(format!(
            "META_API_VERSION {v:?}: the Marketing API version must be v{}.0 or later",
            insights::MIN_API_VERSION
        ))),
    }
}

/// Every `InsightsSchedule`: one pull job per active ad account, and the version's days left.
pub struct InsightsScheduler {
    pub clock: SharedClock,
    pub store: DynamoInsights,
    pub queue: SqsQueue,
    pub metrics: EmfMetrics,
    pub version_expires: NaiveDate,
}

config! {
    InsightsSchedulerConfig {
        insights_table: String = "INSIGHTS_TABLE",
        insights_queue_url: String = "INSIGHTS_QUEUE_URL",
        api_version: String = "META_API_VERSION",
        version_expires: String = "META_API_VERSION_EXPIRES",
    }
}

impl Function for InsightsScheduler {
    const NAME: &'static str = "insights-scheduler";
    type Config = InsightsSchedulerConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        checked_version(&config.api_version)?;
        let version_expires = config
            .version_expires
            .parse()
            .map_err(|_| InitError::Unusable("META_API_VERSION_EXPIRES is not a date (YYYY-MM-DD)".into()))?;
        Ok(Self {
            clock,
            store: DynamoInsights::new(aws.dynamodb(), config.insights_table),
            queue: SqsQueue::new(aws.sqs(), config.insights_queue_url),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            version_expires,
        })
    }
}

impl ScheduleFunction for InsightsScheduler {
    async fn schedule(
        &self, _event: serde_json::Value, invocation: &Invocation,
    ) -> Result<serde_json::Value, InfraError> {
        let span = tracing::info_span!("insights_scheduler", request_id = %invocation.request_id);
        async {
            let now = self.clock.now();
            let days_left = (self.version_expires - now.date_naive()).num_days();
            // The alarm fires 45 days before the configured version expires.
            self.metrics.count("MetaApiVersionDaysLeft", days_left.max(0) as u64, None);
            let accounts = self.store.accounts().await?;
            let active: Vec<String> = accounts
                .iter()
                .filter(|a| a.status == "active")
                .map(|a| {
                    serde_json::to_string(&InsightsMessage::InsightsPull { account_id: a.id.clone() })
                        .unwrap_or_default()
                })
                .collect();
            let stopped = accounts.len() - active.len();
            if stopped > 0 {
                self.metrics.count("InsightsAccountsStopped", stopped as u64, None);
            }
            // Active, but no complete pull for two days (or never, two days after it was added).
            let stale = accounts
                .iter()
                .filter(|a| a.status == "active" && a.last_success_at.is_some_and(|s| now.timestamp() - s > 2 * 86_400))
                .count();
            if stale > 0 {
                self.metrics.count("InsightsAccountsStale", stale as u64, None);
            }
            self.queue.send_batch(&active).await?;
            info!(queued = active.len(), stopped, days_left, "insights pulls queued");
            Ok(serde_json::json!({ "queued": active.len(), "stopped": stopped, "version_days_left": days_left }))
        }
        .instrument(span)
        .await
    }
}

/// The insights queue: one account's pull per job (one job per invocation), or a campaign mapping.
pub struct InsightsPuller {
    pub clock: SharedClock,
    pub store: DynamoInsights,
    pub graph: GraphClient,
    pub queue: SqsQueue,
    pub metrics: EmfMetrics,
    pub settings: PullSettings,
}

config! {
    InsightsPullerConfig {
        insights_table: String = "INSIGHTS_TABLE",
        insights_queue_url: String = "INSIGHTS_QUEUE_URL",
        graph_base_url: String = "GRAPH_API_BASE_URL",
        api_version: String = "META_API_VERSION",
        token_secret_id: String = "META_TOKEN_SECRET_ID",
        restatement_days: u32 = "INSIGHTS_RESTATEMENT_DAYS" or 28,
        pace: bool = "INSIGHTS_PACE" or true,
    }
}

impl Function for InsightsPuller {
    const NAME: &'static str = "insights-puller";
    type Config = InsightsPullerConfig;

    async fn build(aws: &Aws, config: Self::Config, clock: SharedClock) -> Result<Self, InitError> {
        checked_version(&config.api_version)?;
        let token = secrets::fetch(&aws.secrets_manager(), &config.token_secret_id).await?;
        Ok(Self {
            clock,
            store: DynamoInsights::new(aws.dynamodb(), config.insights_table),
            graph: GraphClient::new(&config.graph_base_url, &config.api_version, token),
            queue: SqsQueue::new(aws.sqs(), config.insights_queue_url),
            metrics: EmfMetrics::new("Nex", Self::NAME),
            settings: PullSettings {
                restatement_days: config.restatement_days.clamp(1, 90),
                pace: config.pace,
                ..PullSettings::default()
            },
        })
    }
}

impl InsightsPuller {
    /// One message.
    pub async fn handle_message(
        &self, m: &InsightsMessage, deadline: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), InfraError> {
        let now = self.clock.now();
        match m {
            InsightsMessage::CampaignMapped { campaign_id, account_id, retailer } => {
                let n = map_campaign(&self.store, campaign_id, account_id, retailer, "queue", now).await?;
                info!(campaign = %campaign_id, retailer = %retailer, rows = n, "campaign mapped");
            }
            InsightsMessage::InsightsPull { account_id } => {
                let puller =
                    Puller { store: &self.store, graph: &self.graph, metrics: &self.metrics, settings: self.settings };
                let pulled = puller.pull(account_id, now, deadline).await?;
                info!(account = %account_id, outcome = ?pulled.outcome, rows_read = pulled.rows_read,
                    rows_written = pulled.rows_written, rollups = pulled.rollups, graph_calls = pulled.graph_calls,
                    "insights pull");
                self.metrics.count("InsightsRowsWritten", pulled.rows_written as u64, None);
                if let Outcome::Later { until } = pulled.outcome {
                    // Resumed when the wait ends (the next schedule would, too): a queued job, delayed.
                    let wait = (until - now.timestamp()).clamp(1, 900);
                    let body = serde_json::to_string(m).unwrap_or_default();
                    self.queue.send_batch_delayed(&[body], wait as i32).await?;
                }
            }
        }
        Ok(())
    }
}

impl SqsFunction for InsightsPuller {
    async fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> SqsBatchResponse {
        let span = tracing::info_span!("insights_puller", request_id = %invocation.request_id);
        let response = sqs_batch::process(event, invocation.deadline, |record| async move {
            let Some(m) = InsightsMessage::parse(record.body.as_deref().unwrap_or("")) else {
                return Err(Failure::new("MalformedMessage", "not an insights message"));
            };
            self.handle_message(&m, invocation.deadline).await?;
            Ok::<_, Failure>(())
        })
        .instrument(span)
        .await;
        sqs_batch::count_failed(&self.metrics, "insights_records_failed", &response);
        response
    }
}

/// The merchant API's ad performance routes (the merchant from the key; another retailer's campaigns are
/// never visible):
/// - `GET /ad-performance?since=YYYY-MM-DD&until=YYYY-MM-DD[&format=csv]`: the retailer's daily rollups
///   (impressions, clicks, spend, CTR, CPC per currency) and per-campaign rows; CSV for spreadsheets;
/// - `GET /ad-campaigns`: the campaigns mapped to the retailer;
/// - `POST /ad-campaigns` (`{"campaign_id", "account_id"}`): asks for a campaign to be mapped to the
///   retailer. A request, not a mapping: it gives access to nothing until the platform's campaign tooling
///   or an operator maps the campaign (nobody can take another retailer's campaign by naming its id).
pub struct AdRoutes {
    pub clock: SharedClock,
    pub store: DynamoInsights,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    campaign_id: String,
    account_id: String,
}

fn csv_field(s: &str) -> String {
    // Quoted, quotes doubled, and a leading =+-@ neutralised (no formula injection into a spreadsheet).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl AdRoutes {
    pub fn owns(path: &str) -> bool {
        path == "/ad-performance" || path == "/ad-campaigns"
    }

    pub async fn handle(
        &self, merchant: &str, method: &::http::Method, path: &str,
        query: &lambda_http::aws_lambda_events::query_map::QueryMap, body: &[u8],
    ) -> crate::function::Response {
        use crate::http;
        use ::http::Method;
        match (method, path) {
            (&Method::GET, "/ad-performance") => self.performance(merchant, query).await,
            (&Method::GET, "/ad-campaigns") => {
                match tokio::try_join!(self.store.mappings(), self.store.mapping_requests()) {
                    Ok((m, requests)) => {
                        let mut mine: Vec<&String> =
                            m.iter().filter(|(_, r)| r.as_str() == merchant).map(|(c, _)| c).collect();
                        mine.sort();
                        let mut asked: Vec<&String> = requests
                            .iter()
                            .filter(|(c, _, r, _)| {
                                r.as_str() == merchant && m.get(c).map(String::as_str) != Some(merchant)
                            })
                            .map(|(c, ..)| c)
                            .collect();
                        asked.sort();
                        http::json(200, serde_json::json!({ "campaigns": mine, "requested": asked }))
                    }
                    Err(e) => http::unavailable(&e),
                }
            }
            (&Method::POST, "/ad-campaigns") => self.claim(merchant, body).await,
            _ => http::refuse(405, "method_not_allowed"),
        }
    }

    async fn claim(&self, merchant: &str, body: &[u8]) -> crate::function::Response {
        use crate::http;
        let Ok(b) = serde_json::from_slice::<ClaimBody>(body) else {
            return http::refuse(400, "body_must_name_campaign_id_and_account_id");
        };
        let id_ok = |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_digit());
        if !id_ok(&b.campaign_id) || !id_ok(&b.account_id) {
            return http::refuse(422, "ids_are_metas_numeric_ids");
        }
        // Recorded for the platform (or an operator) to confirm; the same answer whatever the campaign's
        // state, so the route tells nobody which ids exist or whose they are.
        let now = self.clock.now().timestamp();
        match self.store.request_mapping(&b.campaign_id, &b.account_id, merchant, now).await {
            Ok(_) => http::json(
                202,
                serde_json::json!({ "campaign_id": b.campaign_id, "status": "requested",
                    "note": "mapped once the platform confirms the campaign was created for you" }),
            ),
            Err(e) => http::unavailable(&e),
        }
    }

    async fn performance(
        &self, merchant: &str, query: &lambda_http::aws_lambda_events::query_map::QueryMap,
    ) -> crate::function::Response {
        use crate::http;
        let date = |k: &str| query.first(k).and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok());
        let (Some(since), Some(until)) = (date("since"), date("until")) else {
            return http::refuse(400, "since_and_until_required_as_yyyy_mm_dd");
        };
        if until < since || (until - since).num_days() > 400 {
            return http::refuse(422, "range_must_be_0_to_400_days");
        }
        let (rollups, rows) = match tokio::try_join!(
            self.store.rollups(merchant, since, until),
            self.store.retailer_rows(merchant, since, until)
        ) {
            Ok(x) => x,
            Err(e) => return http::unavailable(&e),
        };
        let mut rows = rows;
        rows.sort_by(|a, b| (a.date, &a.account_id, &a.campaign_id).cmp(&(b.date, &b.account_id, &b.campaign_id)));
        if query.first("format") == Some("csv") {
            let mut out =
                String::from("date,account_id,campaign_id,campaign_name,impressions,clicks,spend,currency,ctr,cpc\n");
            for r in &rows {
                let mut one = insights::Rollup::default();
                one.add(r);
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{}\n",
                    r.date,
                    csv_field(&r.account_id),
                    csv_field(&r.campaign_id),
                    csv_field(&r.campaign_name),
                    r.impressions,
                    r.clicks,
                    insights::dec(r.spend),
                    csv_field(&r.currency),
                    one.ctr().map(insights::dec).unwrap_or_default(),
                    one.cpc().map(insights::dec).unwrap_or_default(),
                ));
            }
            return lambda_http::Response::builder()
                .status(200)
                .header("content-type", "text/csv; charset=utf-8")
                .header("content-disposition", "attachment; filename=\"ad-performance.csv\"")
                .body(lambda_http::Body::Text(out))
                .unwrap_or_else(|_| http::refuse(500, "internal"));
        }
        let days: Vec<_> = rollups
            .iter()
            .map(|(d, c, r)| {
                serde_json::json!({
                    "date": d, "currency": c, "impressions": r.impressions, "clicks": r.clicks,
                    "spend": insights::dec(r.spend), "ctr": r.ctr().map(insights::dec), "cpc": r.cpc().map(insights::dec),
                    "campaigns": r.campaigns,
                })
            })
            .collect();
        let campaigns: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "date": r.date, "account_id": r.account_id, "campaign_id": r.campaign_id,
                    "campaign_name": r.campaign_name, "impressions": r.impressions, "clicks": r.clicks,
                    "spend": insights::dec(r.spend), "currency": r.currency,
                })
            })
            .collect();
        http::json(200, serde_json::json!({ "since": since, "until": until, "days": days, "campaigns": campaigns }))
    }
}
