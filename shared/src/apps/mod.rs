//! The suite's functions, one module per capability: each function's configuration (the variables
//! `template.yaml` sets), how it is built from the AWS clients, and its trigger's handler, which hands the
//! event to a use case. The [`crate::registry`] lists them.

pub mod insights;
pub mod merchant_api;
pub mod messaging;
pub mod orders;
pub mod payments;
pub mod privacy;
pub mod webhooks;
