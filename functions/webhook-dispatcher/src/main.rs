//! Turns each order event and payment change into one delivery per subscribed merchant endpoint.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Sqs<nex_shared::apps::webhooks::WebhookDispatcher>);
