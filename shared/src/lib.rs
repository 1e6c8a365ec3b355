//! The Nex suite's library.
//!
//! Layers, innermost first:
//! - [`domain`]: pure rules with no I/O (retention policy, Stripe signatures and events, payment state).
//! - [`ports`]: the narrow traits use cases need from the outside world, each with its error contract.
//! - [`usecases`]: the suite's behaviour, generic over ports so it runs over in-memory fakes in unit tests
//!   and over AWS in production.
//! - [`adapters`]: the production (DynamoDB, SQS, Secrets Manager) and in-memory implementations of the ports.
//! - [`http`]: the one place where use-case outcomes and errors become HTTP responses.
//! - [`telemetry`], [`config`]: logging/metrics set-up and typed configuration read once at init.

pub mod adapters;
pub mod apps;
pub mod config;
pub mod domain;
pub mod function;
pub mod http;
pub mod ports;
pub mod registry;
pub mod telemetry;
pub mod usecases;
