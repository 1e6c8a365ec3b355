//! The local stack's building blocks, shared by the `nex-local` binary and the integration tests so
//! that both drive the functions exactly the same way.

pub mod events;
pub mod faults;
pub mod manifest;
pub mod marketplaces;
pub mod meta_insights;
pub mod pipes;
pub mod runner;
pub mod sqs;
pub mod ttl;
