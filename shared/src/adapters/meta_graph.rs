//! The Meta Graph API's Marketing endpoints the insights puller uses: the ad account, campaign insights
//! (synchronous, cursor-paged), and asynchronous report runs. The base URL and version come from config;
//! the token travels in the `Authorization` header, never in a URL the suite builds or logs. A `paging.next`
//! URL is followed only on the configured base (the token would go wherever it points).

use std::time::Duration;

use chrono::NaiveDate;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::insights::{self, GraphError, JobState, Page, Usage};

/// The account facts a pull needs.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountInfo {
    pub currency: String,
    pub offset_hours: f64,
    pub timezone_name: String,
}

/// Why a call gave nothing usable.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Meta answered with an error body.
    Graph(GraphError, Usage),
    /// No answer (timeout, connection) or a 5xx without an error body.
    Transport,
    /// An answer in no documented shape.
    Unreadable,
}

/// Answers larger than this are refused.
const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
    version: String,
    token: SecretString,
}

impl GraphClient {
    pub fn new(base: &str, version: &str, token: SecretString) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS client with timeouts builds (rustls needs no system state)");
        Self { http, base: base.trim_end_matches('/').to_owned(), version: version.to_owned(), token }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base, self.version, path.trim_start_matches('/'))
    }

    fn get(&self, path: &str, params: &[(&str, String)]) -> reqwest::RequestBuilder {
        let q = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        self.http.get(format!("{}?{q}", self.url(path)))
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<(Vec<u8>, Usage), Failure> {
        let resp = req.bearer_auth(self.token.expose_secret()).send().await.map_err(|_| Failure::Transport)?;
        let h = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let usage = insights::usage(
            h("x-business-use-case-usage").as_deref(),
            h("x-ad-account-usage").as_deref(),
            h("x-fb-ads-insights-throttle").as_deref(),
        );
        let status = resp.status();
        if resp.content_length().is_some_and(|l| l as usize > MAX_BODY) {
            return Err(Failure::Unreadable);
        }
        let body = resp.bytes().await.map_err(|_| Failure::Transport)?;
        if body.len() > MAX_BODY {
            return Err(Failure::Unreadable);
        }
        if let Some(e) = insights::parse_error(&body) {
            let mut e = e;
            if let insights::ErrorClass::Throttled { regain_secs, .. } = &mut e.class {
                *regain_secs = usage.regain_secs;
            }
            return Err(Failure::Graph(e, usage));
        }
        if status.is_server_error() {
            return Err(Failure::Transport);
        }
        if !status.is_success() {
            return Err(Failure::Unreadable);
        }
        Ok((body.to_vec(), usage))
    }

    /// The account's currency and time zone.
    pub async fn account(&self, id: &str) -> Result<(AccountInfo, Usage), Failure> {
        let req =
            self.get(&format!("act_{id}"), &[("fields", "currency,timezone_name,timezone_offset_hours_utc".into())]);
        let (body, usage) = self.call(req).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| Failure::Unreadable)?;
        let currency =
            v.get("currency").and_then(|c| c.as_str()).filter(|c| c.len() == 3).ok_or(Failure::Unreadable)?;
        let offset =
            v.get("timezone_offset_hours_utc").and_then(|o| o.as_f64()).filter(|o| o.abs() <= 14.0).unwrap_or(0.0);
        let tz = v.get("timezone_name").and_then(|t| t.as_str()).unwrap_or("").chars().take(64).collect();
        Ok((AccountInfo { currency: currency.to_owned(), offset_hours: offset, timezone_name: tz }, usage))
    }

    fn params(since: NaiveDate, until: NaiveDate) -> Vec<(&'static str, String)> {
        vec![
            ("level", "campaign".into()),
            ("time_increment", "1".into()),
            ("fields", insights::FIELDS.into()),
            ("time_range", serde_json::json!({ "since": since.to_string(), "until": until.to_string() }).to_string()),
            ("limit", "500".into()),
        ]
    }

    /// Follows `next` only where it stays on the configured base.
    fn next_request(&self, next: &str) -> Result<reqwest::RequestBuilder, Failure> {
        if !next.starts_with(&format!("{}/", self.base)) {
            return Err(Failure::Unreadable);
        }
        Ok(self.http.get(next))
    }

    /// One page of campaign-level daily insights; `next` is the previous page's `paging.next`.
    pub async fn insights(
        &self, account: &str, currency: &str, since: NaiveDate, until: NaiveDate, next: Option<&str>,
    ) -> Result<(Page, Usage), Failure> {
        let req = match next {
            Some(n) => self.next_request(n)?,
            None => self.get(&format!("act_{account}/insights"), &Self::params(since, until)),
        };
        let (body, usage) = self.call(req).await?;
        let page = insights::parse_page(&body, account, currency).ok_or(Failure::Unreadable)?;
        Ok((page, usage))
    }

    /// Starts an asynchronous report run for the range; its id.
    pub async fn start_job(
        &self, account: &str, since: NaiveDate, until: NaiveDate,
    ) -> Result<(String, Usage), Failure> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(Self::params(since, until)).finish();
        let req = self
            .http
            .post(self.url(&format!("act_{account}/insights")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let (body, usage) = self.call(req).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| Failure::Unreadable)?;
        let id = v
            .get("report_run_id")
            .and_then(|i| i.as_str().map(str::to_owned).or_else(|| i.as_u64().map(|n| n.to_string())))
            .filter(|i| !i.is_empty() && i.len() <= 64 && i.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(Failure::Unreadable)?;
        Ok((id, usage))
    }

    /// A report run's state.
    pub async fn job(&self, run_id: &str) -> Result<(JobState, Usage), Failure> {
        let req = self.get(run_id, &[("fields", "async_status,async_percent_completion".into())]);
        let (body, usage) = self.call(req).await?;
        Ok((insights::parse_job(&body).ok_or(Failure::Unreadable)?, usage))
    }

    /// One page of a completed report run's rows.
    pub async fn job_rows(
        &self, run_id: &str, account: &str, currency: &str, next: Option<&str>,
    ) -> Result<(Page, Usage), Failure> {
        let req = match next {
            Some(n) => self.next_request(n)?,
            None => self.get(&format!("{run_id}/insights"), &[("limit", "500".into())]),
        };
        let (body, usage) = self.call(req).await?;
        Ok((insights::parse_page(&body, account, currency).ok_or(Failure::Unreadable)?, usage))
    }
}
