//! Use cases: the suite's behaviour, generic over ports.

pub mod apply_payment;
pub mod opt_in;
pub mod send_notification;
pub mod stripe_ingest;
pub mod whatsapp_ingest;
