//! Pure domain rules: no I/O, no clocks read, no AWS types.

pub mod envelope;
pub mod payment;
pub mod retention;
pub mod stripe;
pub mod subject;
pub mod whatsapp;
