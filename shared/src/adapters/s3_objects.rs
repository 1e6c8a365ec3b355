//! [`ObjectStore`] on one S3 bucket: server-side encryption on every put, presigned GETs for links.

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client;

use super::aws::infra_error;
use crate::ports::{InfraError, ObjectStore};

#[derive(Debug, Clone)]
pub struct S3Objects {
    client: Client,
    bucket: String,
}

impl S3Objects {
    /// `client`: from [`super::aws::Aws::s3`] (path-style against the local emulator).
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }
}

impl ObjectStore for S3Objects {
    async fn put_private(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), InfraError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .content_type(content_type)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("s3", "PutObject", e))
    }

    async fn presigned_get(&self, key: &str, valid_for: std::time::Duration) -> Result<String, InfraError> {
        let config = PresigningConfig::expires_in(valid_for).map_err(|e| InfraError {
            service: "s3",
            operation: "presign",
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| infra_error("s3", "GetObject(presign)", e))?;
        Ok(req.uri().to_owned())
    }

    async fn delete(&self, key: &str) -> Result<(), InfraError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("s3", "DeleteObject", e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, InfraError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| infra_error("s3", "ListObjectsV2", e))?;
            for o in page.contents() {
                let modified =
                    o.last_modified().and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0)).unwrap_or_default();
                if let Some(k) = o.key() {
                    out.push((k.to_owned(), modified));
                }
            }
            match page.next_continuation_token {
                Some(t) if page.is_truncated == Some(true) => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}
