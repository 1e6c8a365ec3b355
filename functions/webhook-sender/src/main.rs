//! Sends one signed Standard Webhooks attempt per delivery job, on Svix's retry schedule.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Sqs<nex_shared::apps::webhooks::WebhookSender>);
