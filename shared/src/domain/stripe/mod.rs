//! Stripe: webhook signatures and the few event fields the suite needs.

pub mod event;
pub mod signature;
