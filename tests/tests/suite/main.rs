//! Integration tests against the AWS emulator. Run through `infra/test.sh`, which starts and provisions it.

// Without the fixtures, the conformance tests (and the helpers only they use) are not built as tests.
#![cfg_attr(not(fixtures), allow(dead_code, unused_imports))]

mod connections;
mod data_requests;
mod ebay_deletion;
mod faults;
mod forwarding;
mod insights;
mod local_stack;
mod marketplace_poller;
mod merchant_api;
mod messaging_adapters;
mod messaging_worker;
mod notifications_sender;
mod orders;
mod payments_worker;
mod redaction;
mod retention_sweep;
mod stripe_webhook;
mod whatsapp_webhook;
