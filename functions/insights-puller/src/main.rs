//! Pulls one ad account's campaign insights (trailing restatement window), upserts them and recomputes the retailers' rollups.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Sqs<nex_shared::apps::insights::InsightsPuller>);
