//! The merchant API: consent opt-ins and data-subject requests (API key per merchant).
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Http<nex_shared::apps::merchant_api::MerchantApi>);
