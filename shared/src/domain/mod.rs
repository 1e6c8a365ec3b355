//! Pure domain rules: no I/O, no clocks read, no AWS types.

pub mod audit;
pub mod data_inventory;
pub mod envelope;
pub mod insights;
pub mod messages;
pub mod orders;
pub mod payment;
pub mod retention;
pub mod stripe;
pub mod subject;
pub mod validate;
pub mod webhooks;
pub mod whatsapp;
