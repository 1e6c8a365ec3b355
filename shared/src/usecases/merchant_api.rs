//! The merchant API's rules that are not HTTP: who the caller is (from its API key, never from the body)
//! and which data-subject requests it may see.

use sha2::{Digest, Sha256};

use crate::ports::{DataRequests, InfraError, MerchantKeys, ObjectStore, RequestRecord};

/// Why a request's API key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefused {
    #[error("no bearer API key")]
    Missing,
    #[error("unknown API key")]
    Unknown,
    /// Nothing was done yet, so the same call may be retried.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// The merchant owning the `Authorization: Bearer <key>` header's key. Keys are stored as their SHA-256;
/// the scheme is case-insensitive (RFC 9110).
pub async fn merchant(keys: &impl MerchantKeys, authorization: Option<&str>) -> Result<String, KeyRefused> {
    let key = authorization
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty())
        .ok_or(KeyRefused::Missing)?;
    keys.merchant_for_key(&hex::encode(Sha256::digest(key.as_bytes()))).await?.ok_or(KeyRefused::Unknown)
}

/// How long an export link shown to a merchant works.
pub const LINK_VALID: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A request as its merchant sees it, with a link to its export if it has one.
pub struct Shown {
    pub record: RequestRecord,
    pub export_url: Option<String>,
}

/// The request `id`, if `merchant` opened it through this API: never a person's own request or an
/// operator's, even one that names the merchant; another merchant's request is as absent as an unknown one.
pub async fn shown_to(
    requests: &impl DataRequests, exports: &impl ObjectStore, merchant: &str, id: &str,
) -> Result<Option<Shown>, InfraError> {
    let record = match requests.get(id).await? {
        Some(r)
            if r.request.source == crate::ports::SOURCE_MERCHANT_API
                && r.request.merchant.as_deref() == Some(merchant) =>
        {
            r
        }
        _ => return Ok(None),
    };
    let export_url = match &record.export_key {
        Some(k) => Some(exports.presigned_get(k, LINK_VALID).await?),
        None => None,
    };
    Ok(Some(Shown { record, export_url }))
}
