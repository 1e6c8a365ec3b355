//! Structured logging: JSON lines in Lambda (one field per value, the request id on every line through
//! the runtime's span), never a raw body, a personal identifier or a secret. What may be logged is ids
//! (event, message, payment), types, statuses, counts and subject hashes.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber on stdout. Level from `RUST_LOG`, `info` by default.
pub fn init() {
    init_with_writer(std::io::stdout);
}

/// Installs the JSON subscriber on `writer` (tests capture output this way). Later calls are no-ops.
pub fn init_with_writer<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(writer)
        .finish();
    // Already set (a second function in the same process, or a test): keep the first.
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        tracing::debug!("tracing subscriber already installed");
    }
}
