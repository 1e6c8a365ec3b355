//! Every minute, queues the deliveries whose retry wait has ended (the due index).
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Schedule<nex_shared::apps::webhooks::WebhookScheduler>);
