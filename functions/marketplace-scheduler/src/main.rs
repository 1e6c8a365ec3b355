//! Fans out one poll job per active marketplace connection (on a schedule).
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Schedule<nex_shared::apps::orders::MarketplaceScheduler>);
