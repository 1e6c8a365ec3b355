//! The adapters the privacy side shares (the retention sweep, the data-requests worker, the operator CLI):
//! every table, the exports bucket, the data-subject requests and the audit log.

use std::collections::BTreeMap;

use super::aws::Aws;
use super::dynamo_audit::DynamoAudit;
use super::dynamo_data::DynamoData;
use super::dynamo_requests::DynamoDataRequests;
use super::s3_objects::S3Objects;
use crate::domain::data_inventory::Store;

#[derive(Debug, Clone)]
pub struct PrivacyStores {
    pub data: DynamoData,
    pub exports: S3Objects,
    pub requests: DynamoDataRequests,
    pub audit: DynamoAudit,
}

impl PrivacyStores {
    /// `tables`: every store's table (the data-requests table also holds the audit log).
    pub fn new(aws: &Aws, tables: BTreeMap<Store, String>, exports_bucket: impl Into<String>) -> Self {
        let ddb = aws.dynamodb();
        let requests = tables.get(&Store::DataRequests).cloned().unwrap_or_default();
        Self {
            data: DynamoData::new(ddb.clone(), tables),
            exports: S3Objects::new(aws.s3(), exports_bucket),
            requests: DynamoDataRequests::new(ddb.clone(), requests.clone()),
            audit: DynamoAudit::new(ddb, requests),
        }
    }
}
