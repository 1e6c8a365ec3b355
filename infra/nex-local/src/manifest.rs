//! The manifest `infra/local/provision.py` writes from `template.yaml`.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub region: String,
    pub ttl: HashMap<String, TtlSpec>,
    pub queues: HashMap<String, QueueSpec>,
    pub functions: HashMap<String, FunctionSpec>,
    pub routes: Vec<Route>,
    pub schedules: Vec<Schedule>,
    pub sqs_sources: Vec<SqsSource>,
    #[serde(default)]
    pub pipes: Vec<PipeSpec>,
}

/// An EventBridge pipe from a table's stream to a queue (see `crate::pipes`).
#[derive(Debug, Clone, Deserialize)]
pub struct PipeSpec {
    pub name: String,
    pub stream_arn: String,
    /// The key attribute the filter matches (`pk` or `sk`), and the prefixes it lets through.
    pub key_attr: String,
    pub key_prefixes: Vec<String>,
    /// `INSERT`, `MODIFY`.
    pub event_names: Vec<String>,
    /// Only records whose new image has a `body`.
    pub require_body: bool,
    /// What the input template makes: `inbox` (`{"inbox": pk}`), `ledger` (`{"ledger": {pk, sk}}`) or
    /// `order_event` (`{"order_event": {pk, sk}}`).
    pub message: String,
    pub target_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TtlSpec {
    pub table: String,
    pub attribute: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueSpec {
    pub arn: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionSpec {
    pub binary: String,
    pub timeout: u64,
    pub env: HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub function: String,
    pub expression: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SqsSource {
    pub function: String,
    pub queue: String,
    pub queue_url: String,
    pub batch_size: i32,
    pub report_batch_item_failures: bool,
}

impl Manifest {
    pub fn load(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read manifest {path}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("manifest {path} is invalid: {e}"))
    }
}

/// Parses an EventBridge `rate(...)` expression into seconds. `cron(...)` is not run locally (fire it on
/// demand instead).
pub fn rate_seconds(expression: &str) -> Option<u64> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let unit_secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    (n > 0).then_some(n * unit_secs)
}

/// Whether a request path matches a route path with `{param}` segments (as API Gateway matches them).
pub fn path_matches(route: &str, path: &str) -> bool {
    let (r, p): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), path.split('/').collect());
    r.len() == p.len()
        && r.iter().zip(&p).all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}') && !b.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::{path_matches, rate_seconds};

    #[test]
    fn rate_expressions_become_intervals() {
        assert_eq!(rate_seconds("rate(5 minutes)"), Some(300));
        assert_eq!(rate_seconds("rate(1 day)"), Some(86_400));
        assert_eq!(rate_seconds("cron(0 3 * * ? *)"), None);
        assert_eq!(rate_seconds("rate(0 hours)"), None);
    }

    #[test]
    fn route_parameters_match_one_non_empty_segment() {
        assert!(path_matches("/data-requests/{id}", "/data-requests/api-1"));
        assert!(!path_matches("/data-requests/{id}", "/data-requests/"));
        assert!(!path_matches("/data-requests/{id}", "/data-requests/a/b"));
        assert!(path_matches("/consent/opt-ins", "/consent/opt-ins"));
    }
}
