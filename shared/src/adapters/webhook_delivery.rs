//! What a delivery needs besides its table: the endpoints' signing secrets (Secrets Manager), the HTTP
//! sender with its address checks, the data a body is rendered from, and the deliveries queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::aws::infra_error;
use super::dynamo_orders::DynamoOrders;
use super::dynamo_payments::DynamoPayments;
use super::sqs_queue::SqsQueue;
use crate::domain::webhooks::{self, AddressPolicy};
use crate::ports::{
    Answer, DeliveryQueue, DeliveryRef, Endpoint, EventData, InfraError, OrderStore, Outgoing, PaymentStore, Sender,
    SigningSecrets, Source,
};

/// An endpoint's secret as stored: the current one first, and the previous one until its overlap ends.
#[derive(Serialize, Deserialize, Default)]
struct SecretJson {
    secrets: Vec<KeyJson>,
}

#[derive(Serialize, Deserialize)]
struct KeyJson {
    secret: String,
    /// Epoch seconds after which this one no longer signs (`None`: the current one).
    #[serde(default)]
    until: Option<i64>,
}

/// A signing key and when it stops signing (`None`: the current one).
type Key = (Vec<u8>, Option<i64>);
/// Keys by secret id and version.
type KeyCache = HashMap<(String, u32), (Instant, Vec<Key>)>;

/// How long a container keeps an endpoint's keys before reading them again (a rotation is seen at once
/// through the endpoint's version; this bounds anything else).
const KEY_CACHE_SECS: u64 = 300;

/// The endpoints' signing secrets, one Secrets Manager secret per endpoint (`<stack>/webhooks/<id>`),
/// cached per container by id and version (a rotation bumps the version, so it is seen at once).
#[derive(Clone)]
pub struct SecretsSigning {
    client: aws_sdk_secretsmanager::Client,
    cache: Arc<Mutex<KeyCache>>,
}

impl SecretsSigning {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client, cache: Arc::default() }
    }

    fn encode(j: &SecretJson) -> SecretString {
        SecretString::from(serde_json::to_string(j).unwrap_or_default())
    }

    /// Creates an endpoint's secret with `secret` as its only key; returns the secret's id (ARN).
    pub async fn create(&self, name: &str, secret: &str) -> Result<String, InfraError> {
        let j = SecretJson { secrets: vec![KeyJson { secret: secret.to_owned(), until: None }] };
        let out = self
            .client
            .create_secret()
            .name(name)
            .secret_string(Self::encode(&j).expose_secret())
            .send()
            .await
            .map_err(|e| infra_error("secretsmanager", "CreateSecret", e))?;
        Ok(out.arn.unwrap_or_else(|| name.to_owned()))
    }

    /// Makes `secret` the current key; the current one keeps signing until `previous_until`, and earlier
    /// ones still in their own overlap keep theirs.
    pub async fn rotate(&self, secret_id: &str, secret: &str, now: i64, previous_until: i64) -> Result<(), InfraError> {
        let raw = super::secrets::fetch(&self.client, secret_id).await?;
        let old: SecretJson = serde_json::from_str(raw.expose_secret()).unwrap_or_default();
        let mut secrets = vec![KeyJson { secret: secret.to_owned(), until: None }];
        for k in old.secrets {
            match k.until {
                None => secrets.push(KeyJson { secret: k.secret, until: Some(previous_until) }),
                Some(u) if u > now => secrets.push(k),
                Some(_) => {}
            }
        }
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(Self::encode(&SecretJson { secrets }).expose_secret())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("secretsmanager", "PutSecretValue", e))
    }

    /// Deletes a removed endpoint's secret at once.
    pub async fn delete(&self, secret_id: &str) -> Result<(), InfraError> {
        match self.client.delete_secret().secret_id(secret_id).force_delete_without_recovery(true).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = infra_error("secretsmanager", "DeleteSecret", e);
                if e.is_not_found() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

impl SigningSecrets for SecretsSigning {
    async fn keys(&self, endpoint: &Endpoint, now: i64) -> Result<Vec<Vec<u8>>, InfraError> {
        let cache_key = (endpoint.secret_id.clone(), endpoint.secret_version);
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&cache_key).cloned())
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(KEY_CACHE_SECS))
            .map(|(_, keys)| keys);
        let keys = match cached {
            Some(k) => k,
            None => {
                let raw = super::secrets::fetch(&self.client, &endpoint.secret_id).await?;
                let j: SecretJson = serde_json::from_str(raw.expose_secret()).map_err(|_| InfraError {
                    service: "secretsmanager",
                    operation: "GetSecretValue",
                    retryable: false,
                    source: Some("the endpoint's secret is not its JSON".into()),
                })?;
                let keys: Vec<_> =
                    j.secrets.iter().filter_map(|k| webhooks::key_of(&k.secret).map(|key| (key, k.until))).collect();
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(cache_key, (Instant::now(), keys.clone()));
                }
                keys
            }
        };
        let live: Vec<Vec<u8>> =
            keys.into_iter().filter(|(_, until)| until.is_none_or(|u| u > now)).map(|(k, _)| k).collect();
        if live.is_empty() {
            return Err(InfraError {
                service: "secretsmanager",
                operation: "GetSecretValue",
                retryable: false,
                source: Some("the endpoint has no signing key".into()),
            });
        }
        Ok(live)
    }
}

/// Resolves a name and keeps only the addresses the policy allows: the connection is made to an address
/// checked here, so a name that resolves to a private address (or is re-pointed after registration)
/// never reaches one.
#[derive(Debug, Clone, Copy)]
struct CheckedResolver(AddressPolicy);

const FORBIDDEN: &str = "forbidden_address";

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(FORBIDDEN.into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether every address `host` resolves to is allowed (registration's check; the resolver checks again
/// on every connection).
pub async fn resolves_allowed(policy: AddressPolicy, url: &reqwest::Url) -> Result<(), webhooks::UrlRefused> {
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(()); // an IP literal was judged with the URL
    };
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, 0)).await.map_err(|_| webhooks::UrlRefused::Unresolvable)?.collect();
    if addrs.is_empty() {
        return Err(webhooks::UrlRefused::Unresolvable);
    }
    if addrs.iter().all(|a| policy.allows(a.ip())) {
        Ok(())
    } else {
        Err(webhooks::UrlRefused::ForbiddenAddress)
    }
}

/// The sender: rustls, 15 s per attempt, no redirects, no proxy from the environment, addresses checked.
#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl HttpSender {
    pub fn new(policy: AddressPolicy) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(webhooks::ATTEMPT_TIMEOUT_SECS))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver(policy)))
            .user_agent("Nex-Webhooks/1")
            .pool_max_idle_per_host(4)
            .build()
            .expect("a TLS client with timeouts builds (rustls needs no system state)");
        Self { client, policy }
    }
}

fn error_kind(e: &reqwest::Error) -> &'static str {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains(FORBIDDEN) {
            return FORBIDDEN;
        }
        source = s.source();
    }
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

impl Sender for HttpSender {
    async fn send(&self, out: &Outgoing<'_>) -> Answer {
        let started = Instant::now();
        let url = match self.policy.check_url(out.url) {
            Ok(u) => u,
            Err(_) => return Answer { error: Some(FORBIDDEN), ..Answer::default() },
        };
        let timestamp = Utc::now().timestamp();
        let signature = webhooks::signature_header(out.keys, out.id, timestamp, out.body);
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", out.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(out.body.to_vec())
            .send()
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match sent {
            Ok(r) => {
                let h = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                Answer {
                    status: Some(r.status().as_u16()),
                    retry_after: h("retry-after"),
                    abort: h("webhook-delivery").is_some_and(|v| v.eq_ignore_ascii_case("abort-message")),
                    latency_ms,
                    error: None,
                }
            }
            Err(e) => Answer { latency_ms, error: Some(error_kind(&e)), ..Answer::default() },
        }
    }
}

/// Renders event bodies from the orders and payments tables as they are now: a buyer past its deadline or
/// erased is never in a body, whenever the attempt or replay happens.
#[derive(Clone)]
pub struct ForwardData {
    pub orders: DynamoOrders,
    pub payments: DynamoPayments,
}

impl EventData for ForwardData {
    async fn render(
        &self, merchant: &str, source: &Source, now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>, InfraError> {
        match source {
            Source::Order { order_sk } => {
                let Some((order, buyer)) = self.orders.get(merchant, order_sk, now).await? else {
                    return Ok(None);
                };
                let mut v = serde_json::to_value(&order).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("version".into(), order.updated_at.timestamp_millis().into());
                    o.insert(
                        "buyer".into(),
                        buyer.map_or(serde_json::Value::Null, |b| serde_json::to_value(b).unwrap_or_default()),
                    );
                }
                Ok(Some(v))
            }
            Source::Payment { payment_key } => {
                let loaded = self.payments.get(payment_key, now).await?;
                let Some(p) = loaded.value.filter(|p| p.merchant.as_deref() == Some(merchant)) else {
                    return Ok(None);
                };
                Ok(Some(serde_json::json!({
                    "payment_key": p.payment_key,
                    "order_ref": p.order_ref,
                    "status": p.status,
                    "amount": p.amount,
                    "currency": p.currency,
                    "version": p.version,
                    "last_event_at": p.last_event_at,
                })))
            }
        }
    }
}

impl DeliveryQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[DeliveryRef], delay_secs: i64) -> Result<(), InfraError> {
        let bodies: Vec<String> = jobs.iter().map(DeliveryRef::encode).collect();
        self.send_batch_delayed(&bodies, delay_secs.clamp(0, 900) as i32).await
    }
}
