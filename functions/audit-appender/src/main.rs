//! Appends consent changes from the ledger to the hash-chained audit log.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Sqs<nex_shared::apps::privacy::AuditAppender>);
