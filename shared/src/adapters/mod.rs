//! Adapters: production implementations of the ports (AWS), the inbound SQS batch helper, and in-memory
//! fakes for use-case tests.

pub mod aws;
pub mod dynamo_audit;
pub mod dynamo_data;
pub mod dynamo_idempotency;
pub mod dynamo_messaging;
pub mod dynamo_payments;
pub mod dynamo_requests;
pub mod emf;
pub mod memory;
pub mod privacy;
pub mod s3_objects;
pub mod secrets;
pub mod sqs_batch;
pub mod sqs_queue;
pub mod whatsapp_cloud;
