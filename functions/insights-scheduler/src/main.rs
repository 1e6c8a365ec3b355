//! Queues one Meta insights pull per active ad account, and reports the Marketing API version's days left.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Schedule<nex_shared::apps::insights::InsightsScheduler>);
