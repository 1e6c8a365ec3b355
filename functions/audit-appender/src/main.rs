// The nested async state machines of the runtime, the SDK and the handler exceed the default limit.
#![recursion_limit = "256"]

use audit_appender::{App, Config};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nex_shared::config::Env;
use nex_shared::ports::SystemClock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    nex_shared::telemetry::init();
    let config = Config::from_vars(&Env)?;
    let sdk = nex_shared::adapters::aws::load_config().await;
    let app = App::build(&sdk, config, SystemClock);
    let app = &app;
    run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
            Ok::<_, Error>(app.handle(event.payload, &event.context.request_id).await)
        },
    ))
    .await
}
