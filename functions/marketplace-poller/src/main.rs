//! Polls one marketplace connection per job: orders fetched, normalised, stored with their events.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Sqs<nex_shared::apps::orders::MarketplacePoller>);
