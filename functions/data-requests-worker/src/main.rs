// The nested async state machines of the runtime, the SDK and the handler exceed the default limit.
#![recursion_limit = "256"]

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    nex_shared::function::run_sqs::<data_requests_worker::App>().await
}
