//! WhatsApp Business Platform (Cloud API): webhook signatures, the webhook payload walked tolerantly,
//! opt-out and data-request keywords, delivery receipts and the send-time consent rules.

pub mod consent;
pub mod delivery;
pub mod handshake;
pub mod keyword;
pub mod signature;
pub mod webhook;
