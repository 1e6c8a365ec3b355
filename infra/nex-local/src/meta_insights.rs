//! A stand-in for the Meta Graph API's ad insights in the local stack, under `/_local/meta/<version>/`:
//! the ad account (`act_<id>`: currency, time zone), campaign-level daily insights with cursor paging
//! (`paging.next`), asynchronous report runs (`POST .../insights` -> `report_run_id`; the run answers
//! `Job Running` once, then `Job Completed`, then its rows), and the usage headers. Three demo campaigns,
//! values stable per day; `POST /_local/meta/_restate` restates the last three days (as Meta does within
//! its 28 days). A call without a bearer token answers Meta's error 190.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{Duration, NaiveDate, Utc};

use crate::marketplaces::Answer;

struct State {
    restated: u32,
    jobs: Vec<(String, (String, NaiveDate, NaiveDate, u32))>,
    next_job: u64,
}

static STATE: Mutex<State> = Mutex::new(State { restated: 0, jobs: Vec::new(), next_job: 6_000_000_000_001 });

/// The demo campaigns: id and name.
pub const CAMPAIGNS: [(&str, &str); 3] = [
    ("23850000000000001", "Winter sale - retailer A"),
    ("23850000000000002", "New arrivals - retailer B"),
    ("23850000000000003", "Brand awareness"),
];

fn json(status: u16, v: serde_json::Value) -> Answer {
    Answer { status, content_type: "application/json", body: v.to_string() }
}

/// A campaign's day as the stand-in serves it (before any restatement): impressions, clicks and spend in
/// cents (0.0123 a view). `campaign` indexes `CAMPAIGNS`.
pub fn day_values(d: NaiveDate, campaign: usize) -> (u64, u64, u64) {
    let seed = ((d - NaiveDate::MIN).num_days() as u64 * 7 + campaign as u64 * 13) % 500;
    let impressions = 1000 + seed;
    (impressions, impressions / 50, impressions * 123 / 100)
}

fn rows(account: &str, since: NaiveDate, until: NaiveDate, restated: u32) -> Vec<serde_json::Value> {
    // The demo account is at UTC+1 (Europe/Amsterdam in winter): its dates.
    let today = (Utc::now() + Duration::hours(1)).date_naive();
    let mut out = Vec::new();
    let mut d = since;
    while d <= until && d <= today {
        for (i, (id, name)) in CAMPAIGNS.iter().enumerate() {
            let bump = if today - d < Duration::days(3) { u64::from(restated) * 11 } else { 0 };
            let impressions = day_values(d, i).0 + bump;
            let clicks = impressions / 50;
            // 0.0123 a view, in cents.
            let cents = impressions * 123 / 100;
            out.push(serde_json::json!({
                "account_id": account, "campaign_id": id, "campaign_name": name,
                "date_start": d.to_string(), "date_stop": d.to_string(),
                "impressions": impressions.to_string(), "clicks": clicks.to_string(),
                "spend": format!("{}.{:02}", cents / 100, cents % 100), "account_currency": "EUR",
            }));
        }
        d += Duration::days(1);
    }
    out
}

fn page(all: Vec<serde_json::Value>, after: usize, next_base: &str) -> serde_json::Value {
    let size = 20;
    let chunk: Vec<_> = all.iter().skip(after).take(size).cloned().collect();
    let mut paging =
        serde_json::json!({"cursors": {"before": format!("c{after}"), "after": format!("c{}", after + chunk.len())}});
    if after + size < all.len() {
        let sep = if next_base.contains('?') { '&' } else { '?' };
        paging["next"] = format!("{next_base}{sep}after=c{}", after + size).into();
    }
    serde_json::json!({"data": chunk, "paging": paging})
}

/// Answers a request under `/_local/meta/`, if it is one.
pub fn answer(method: &str, path: &str, q: &str, headers: &[(String, String)], body: &[u8]) -> Option<Answer> {
    let rest = path.strip_prefix("/_local/meta/")?;
    if method == "POST" && rest == "_restate" {
        let mut s = STATE.lock().ok()?;
        s.restated += 1;
        return Some(json(200, serde_json::json!({"restated": s.restated})));
    }
    let authorized =
        headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.starts_with("Bearer ") && v.len() > 7);
    if !authorized {
        return Some(json(
            400,
            serde_json::json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "error_subcode": 460, "fbtrace_id": "local"}}),
        ));
    }
    let host = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")).map(|(_, v)| v.clone()).unwrap_or_default();
    let (version, rest) = rest.split_once('/')?;
    let params: HashMap<String, String> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let range = |p: &HashMap<String, String>| -> Option<(NaiveDate, NaiveDate)> {
        let v: serde_json::Value = serde_json::from_str(p.get("time_range")?).ok()?;
        Some((v["since"].as_str()?.parse().ok()?, v["until"].as_str()?.parse().ok()?))
    };
    let after = params.get("after").and_then(|a| a.trim_start_matches('c').parse().ok()).unwrap_or(0);
    let answer = match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
        ("GET", [act]) if act.starts_with("act_") => json(
            200,
            serde_json::json!({
                "id": act, "currency": "EUR", "timezone_name": "Europe/Amsterdam", "timezone_offset_hours_utc": 1.0,
            }),
        ),
        ("GET", [act, "insights"]) if act.starts_with("act_") => {
            let Some((since, until)) = range(&params) else {
                return Some(json(400, serde_json::json!({"error": {"message": "time_range required", "code": 100}})));
            };
            let restated = STATE.lock().ok()?.restated;
            let base = format!(
                "http://{host}/_local/meta/{version}/{act}/insights?time_range={}",
                form_urlencoded::byte_serialize(params.get("time_range").map(String::as_bytes).unwrap_or_default())
                    .collect::<String>()
            );
            json(200, page(rows(&act[4..], since, until, restated), after, &base))
        }
        ("POST", [act, "insights"]) if act.starts_with("act_") => {
            let Some((since, until)) = range(&form) else {
                return Some(json(400, serde_json::json!({"error": {"message": "time_range required", "code": 100}})));
            };
            let mut s = STATE.lock().ok()?;
            let id = s.next_job.to_string();
            s.next_job += 1;
            s.jobs.push((id.clone(), (act[4..].to_owned(), since, until, 0)));
            json(200, serde_json::json!({"report_run_id": id}))
        }
        ("GET", [run]) if run.bytes().all(|b| b.is_ascii_digit()) => {
            let mut s = STATE.lock().ok()?;
            let Some((_, job)) = s.jobs.iter_mut().find(|(id, _)| id == run) else {
                return Some(json(
                    400,
                    serde_json::json!({"error": {"message": "Unsupported get request.", "code": 100, "error_subcode": 33}}),
                ));
            };
            job.3 += 1;
            let (status, pct) = if job.3 < 2 { ("Job Running", 50) } else { ("Job Completed", 100) };
            json(200, serde_json::json!({"id": run, "async_status": status, "async_percent_completion": pct}))
        }
        ("GET", [run, "insights"]) if run.bytes().all(|b| b.is_ascii_digit()) => {
            let s = STATE.lock().ok()?;
            let Some((account, since, until, _)) = s.jobs.iter().find(|(id, _)| id == run).map(|(_, j)| j.clone())
            else {
                return Some(json(
                    400,
                    serde_json::json!({"error": {"message": "Unsupported get request.", "code": 100}}),
                ));
            };
            let base = format!("http://{host}/_local/meta/{version}/{run}/insights");
            json(200, page(rows(&account, since, until, s.restated), after, &base))
        }
        _ => json(400, serde_json::json!({"error": {"message": "Unknown path components", "code": 2500}})),
    };
    Some(answer)
}

/// The usage headers every stand-in answer carries.
pub const USAGE_HEADERS: [(&str, &str); 3] = [
    (
        "x-business-use-case-usage",
        r#"{"1234567890":[{"type":"ads_insights","call_count":3,"total_cputime":2,"total_time":2,"estimated_time_to_regain_access":0}]}"#,
    ),
    ("x-ad-account-usage", r#"{"acc_id_util_pct":1,"reset_time_duration":0,"ads_api_access_tier":"standard_access"}"#),
    (
        "x-fb-ads-insights-throttle",
        r#"{"app_id_util_pct":2,"acc_id_util_pct":1,"ads_api_access_tier":"standard_access"}"#,
    ),
];
