// The nested async state machines of the runtime, the SDK and the handler exceed the default limit.
#![recursion_limit = "256"]

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nex_shared::config::Env;
use nex_shared::ports::SystemClock;
use whatsapp_webhook::{App, Config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    nex_shared::telemetry::init();
    let config = Config::from_vars(&Env)?;
    let sdk = nex_shared::adapters::aws::load_config().await;
    let app = App::build(&sdk, config, SystemClock).await?;
    let app = &app;
    run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::apigw::ApiGatewayV2httpRequest>| async move {
            let deadline = chrono::DateTime::from_timestamp_millis(event.context.deadline as i64);
            Ok::<_, Error>(
                app.handle_until(event.payload, &event.context.request_id, deadline)
                    .await,
            )
        },
    ))
    .await
}
