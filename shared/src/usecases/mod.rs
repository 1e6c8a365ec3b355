//! Use cases: the suite's behaviour, generic over ports.

pub mod apply_payment;
pub mod connections;
pub mod consent_audit;
pub mod conversation;
pub mod data_requests;
pub mod forwarding;
pub mod inbox;
pub mod insights;
pub mod merchant_api;
pub mod opt_in;
pub mod orders_ingest;
pub mod poll;
pub mod send_notification;
pub mod stripe_ingest;
pub mod sweep;
pub mod whatsapp_ingest;
