//! Meta Marketing API insights: campaign-level daily rows as Meta sends them (numbers as strings, money
//! in the account currency), its errors and usage headers, the pull window in the account's own dates,
//! and the per-retailer rollups.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The oldest Marketing API version the suite runs on (v24.0 expired 2026-11-10; v27.0 is current).
pub const MIN_API_VERSION: u32 = 27;

/// The longest wait any answer can impose (an absurd estimate is not a year's pause).
pub const MAX_WAIT_SECS: i64 = 3600;

/// Counts above this are refused (no campaign has a quadrillion impressions a day; stored as i64).
const MAX_COUNT: u64 = 1_000_000_000_000_000;

/// The fields every pull asks for.
pub const FIELDS: &str =
    "account_id,campaign_id,campaign_name,impressions,clicks,spend,date_start,date_stop,account_currency";

/// `v27.0` -> 27, if it is a version string at all.
pub fn api_version_major(v: &str) -> Option<u32> {
    let rest = v.strip_prefix('v')?;
    let (major, minor) = rest.split_once('.')?;
    minor.parse::<u32>().ok()?;
    major.parse().ok()
}

/// One campaign's day, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub account_id: String,
    pub campaign_id: String,
    pub campaign_name: String,
    /// The day in the ad account's time zone (Meta's `date_start` = `date_stop`).
    pub date: NaiveDate,
    pub impressions: u64,
    pub clicks: u64,
    /// In the account currency.
    pub spend: Decimal,
    pub currency: String,
}

impl Row {
    /// Equal in what Meta says (what a restatement changes).
    pub fn same_values(&self, other: &Row) -> bool {
        self.impressions == other.impressions
            && self.clicks == other.clicks
            && self.spend == other.spend
            && self.campaign_name == other.campaign_name
            && self.currency == other.currency
    }
}

/// Why a row is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("the row spans {0} to {1}: a row that is not one day would count days twice")]
    NotOneDay(String, String),
    #[error("the row lacks {0}")]
    Missing(&'static str),
    #[error("{0} is not a number")]
    NotANumber(&'static str),
}

#[derive(Deserialize)]
struct RawRow {
    account_id: Option<String>,
    campaign_id: Option<String>,
    campaign_name: Option<String>,
    date_start: Option<String>,
    date_stop: Option<String>,
    impressions: Option<serde_json::Value>,
    clicks: Option<serde_json::Value>,
    spend: Option<serde_json::Value>,
    account_currency: Option<String>,
}

fn count(v: Option<&serde_json::Value>, name: &'static str) -> Result<u64, RowError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().map_err(|_| RowError::NotANumber(name)),
        Some(serde_json::Value::Number(n)) => n.as_u64().ok_or(RowError::NotANumber(name)),
        Some(_) => Err(RowError::NotANumber(name)),
    }
    .and_then(|c: u64| if c > MAX_COUNT { Err(RowError::NotANumber(name)) } else { Ok(c) })
}

fn money(v: Option<&serde_json::Value>) -> Result<Decimal, RowError> {
    let s = match v {
        None | Some(serde_json::Value::Null) => return Ok(Decimal::ZERO),
        Some(serde_json::Value::String(s)) => s.trim().to_owned(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => return Err(RowError::NotANumber("spend")),
    };
    let d: Decimal = s.parse().map_err(|_| RowError::NotANumber("spend"))?;
    if d.is_sign_negative() {
        return Err(RowError::NotANumber("spend"));
    }
    Ok(d.normalize())
}

/// One row of an insights answer; `account` and `currency` stand in where the row omits them.
pub fn parse_row(v: &serde_json::Value, account: &str, currency: &str) -> Result<Row, RowError> {
    let r: RawRow = serde_json::from_value(v.clone()).map_err(|_| RowError::Missing("its fields"))?;
    let start = r.date_start.ok_or(RowError::Missing("date_start"))?;
    let stop = r.date_stop.clone().unwrap_or_else(|| start.clone());
    if start != stop {
        return Err(RowError::NotOneDay(start, stop));
    }
    let date = NaiveDate::parse_from_str(&start, "%Y-%m-%d").map_err(|_| RowError::Missing("a date"))?;
    let campaign_id =
        r.campaign_id.filter(|c| !c.is_empty() && c.len() <= 64).ok_or(RowError::Missing("campaign_id"))?;
    if !campaign_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RowError::Missing("a numeric campaign_id"));
    }
    Ok(Row {
        account_id: r.account_id.filter(|a| !a.is_empty()).unwrap_or_else(|| account.to_owned()),
        campaign_id,
        campaign_name: r.campaign_name.unwrap_or_default().chars().take(200).collect(),
        date,
        impressions: count(r.impressions.as_ref(), "impressions")?,
        clicks: count(r.clicks.as_ref(), "clicks")?,
        spend: money(r.spend.as_ref())?,
        currency: r.account_currency.filter(|c| c.len() == 3).unwrap_or_else(|| currency.to_owned()),
    })
}

/// A page of insights: its rows (valid ones) and what was refused, and the next page's URL.
#[derive(Debug, Default)]
pub struct Page {
    pub rows: Vec<Row>,
    pub refused: Vec<RowError>,
    pub next: Option<String>,
}

/// An insights answer (`{"data": [...], "paging": {"next": ..}}`); `None` if it is not one.
pub fn parse_page(body: &[u8], account: &str, currency: &str) -> Option<Page> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let data = v.get("data")?.as_array()?;
    let mut page = Page::default();
    for row in data {
        match parse_row(row, account, currency) {
            Ok(r) => page.rows.push(r),
            Err(e) => page.refused.push(e),
        }
    }
    page.next = v.pointer("/paging/next").and_then(|n| n.as_str()).map(str::to_owned);
    Some(page)
}

/// What a Graph error means for the pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Rate limited: wait `regain_secs` (Meta's estimate, when it gave one).
    Throttled { app_wide: bool, regain_secs: Option<i64> },
    /// Ask for less: a shorter range (or an async report run).
    ReduceData,
    /// Try again later.
    Transient,
    /// The token is invalid or expired: stop this account's pulls until it is fixed.
    Token,
    /// Anything else (a bad parameter, a permission): the run fails and is retried later.
    Other,
}

/// A Graph API error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub code: i64,
    pub subcode: Option<i64>,
    pub class: ErrorClass,
}

/// The error of a Graph answer (`{"error": {code, error_subcode, ...}}`), if it is one.
pub fn parse_error(body: &[u8]) -> Option<GraphError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e.get("code")?.as_i64()?;
    let subcode = e.get("error_subcode").and_then(|s| s.as_i64());
    Some(GraphError { code, subcode, class: classify(code, subcode) })
}

/// Meta's documented codes (platforms.md §4): 4/17/613/80004 and the insights subcodes are rate limits,
/// 190 a token, 100/1487534, 100/1504018 and 2/1504038 "ask for less", 1/2 and 2/1504043 transient.
pub fn classify(code: i64, subcode: Option<i64>) -> ErrorClass {
    match (code, subcode) {
        (190, _) | (102, _) => ErrorClass::Token,
        (4, Some(1504022 | 1504039)) | (613, _) | (80000..=80099, _) | (32, _) => {
            ErrorClass::Throttled { app_wide: false, regain_secs: None }
        }
        // 4: the app's limit; 17: the (one, shared) system user's. Either stops every account.
        (4 | 17, _) => ErrorClass::Throttled { app_wide: true, regain_secs: None },
        (100, Some(1487534 | 1504018)) | (2, Some(1504038)) => ErrorClass::ReduceData,
        (1 | 2, _) | (-2, _) => ErrorClass::Transient,
        _ => ErrorClass::Other,
    }
}

/// How busy the limits are, from the three usage headers: the highest percentage any reports, and how long
/// Meta says to wait (seconds) if it said.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    pub max_pct: f64,
    pub app_pct: f64,
    pub regain_secs: Option<i64>,
}

fn pct(v: &serde_json::Value, k: &str) -> f64 {
    v.get(k).and_then(|x| x.as_f64().or_else(|| x.as_str().and_then(|s| s.parse().ok()))).unwrap_or(0.0)
}

/// Reads `X-Business-Use-Case-Usage`, `X-Ad-Account-Usage` and `X-FB-Ads-Insights-Throttle` (each JSON;
/// anything unreadable counts as 0).
pub fn usage(buc: Option<&str>, account: Option<&str>, insights: Option<&str>) -> Usage {
    let mut u = Usage::default();
    let parse = |s: Option<&str>| s.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    if let Some(v) = parse(buc) {
        for entries in v.as_object().into_iter().flat_map(|o| o.values()) {
            for e in entries.as_array().into_iter().flatten() {
                for k in ["call_count", "total_cputime", "total_time"] {
                    u.max_pct = u.max_pct.max(pct(e, k));
                }
                let minutes = pct(e, "estimated_time_to_regain_access");
                if minutes > 0.0 {
                    let secs = ((minutes * 60.0) as i64).min(MAX_WAIT_SECS);
                    u.regain_secs = Some(u.regain_secs.map_or(secs, |r| r.max(secs)));
                }
            }
        }
    }
    if let Some(v) = parse(account) {
        u.max_pct = u.max_pct.max(pct(&v, "acc_id_util_pct"));
        let reset = (pct(&v, "reset_time_duration") as i64).min(MAX_WAIT_SECS);
        if u.max_pct >= 100.0 && reset > 0 {
            u.regain_secs = Some(u.regain_secs.map_or(reset, |r| r.max(reset)));
        }
    }
    if let Some(v) = parse(insights) {
        u.app_pct = pct(&v, "app_id_util_pct");
        u.max_pct = u.max_pct.max(u.app_pct).max(pct(&v, "acc_id_util_pct"));
    }
    u
}

/// Whether to stop at this usage, and for how long: at 95% and over, Meta's own estimate (or a minute):
/// stop before the limit, not at it. Below, [`slow_down_ms`] spaces the calls.
pub fn pace(u: &Usage) -> Option<i64> {
    if u.max_pct >= 95.0 {
        return Some(u.regain_secs.unwrap_or(60).clamp(60, MAX_WAIT_SECS));
    }
    None
}

/// A pause (milliseconds) between calls at this usage, below the stop: 0 under 75%, then up to 10 s.
pub fn slow_down_ms(u: &Usage) -> u64 {
    if u.max_pct < 75.0 {
        0
    } else {
        (((u.max_pct - 75.0) / 20.0).min(1.0) * 10_000.0) as u64
    }
}

/// The account's today: `now` at its UTC offset (Meta's `timezone_offset_hours_utc`; dates in insights
/// are the account's).
pub fn account_today(now: DateTime<Utc>, offset_hours: f64) -> NaiveDate {
    let offset = Duration::minutes((offset_hours * 60.0).round() as i64);
    (now + offset).date_naive()
}

/// The days a run pulls: the trailing restatement window up to the account's today, both ends included.
pub fn window(today: NaiveDate, restatement_days: u32) -> (NaiveDate, NaiveDate) {
    (today - Duration::days(i64::from(restatement_days.max(1)) - 1), today)
}

/// Splits a range of days in two halves (`None` for a single day).
pub fn split(since: NaiveDate, until: NaiveDate) -> Option<((NaiveDate, NaiveDate), (NaiveDate, NaiveDate))> {
    let days = (until - since).num_days();
    if days < 1 {
        return None;
    }
    let mid = since + Duration::days(days / 2);
    Some(((since, mid), (mid + Duration::days(1), until)))
}

/// An async report run's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running { percent: u32 },
    Completed,
    Failed,
    Skipped,
}

/// `GET /<report_run_id>`'s answer.
pub fn parse_job(body: &[u8]) -> Option<JobState> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let status = v.get("async_status")?.as_str()?;
    let percent = v.get("async_percent_completion").and_then(|p| p.as_u64()).unwrap_or(0).min(100) as u32;
    Some(match status {
        "Job Completed" => JobState::Completed,
        "Job Failed" => JobState::Failed,
        "Job Skipped" => JobState::Skipped,
        _ => JobState::Running { percent },
    })
}

/// One retailer's day in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Rollup {
    pub impressions: u64,
    pub clicks: u64,
    pub spend: Decimal,
    pub campaigns: u32,
}

impl Rollup {
    /// Adds a row (saturating: no answer, however absurd, overflows a rollup).
    pub fn add(&mut self, r: &Row) {
        self.impressions = self.impressions.saturating_add(r.impressions);
        self.clicks = self.clicks.saturating_add(r.clicks);
        self.spend = self.spend.checked_add(r.spend).unwrap_or(Decimal::MAX);
        self.campaigns = self.campaigns.saturating_add(1);
    }
    /// Click-through rate in percent (Meta's `ctr`), 4 decimals.
    pub fn ctr(&self) -> Option<Decimal> {
        (self.impressions > 0)
            .then(|| (Decimal::from(self.clicks) * Decimal::from(100) / Decimal::from(self.impressions)).round_dp(4))
    }
    /// Cost per click in the account currency, 4 decimals.
    pub fn cpc(&self) -> Option<Decimal> {
        (self.clicks > 0).then(|| (self.spend / Decimal::from(self.clicks)).round_dp(4))
    }
}

/// A decimal as a JSON number string (for CSV and JSON alike).
pub fn dec(d: Decimal) -> String {
    d.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn numbers_arrive_as_strings_and_money_stays_decimal() {
        let v = serde_json::json!({"account_id": "111", "campaign_id": "2384", "campaign_name": "Winter",
            "date_start": "2026-11-20", "date_stop": "2026-11-20", "impressions": "361324", "clicks": "1204",
            "spend": "5339.50", "account_currency": "EUR"});
        let r = parse_row(&v, "111", "USD").unwrap();
        assert_eq!((r.impressions, r.clicks), (361324, 1204));
        assert_eq!(r.spend.to_string(), "5339.5");
        assert_eq!(r.currency, "EUR");
        // 0.1 + 0.2 is exactly 0.3 in decimals.
        let a =
            parse_row(&serde_json::json!({"campaign_id": "1", "date_start": "2026-11-20", "spend": "0.1"}), "1", "EUR")
                .unwrap();
        let b =
            parse_row(&serde_json::json!({"campaign_id": "1", "date_start": "2026-11-20", "spend": "0.2"}), "1", "EUR")
                .unwrap();
        assert_eq!((a.spend + b.spend).to_string(), "0.3");
    }

    #[test]
    fn a_row_that_is_not_one_day_is_refused() {
        let v = serde_json::json!({"campaign_id": "1", "date_start": "2026-11-01", "date_stop": "2026-11-30"});
        assert!(matches!(parse_row(&v, "1", "EUR"), Err(RowError::NotOneDay(..))));
        for bad in [
            serde_json::json!({"campaign_id": "1", "date_start": "x"}),
            serde_json::json!({"date_start": "2026-11-01"}),
            serde_json::json!({"campaign_id": "1", "date_start": "2026-11-01", "spend": "-3"}),
            serde_json::json!({"campaign_id": "../x", "date_start": "2026-11-01"}),
            serde_json::json!({"campaign_id": "1", "date_start": "2026-11-01", "impressions": "1e3"}),
        ] {
            assert!(parse_row(&bad, "1", "EUR").is_err(), "{bad}");
        }
    }

    #[test]
    fn metas_codes_are_classified_as_documented() {
        assert_eq!(classify(190, Some(460)), ErrorClass::Token);
        assert!(matches!(classify(17, Some(2446079)), ErrorClass::Throttled { app_wide: true, .. }));
        assert!(matches!(classify(613, Some(1487742)), ErrorClass::Throttled { .. }));
        assert!(matches!(classify(80004, None), ErrorClass::Throttled { .. }));
        assert!(matches!(classify(4, Some(1504022)), ErrorClass::Throttled { app_wide: false, .. }));
        assert!(matches!(classify(4, None), ErrorClass::Throttled { app_wide: true, .. }));
        assert_eq!(classify(100, Some(1487534)), ErrorClass::ReduceData);
        assert_eq!(classify(100, Some(1504018)), ErrorClass::ReduceData);
        assert_eq!(classify(2, Some(1504043)), ErrorClass::Transient);
        assert_eq!(classify(100, None), ErrorClass::Other);
    }

    #[test]
    fn usage_headers_slow_down_before_the_limit_and_stop_at_it() {
        let buc = r#"{"123":[{"type":"ads_insights","call_count":40,"total_cputime":80,"total_time":20,"estimated_time_to_regain_access":0}]}"#;
        let u = usage(Some(buc), Some(r#"{"acc_id_util_pct":10,"reset_time_duration":0}"#), None);
        assert_eq!(u.max_pct, 80.0);
        assert!(slow_down_ms(&u) > 0 && pace(&u).is_none());
        let full = r#"{"123":[{"type":"ads_insights","call_count":100,"estimated_time_to_regain_access":7}]}"#;
        let u = usage(Some(full), None, Some(r#"{"app_id_util_pct":96,"acc_id_util_pct":5}"#));
        assert_eq!(pace(&u), Some(420));
        assert_eq!(u.app_pct, 96.0);
        assert_eq!(usage(Some("not json"), Some("[]"), Some("{")), Usage::default());
    }

    #[test]
    fn the_window_is_in_the_accounts_dates() {
        // 23:30 UTC is already tomorrow in Amsterdam (+1) and still today in Los Angeles (-8).
        let now = DateTime::parse_from_rfc3339("2026-11-30T23:30:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(account_today(now, 1.0), d("2026-12-01"));
        assert_eq!(account_today(now, -8.0), d("2026-11-30"));
        assert_eq!(account_today(now, 5.5), d("2026-12-01"));
        assert_eq!(window(d("2026-12-01"), 28), (d("2026-11-04"), d("2026-12-01")));
        assert_eq!(
            split(d("2026-11-01"), d("2026-11-04")),
            Some(((d("2026-11-01"), d("2026-11-02")), (d("2026-11-03"), d("2026-11-04"))))
        );
        assert_eq!(split(d("2026-11-01"), d("2026-11-01")), None);
    }

    #[test]
    fn versions_below_27_are_refused() {
        assert_eq!(api_version_major("v27.0"), Some(27));
        assert_eq!(api_version_major("v25.0"), Some(25));
        assert_eq!(api_version_major("27"), None);
    }

    #[test]
    fn rollups_compute_ctr_and_cpc_in_decimals() {
        let mut r = Rollup::default();
        let row = |i, c, s: &str| Row {
            account_id: "1".into(),
            campaign_id: "1".into(),
            campaign_name: String::new(),
            date: d("2026-11-20"),
            impressions: i,
            clicks: c,
            spend: s.parse().unwrap(),
            currency: "EUR".into(),
        };
        r.add(&row(1000, 10, "5.00"));
        r.add(&row(3000, 20, "10.01"));
        assert_eq!(r.ctr().unwrap().to_string(), "0.75");
        assert_eq!(r.cpc().unwrap().to_string(), "0.5003");
        assert_eq!(Rollup::default().ctr(), None);
    }

    #[test]
    fn job_states_are_metas() {
        assert_eq!(
            parse_job(br#"{"id":"1","async_status":"Job Running","async_percent_completion":40}"#),
            Some(JobState::Running { percent: 40 })
        );
        assert_eq!(
            parse_job(br#"{"async_status":"Job Completed","async_percent_completion":100}"#),
            Some(JobState::Completed)
        );
        assert_eq!(parse_job(br#"{"async_status":"Job Skipped"}"#), Some(JobState::Skipped));
        assert_eq!(parse_job(br#"{"async_status":"Job Failed"}"#), Some(JobState::Failed));
    }
}
