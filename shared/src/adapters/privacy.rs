//! The adapters the privacy side shares (the retention sweep, the data-requests worker, the operator CLI):
//! every table, the exports bucket, the data-subject requests and the audit log.

use std::collections::BTreeMap;

use super::aws::s3_path_style;
use super::dynamo_audit::DynamoAudit;
use super::dynamo_data::DynamoData;
use super::dynamo_requests::DynamoDataRequests;
use super::s3_objects::S3Objects;
use crate::domain::inventory::Store;

#[derive(Debug, Clone)]
pub struct PrivacyStores {
    pub data: DynamoData,
    pub exports: S3Objects,
    pub requests: DynamoDataRequests,
    pub audit: DynamoAudit,
}

impl PrivacyStores {
    /// `tables`: every store's table (the data-requests table also holds the audit log).
    pub fn new(
        sdk: &aws_config::SdkConfig,
        ddb: aws_sdk_dynamodb::Client,
        tables: BTreeMap<Store, String>,
        exports_bucket: impl Into<String>,
    ) -> Self {
        let requests = tables.get(&Store::DataRequests).cloned().unwrap_or_default();
        Self {
            data: DynamoData::new(ddb.clone(), tables),
            exports: S3Objects::new(sdk, exports_bucket, s3_path_style()),
            requests: DynamoDataRequests::new(ddb.clone(), requests.clone()),
            audit: DynamoAudit::new(ddb, requests),
        }
    }
}
