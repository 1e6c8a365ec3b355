//! eBay Marketplace Account Deletion: the endpoint check and signed notices, each an erasure.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Http<nex_shared::apps::orders::EbayAccountDeletion>);
