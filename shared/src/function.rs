//! The shape of every function of the suite: one trait per trigger, one generic `run` each.
//!
//! A function says how its configuration is read from the environment ([`Function::config`]), how its
//! app is built once per process from the SDK configuration ([`Function::build`]; the wall clock is the
//! production `Clock`), and how it handles one event with its [`Invocation`] (request id and deadline).
//! `main.rs` names the function and its trigger: `nex_shared::function::run_sqs::<my_fn::App>().await`.

use std::future::Future;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use lambda_runtime::{service_fn, LambdaEvent};

use crate::config::{ConfigError, Env, InitError, Vars};

/// What the runtime says about one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// When Lambda cuts the invocation off.
    pub deadline: DateTime<Utc>,
}

impl Invocation {
    fn of(ctx: &lambda_runtime::Context) -> Self {
        Self {
            request_id: ctx.request_id.clone(),
            deadline: DateTime::from_timestamp_millis(ctx.deadline as i64).unwrap_or_else(Utc::now),
        }
    }
}

/// A function: its configuration and how it is built, once per process.
pub trait Function: Sized + Send + Sync + 'static {
    type Config: Send;
    /// Reads the configuration; fails with the missing or malformed variable's name.
    fn config(vars: &impl Vars) -> Result<Self::Config, ConfigError>;
    /// Builds the clients (and fetches the secrets) once.
    fn build(sdk: &aws_config::SdkConfig, config: Self::Config)
        -> impl Future<Output = Result<Self, InitError>> + Send;
}

/// An HTTP route's function: every outcome, expected or not, is a response.
pub trait HttpFunction: Function {
    fn http(
        &self,
        request: ApiGatewayV2httpRequest,
        invocation: &Invocation,
    ) -> impl Future<Output = ApiGatewayV2httpResponse> + Send;
}

/// An SQS consumer: reports the records that failed, so only they are redelivered.
pub trait SqsFunction: Function {
    fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> impl Future<Output = SqsBatchResponse> + Send;
}

/// A scheduled function (its event is the scheduler's JSON).
pub trait ScheduleFunction: Function {
    fn schedule(
        &self,
        event: serde_json::Value,
        invocation: &Invocation,
    ) -> impl Future<Output = Result<serde_json::Value, crate::ports::InfraError>> + Send;
}

/// Telemetry, configuration and the app, once.
async fn start<F: Function>() -> Result<F, lambda_runtime::Error> {
    crate::telemetry::init();
    let config = F::config(&Env)?;
    let sdk = crate::adapters::aws::load_config().await;
    Ok(F::build(&sdk, config).await?)
}

pub async fn run_http<F: HttpFunction>() -> Result<(), lambda_runtime::Error> {
    let app = start::<F>().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<ApiGatewayV2httpRequest>| async move {
        Ok::<_, lambda_runtime::Error>(app.http(e.payload, &Invocation::of(&e.context)).await)
    }))
    .await
}

pub async fn run_sqs<F: SqsFunction>() -> Result<(), lambda_runtime::Error> {
    let app = start::<F>().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(app.sqs(e.payload, &Invocation::of(&e.context)).await)
    }))
    .await
}

pub async fn run_schedule<F: ScheduleFunction>() -> Result<(), lambda_runtime::Error> {
    let app = start::<F>().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, lambda_runtime::Error>(app.schedule(e.payload, &Invocation::of(&e.context)).await?)
    }))
    .await
}
