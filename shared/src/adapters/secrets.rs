//! Secrets from Secrets Manager, fetched by name once at init and kept for the life of the process.
//! Values are wrapped in `SecretString` at once, so they cannot reach a log through `Debug`.

use aws_sdk_secretsmanager::Client;
use secrecy::SecretString;

use super::aws::infra_error;
use crate::ports::InfraError;

/// Reads a secret's string value.
pub async fn fetch(client: &Client, secret_id: &str) -> Result<SecretString, InfraError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| infra_error("secretsmanager", "GetSecretValue", e))?;
    out.secret_string.map(SecretString::from).ok_or(InfraError {
        service: "secretsmanager",
        operation: "GetSecretValue",
        retryable: false,
        source: Some("secret has no string value".into()),
    })
}

/// A secret holding several values at once (during a roll, or for several endpoints): a JSON object whose
/// `field` lists them. A plain string is taken as a single value.
pub fn list(value: &SecretString, field: &str) -> Vec<SecretString> {
    use secrecy::ExposeSecret;
    let raw = value.expose_secret().trim();
    let listed = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw)
        .ok()
        .and_then(|mut o| o.remove(field))
        .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok());
    match listed {
        Some(values) => values.into_iter().map(SecretString::from).collect(),
        None => vec![SecretString::from(raw.to_owned())],
    }
}

/// The Stripe webhook secret: `{"endpoint_secrets": [...]}` (several during a roll, or for platform and
/// Connect endpoints), or one `whsec_...` string.
pub fn stripe_endpoint_secrets(value: &SecretString) -> Vec<SecretString> {
    list(value, "endpoint_secrets")
}

/// The WhatsApp app secret: `{"app_secrets": [...]}` (two while rotating), or one string.
pub fn whatsapp_app_secrets(value: &SecretString) -> Vec<SecretString> {
    list(value, "app_secrets")
}
