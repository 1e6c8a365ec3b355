//! Transcripts, delivery receipts, storefront opt-ins and DATA requests from the messaging queue.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Sqs<nex_shared::apps::messaging::MessagingWorker>);
