//! Structured logging: JSON lines in Lambda (one field per value, the request id on every line through
//! the runtime's span), never a raw body, a personal identifier or a secret. What may be logged is ids
//! (event, message, payment), types, statuses, counts and subject hashes.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Installs the JSON subscriber on stdout. Level from `RUST_LOG` (`info`, or `warn,nex_shared=debug`
/// style target directives), `info` by default. `Targets` rather than `EnvFilter`: the same directives
/// without a regex engine in every binary.
pub fn init() {
    init_with_writer(std::io::stdout);
}

/// Installs the JSON subscriber on `writer` (tests capture output this way). Later calls are no-ops.
pub fn init_with_writer<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(writer);
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    // Already set (a second function in the same process, or a test): keep the first.
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        tracing::debug!("tracing subscriber already installed");
    }
}

/// How an id that may carry personal data is named in a log line: the first 12 hex digits of its SHA-256.
/// Meta's message ids (wamids) are base64 of a record holding the person's phone number, and some request
/// ids are built from them, so logs carry this reference instead (the same id always gives the same one,
/// so log lines can still be followed; the id itself is in the tables, where retention applies).
pub fn log_ref(id: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_reference_is_stable_short_and_not_the_id() {
        let wamid = "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";
        let r = super::log_ref(wamid);
        assert_eq!((r.len(), r == super::log_ref(wamid)), (12, true));
        assert!(!wamid.contains(&r) && !r.contains("HBgL"));
    }
}
