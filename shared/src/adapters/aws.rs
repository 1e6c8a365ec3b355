//! Shared AWS plumbing: the SDK configuration, built once per process, and SDK errors mapped to
//! [`InfraError`] with their retryability.

use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;

use crate::ports::InfraError;

/// The longest one AWS call may take, retries included: every call is bounded, so a function knows
/// whether the next one still fits before its own deadline.
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// Loads the SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL` for the local
/// emulator). Call once in `main`; clients built from it are cheap to clone and lent by reference.
pub async fn load_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .operation_attempt_timeout(std::time::Duration::from_secs(3))
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts).load().await
}

/// The AWS clients a function builds from, once per process: the SDK configuration and the interceptors
/// every client gets (none in Lambda; the test harness counts requests with one). Clients are made on
/// demand, so a function links only the services it uses.
#[derive(Clone)]
pub struct Aws {
    sdk: aws_config::SdkConfig,
    interceptors: Vec<aws_smithy_runtime_api::client::interceptors::SharedInterceptor>,
    /// Every client's endpoint, over any the environment names (the fault layer in tests).
    endpoint: Option<String>,
}

impl Aws {
    pub fn new(sdk: aws_config::SdkConfig) -> Self {
        Self { sdk, interceptors: Vec::new(), endpoint: None }
    }

    /// The configuration loaded from the environment ([`load_config`]).
    pub async fn from_env() -> Self {
        Self::new(load_config().await)
    }

    /// Every client made from here on runs `interceptor` on each request.
    pub fn with_interceptor(
        mut self, interceptor: impl aws_smithy_runtime_api::client::interceptors::Intercept + 'static,
    ) -> Self {
        self.interceptors.push(aws_smithy_runtime_api::client::interceptors::SharedInterceptor::new(interceptor));
        self
    }

    /// Every client made from here on calls `url` (e.g. the local fault layer in front of the emulator).
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    pub fn sdk(&self) -> &aws_config::SdkConfig {
        &self.sdk
    }

    /// A service's config builder with this endpoint (if set) and these interceptors.
    fn setup<B>(
        &self, mut b: B, endpoint: fn(&mut B, Option<String>) -> &mut B, push: fn(&mut B, SharedInterceptor) -> &mut B,
    ) -> B {
        if self.endpoint.is_some() {
            endpoint(&mut b, self.endpoint.clone());
        }
        for i in &self.interceptors {
            push(&mut b, i.clone());
        }
        b
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::config::Builder;
        let b = self.setup(Builder::from(&self.sdk), Builder::set_endpoint_url, Builder::push_interceptor);
        aws_sdk_dynamodb::Client::from_conf(b.build())
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        use aws_sdk_sqs::config::Builder;
        let b = self.setup(Builder::from(&self.sdk), Builder::set_endpoint_url, Builder::push_interceptor);
        aws_sdk_sqs::Client::from_conf(b.build())
    }

    /// Path-style addressing against a local emulator (see [`s3_path_style`]).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::Builder;
        let b = Builder::from(&self.sdk).force_path_style(s3_path_style());
        aws_sdk_s3::Client::from_conf(self.setup(b, Builder::set_endpoint_url, Builder::push_interceptor).build())
    }

    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        use aws_sdk_secretsmanager::config::Builder;
        let b = self.setup(Builder::from(&self.sdk), Builder::set_endpoint_url, Builder::push_interceptor);
        aws_sdk_secretsmanager::Client::from_conf(b.build())
    }
}

/// Whether a DynamoDB error is a failed condition (the write found the item in another state), not a fault.
pub fn is_condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

/// Maps an SDK error. Throttling, timeouts, transport failures and 5xx are retryable; the rest is not.
pub fn infra_error<E>(service: &'static str, operation: &'static str, err: SdkError<E, Response>) -> InfraError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            status >= 500 || status == 429 || is_throttling(&err)
        }
        _ => false,
    };
    InfraError { service, operation, retryable, source: Some(Box::new(err)) }
}

fn is_throttling<E>(err: &SdkError<E, Response>) -> bool
where
    E: std::error::Error + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError::ServiceError;
    match err {
        ServiceError(s) => {
            let body = s.raw().body().bytes().unwrap_or_default();
            let text = String::from_utf8_lossy(body);
            text.contains("Throttl")
                || text.contains("ProvisionedThroughputExceeded")
                || text.contains("RequestLimitExceeded")
        }
        _ => false,
    }
}

/// S3 path-style addressing: needed only against a local emulator (bucket host names do not resolve on
/// loopback), which is the case exactly when `AWS_ENDPOINT_URL` points the SDK elsewhere.
pub fn s3_path_style() -> bool {
    std::env::var_os("AWS_ENDPOINT_URL").is_some()
}

/// Every item a DynamoDB query returns, page after page. `operation` names it in errors.
pub async fn query_all(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder, operation: &'static str,
) -> Result<Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>, InfraError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = query
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", operation, e))?;
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

pub use super::dynamo_attrs::Item;

/// Reads the items at `keys` of `table` (strongly consistent; absent keys are left out): BatchGetItem, 100
/// keys a call, retrying what the service leaves unprocessed with doubling backoff, and failing retryably
/// if some keys stay unprocessed.
pub async fn batch_get(
    client: &aws_sdk_dynamodb::Client, table: &str, mut keys: Vec<Item>, operation: &'static str,
) -> Result<Vec<Item>, InfraError> {
    const ATTEMPTS: u32 = 8;
    // BatchGetItem refuses a request naming a key twice. A map's iteration order differs between equal
    // maps, so keys are compared by their sorted attributes.
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| {
        let mut parts: Vec<String> = k.iter().map(|(name, v)| format!("{name}={v:?}")).collect();
        parts.sort();
        seen.insert(parts)
    });
    let mut out = Vec::new();
    for chunk in keys.chunks(100) {
        let mut pending = chunk.to_vec();
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(6))).await;
            }
            let ka = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| InfraError {
                    service: "dynamodb",
                    operation,
                    retryable: false,
                    source: Some(Box::new(e)),
                })?;
            let res = client
                .batch_get_item()
                .request_items(table, ka)
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", operation, e))?;
            out.extend(res.responses.unwrap_or_default().remove(table).unwrap_or_default());
            pending = res.unprocessed_keys.and_then(|mut u| u.remove(table)).map(|ka| ka.keys).unwrap_or_default();
        }
        if !pending.is_empty() {
            return Err(InfraError {
                service: "dynamodb",
                operation,
                retryable: true,
                source: Some("keys still unprocessed after retries".into()),
            });
        }
    }
    Ok(out)
}
