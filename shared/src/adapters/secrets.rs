//! Secrets from Secrets Manager, fetched by name once at init and kept for the life of the process.
//! Values are wrapped in `SecretString` at once, so they cannot reach a log through `Debug`.

use aws_sdk_secretsmanager::Client;
use secrecy::SecretString;
use serde::Deserialize;

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

/// The Stripe webhook secret's JSON shape: every endpoint secret currently valid (several during a roll,
/// or for platform and Connect endpoints). A plain `whsec_...` string is accepted as a single secret.
#[derive(Deserialize)]
struct StripeSecrets {
    endpoint_secrets: Vec<String>,
}

/// Parses the Stripe webhook secret value into its endpoint secrets.
pub fn stripe_endpoint_secrets(value: &SecretString) -> Vec<SecretString> {
    use secrecy::ExposeSecret;
    let raw = value.expose_secret().trim();
    match serde_json::from_str::<StripeSecrets>(raw) {
        Ok(s) => s.endpoint_secrets.into_iter().map(SecretString::from).collect(),
        Err(_) => vec![SecretString::from(raw.to_owned())],
    }
}
