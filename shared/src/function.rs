//! The shape of every function of the suite: one trait per trigger, one generic [`run`].
//!
//! A function says its name (its crate, its binary and its `template.yaml` build), how its configuration
//! is read from the environment ([`Function::config`]), how its app is built once per process from the AWS
//! clients and a clock ([`Function::build`]), and how it handles one event with its [`Invocation`]
//! (request id and deadline). `main.rs` names the function and its trigger: `run::<Http<StripeWebhook>>()`.
//! The [`crate::registry`] lists every function for the local runner, the test harness and `nexctl`.

use std::future::Future;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use lambda_http::Service;
use lambda_runtime::{service_fn, LambdaEvent};

use crate::adapters::aws::Aws;
use crate::config::{ConfigError, Env, FromVars, InitError, Vars};
use crate::ports::{InfraError, SharedClock, SystemClock};

/// An HTTP request as `lambda_http` gives it: the body already decoded from base64, its bytes intact.
pub type Request = lambda_http::Request;
/// An HTTP response.
pub type Response = lambda_http::Response<lambda_http::Body>;

/// What the runtime says about one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// When Lambda cuts the invocation off.
    pub deadline: DateTime<Utc>,
}

impl Invocation {
    pub fn new(request_id: impl Into<String>, deadline: DateTime<Utc>) -> Self {
        Self { request_id: request_id.into(), deadline }
    }

    fn of(ctx: &lambda_runtime::Context) -> Self {
        Self {
            request_id: ctx.request_id.clone(),
            deadline: DateTime::from_timestamp_millis(ctx.deadline as i64).unwrap_or_else(Utc::now),
        }
    }

    fn context(&self) -> lambda_runtime::Context {
        let mut ctx = lambda_runtime::Context::default();
        ctx.request_id = self.request_id.clone();
        ctx.deadline = self.deadline.timestamp_millis().max(0) as u64;
        ctx
    }
}

/// A function: its name, its configuration and how it is built, once per process.
pub trait Function: Sized + Send + Sync + 'static {
    /// The crate and binary (`CodeUri`'s build in `template.yaml`).
    const NAME: &'static str;
    /// Its variables, declared with [`config!`](crate::config!).
    type Config: FromVars + Send;
    /// Reads the configuration; fails with the missing or malformed variable's name.
    fn config(vars: &impl Vars) -> Result<Self::Config, ConfigError> {
        Self::Config::from_vars(vars)
    }
    /// Builds the clients (and fetches the secrets) once. `clock` is the wall clock in Lambda.
    fn build(
        aws: &Aws, config: Self::Config, clock: SharedClock,
    ) -> impl Future<Output = Result<Self, InitError>> + Send;
}

/// An HTTP route's function: every outcome, expected or not, is a response (see [`crate::http`]).
pub trait HttpFunction: Function {
    fn http(&self, request: Request, invocation: &Invocation) -> impl Future<Output = Response> + Send;
}

/// An SQS consumer: reports the records that failed, so only they are redelivered.
pub trait SqsFunction: Function {
    fn sqs(&self, event: SqsEvent, invocation: &Invocation) -> impl Future<Output = SqsBatchResponse> + Send;
}

/// A scheduled function (its event is the scheduler's JSON).
pub trait ScheduleFunction: Function {
    fn schedule(
        &self, event: serde_json::Value, invocation: &Invocation,
    ) -> impl Future<Output = Result<serde_json::Value, InfraError>> + Send;
}

/// The three triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Http,
    Sqs,
    Schedule,
}

/// A function with its trigger: [`Http`], [`Sqs`] or [`Schedule`] around it: the event Lambda hands it,
/// what it answers, and how. [`run`] serves it in Lambda; [`Trigger::invoke`] hands it one event as JSON,
/// as Lambda does (the registry, and so the local runner, use that).
pub trait Trigger: 'static {
    type Function: Function;
    type Event: serde::de::DeserializeOwned + Send;
    type Output: serde::Serialize;
    const KIND: Kind;

    fn handle<'a>(
        app: &'a Self::Function, event: Self::Event, invocation: &'a Invocation,
    ) -> impl Future<Output = Result<Self::Output, Error>> + Send + 'a;

    /// One event as JSON, answered as JSON.
    fn invoke<'a>(
        app: &'a Self::Function, event: serde_json::Value, invocation: &'a Invocation,
    ) -> BoxFuture<'a, Result<serde_json::Value, Error>> {
        Box::pin(async move {
            // serde's message may quote the event's values (a body, a phone number): only where it failed.
            let event = serde_json::from_value(event)
                .map_err(|e| format!("the event is not this trigger's ({:?} error)", e.classify()))?;
            Ok(serde_json::to_value(Self::handle(app, event, invocation).await?)?)
        })
    }
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An HTTP function: API Gateway's event through `lambda_http`'s conversions (see [`invoke_http`]), the
/// same path in Lambda, in the local runner and in the tests.
pub struct Http<F>(std::marker::PhantomData<F>);
/// An SQS consumer with partial batch failures.
pub struct Sqs<F>(std::marker::PhantomData<F>);
/// A scheduled function.
pub struct Schedule<F>(std::marker::PhantomData<F>);

/// A function binary's `main`: `nex_shared::main!(Sqs<nex_shared::apps::payments::PaymentsWorker>);`.
#[macro_export]
macro_rules! main {
    ($trigger:ident < $function:ty >) => {
        fn main() -> Result<(), $crate::function::Error> {
            $crate::function::block_on($crate::function::run::<$crate::function::$trigger<$function>>())
        }
    };
}

/// The runtime's error.
pub use lambda_runtime::Error;

/// Runs `main`'s future on a single-threaded runtime: a Lambda container handles one event at a time.
pub fn block_on(fut: impl Future<Output = Result<(), Error>>) -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(fut)
}

/// Telemetry, configuration, clients and the app, once; then the runtime loop, one event at a time.
pub async fn run<T: Trigger>() -> Result<(), Error> {
    crate::telemetry::init();
    let config = T::Function::config(&Env)?;
    let aws = Aws::from_env().await;
    let app = T::Function::build(&aws, config, std::sync::Arc::new(SystemClock)).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<T::Event>| async move {
        let invocation = Invocation::of(&e.context);
        T::handle(app, e.payload, &invocation).await
    }))
    .await
}

impl<F: HttpFunction> Trigger for Http<F> {
    type Function = F;
    type Event = ApiGatewayV2httpRequest;
    type Output = ApiGatewayV2httpResponse;
    const KIND: Kind = Kind::Http;

    async fn handle(app: &F, event: ApiGatewayV2httpRequest, invocation: &Invocation) -> Result<Self::Output, Error> {
        Ok(invoke_http(app, event, invocation).await)
    }
}

impl<F: SqsFunction> Trigger for Sqs<F> {
    type Function = F;
    type Event = SqsEvent;
    type Output = SqsBatchResponse;
    const KIND: Kind = Kind::Sqs;

    async fn handle(app: &F, event: SqsEvent, invocation: &Invocation) -> Result<Self::Output, Error> {
        Ok(app.sqs(event, invocation).await)
    }
}

impl<F: ScheduleFunction> Trigger for Schedule<F> {
    type Function = F;
    type Event = serde_json::Value;
    type Output = serde_json::Value;
    const KIND: Kind = Kind::Schedule;

    async fn handle(app: &F, event: serde_json::Value, invocation: &Invocation) -> Result<Self::Output, Error> {
        Ok(app.schedule(event, invocation).await?)
    }
}

/// One API Gateway HTTP API event through an HTTP function, converted both ways by `lambda_http` exactly
/// as in Lambda. The local runner and the tests call HTTP functions through this.
pub async fn invoke_http<F: HttpFunction>(
    app: &F, event: ApiGatewayV2httpRequest, invocation: &Invocation,
) -> ApiGatewayV2httpResponse {
    // `lambda_http` panics on a body that claims base64 and is not; API Gateway never sends one, but a
    // body is hostile until checked.
    if event.is_base64_encoded {
        use base64::Engine;
        if base64::engine::general_purpose::STANDARD.decode(event.body.as_deref().unwrap_or("")).is_err() {
            return crate::http::into_v2(crate::http::refuse(400, "invalid_base64_body"));
        }
    }
    // `lambda_http` also panics on a URI it cannot build (a query with a raw space, quote or control
    // byte; a Host it cannot parse). A query is checked here; anything else it refuses is caught.
    if let Some(q) = event.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
        if ::http::uri::PathAndQuery::try_from(format!("/?{q}")).is_err() {
            return crate::http::into_v2(crate::http::refuse(400, "invalid_request"));
        }
    }
    let mut adapter = lambda_http::Adapter::from(service_fn(|req: Request| async move {
        Ok::<_, std::convert::Infallible>(app.http(req, invocation).await)
    }));
    let event = LambdaEvent::new(lambda_http::request::LambdaRequest::ApiGatewayV2(event), invocation.context());
    let Ok(call) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| adapter.call(event))) else {
        return crate::http::into_v2(crate::http::refuse(400, "invalid_request"));
    };
    let Ok(response) = call.await;
    // `LambdaResponse` is untagged: it serialises as the API Gateway v2 response it holds.
    serde_json::to_value(response)
        .and_then(serde_json::from_value)
        .unwrap_or_else(|_| crate::http::into_v2(crate::http::refuse(502, "bad_gateway")))
}
