//! CloudWatch embedded-metric-format (EMF) lines on stdout: Lambda ships them to CloudWatch Metrics with
//! no API call on the hot path. Metric names and dimension values never carry personal data.

use std::io::Write;

use crate::ports::Metrics;

#[derive(Debug, Clone)]
pub struct EmfMetrics {
    namespace: &'static str,
    service: String,
    silent: bool,
}

impl EmfMetrics {
    pub fn new(namespace: &'static str, service: impl Into<String>) -> Self {
        Self { namespace, service: service.into(), silent: false }
    }

    /// Writes nothing: for a use case run outside Lambda (the operator CLI), where stdout is a person's.
    pub fn silent(mut self) -> Self {
        self.silent = true;
        self
    }
}

impl Metrics for EmfMetrics {
    fn count(&self, name: &'static str, value: u64, dimension: Option<(&'static str, &str)>) {
        if self.silent {
            return;
        }
        let mut dims = vec!["Service"];
        let mut line = serde_json::json!({
            "_aws": {
                "Timestamp": chrono::Utc::now().timestamp_millis(),
                "CloudWatchMetrics": [{ "Namespace": self.namespace, "Dimensions": [], "Metrics": [{"Name": name, "Unit": "Count"}] }]
            },
            "Service": self.service,
            name: value,
        });
        if let Some((k, v)) = dimension {
            dims.push(k);
            line[k] = serde_json::Value::from(v);
        }
        line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = serde_json::json!([dims]);
        let mut out = std::io::stdout().lock();
        // A metric line that cannot be written must not fail the invocation.
        if writeln!(out, "{line}").is_err() {
            tracing::debug!("metric line not written");
        }
    }
}
