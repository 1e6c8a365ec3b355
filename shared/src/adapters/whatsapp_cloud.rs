//! [`CloudMessaging`] over HTTPS: `POST {base}/{version}/{phone_number_id}/messages` (or
//! `/marketing_messages` for marketing templates) with a bearer token. Base URL, API version and token come
//! from configuration, so tests point it at a local server and production at Meta. Errors are classified
//! from Meta's error object (`error.code`), not from the HTTP status alone.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::ports::{CloudMessaging, SendError};

#[derive(Clone)]
pub struct CloudApi {
    http: reqwest::Client,
    base_url: String,
    api_version: String,
    token: SecretString,
}

impl std::fmt::Debug for CloudApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudApi").field("base_url", &self.base_url).field("api_version", &self.api_version).finish()
    }
}

impl CloudApi {
    pub fn new(base_url: &str, api_version: &str, token: SecretString) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_version: api_version.trim_matches('/').to_owned(),
            token,
        })
    }
}

#[derive(Deserialize)]
struct Sent {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: MetaError,
}

#[derive(Deserialize)]
struct MetaError {
    #[serde(default)]
    code: i64,
}

/// Classifies Meta's error `code` (with the HTTP status as a fallback).
pub fn classify(status: u16, code: Option<i64>) -> SendError {
    match code {
        Some(131047) => SendError::WindowClosed,
        Some(131050) => SendError::MarketingStopped,
        // Throughput, spam-rate, pair-rate and app/account rate limits.
        Some(c @ (4 | 17 | 32 | 613 | 80007 | 130429 | 131048 | 131056)) => SendError::RateLimited { code: c },
        // Expired or invalid token, missing permission.
        Some(c @ (0 | 190 | 10 | 200..=299)) => SendError::Auth { code: c },
        Some(c @ (1 | 2 | 131000 | 131016)) => SendError::Transient(format!("meta error {c}").into()),
        Some(c) if status >= 500 => SendError::Transient(format!("meta error {c} with HTTP {status}").into()),
        Some(c) => SendError::Permanent { code: c },
        None if status == 429 => SendError::RateLimited { code: 0 },
        None if status == 401 || status == 403 => SendError::Auth { code: 0 },
        None if status >= 500 => SendError::Transient(format!("HTTP {status}").into()),
        None => SendError::Permanent { code: -i64::from(status) },
    }
}

impl CloudMessaging for CloudApi {
    async fn send(
        &self, phone_number_id: &str, message: &serde_json::Value, marketing: bool,
    ) -> Result<String, SendError> {
        let edge = if marketing { "marketing_messages" } else { "messages" };
        let url = format!("{}/{}/{}/{}", self.base_url, self.api_version, phone_number_id, edge);
        let resp = self
            .http
            .post(url)
            .bearer_auth(self.token.expose_secret())
            .json(message)
            .send()
            .await
            // Not connected: Meta never saw it. Anything later (a timeout, a reset): it may have.
            .map_err(|e| {
                if e.is_connect() {
                    SendError::Transient(Box::new(e))
                } else {
                    SendError::Unanswered(Box::new(e))
                }
            })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| SendError::Unanswered(Box::new(e)))?;
        if (200..300).contains(&status) {
            let sent: Sent = serde_json::from_slice(&bytes).map_err(|e| SendError::Unanswered(Box::new(e)))?;
            return sent
                .messages
                .into_iter()
                .next()
                .map(|m| m.id)
                .ok_or_else(|| SendError::Unanswered("no message id in Meta's answer".into()));
        }
        let code = serde_json::from_slice::<ErrorBody>(&bytes).ok().map(|b| b.error.code);
        Err(classify(status, code))
    }
}
