//! Adapters: production implementations of the ports (AWS), the inbound SQS batch helper, and in-memory
//! fakes for use-case tests (only with `cfg(test)` or the `fakes` feature).

pub mod aws;
pub mod dynamo_attrs;
pub mod dynamo_audit;
pub mod dynamo_connections;
pub mod dynamo_conversations;
pub mod dynamo_data;
pub mod dynamo_idempotency;
pub mod dynamo_insights;
pub mod dynamo_ledger;
pub mod dynamo_merchants;
pub mod dynamo_orders;
pub mod dynamo_payments;
pub mod dynamo_requests;
pub mod dynamo_webhooks;
pub mod emf;
pub mod marketplaces;
/// In-memory fakes for use-case tests: built only for tests (`cfg(test)`, or the `fakes` feature the test
/// crate turns on); no function references them, so no Lambda binary links them.
#[cfg(any(test, feature = "fakes"))]
pub mod memory;
pub mod meta_graph;
pub mod privacy;
pub mod s3_objects;
pub mod secrets;
pub mod sqs_batch;
pub mod sqs_queue;
pub mod webhook_delivery;
pub mod whatsapp_cloud;
