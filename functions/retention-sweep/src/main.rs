//! Deletes and anonymises personal data when its retention window ends (daily, continued through its queue).
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Schedule<nex_shared::apps::privacy::RetentionSweep>);
