//! [`ConnectionStore`] and [`CredentialStore`]: connection records in the connections table, their
//! credentials in one Secrets Manager secret each.
//!
//! A connection is `pk` = `conn#<id>`, `sk` = `conn`: its record (merchant, marketplace, account, sites,
//! status, secret id), its poll state (watermark, cursor, bucket, throttle, outcome) and its lease
//! (`lease`, `lease_until` in epoch milliseconds). Active connections carry `poll_shard`, the key of the
//! sparse `pollable` index the scheduler fans out from; `by_merchant` lists a merchant's connections.
//! No credentials and no personal data are stored here.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::aws::{infra_error, is_condition_failed};
use super::dynamo_attrs::{n, s, text, update, Item};
use crate::domain::orders::connection::{poll_shard, Bucket, Connection, ConnectionStatus, Cursor};
use crate::domain::orders::Marketplace;
use crate::ports::{ConnectionStore, CredentialStore, Credentials, InfraError};

pub const SK: &str = "conn";

#[derive(Debug, Clone)]
pub struct DynamoConnections {
    client: Client,
    table: String,
}

impl DynamoConnections {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Stores a new connection (active, polled from the next schedule). Fails if its id exists.
    pub async fn create(&self, c: &Connection) -> Result<(), InfraError> {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(format!("conn#{}", c.id))),
            ("sk".to_owned(), s(SK)),
            ("id".to_owned(), s(&c.id)),
            ("merchant".to_owned(), s(&c.merchant)),
            ("marketplace".to_owned(), s(c.marketplace.as_str())),
            ("account".to_owned(), s(&c.account)),
            ("sites".to_owned(), s(serde_json::to_string(&c.sites).unwrap_or_default())),
            ("status".to_owned(), s(c.status.as_str())),
            ("secret_id".to_owned(), s(&c.secret_id)),
            ("created_at".to_owned(), s(c.created_at.to_rfc3339())),
            ("failures".to_owned(), n(0)),
        ]);
        if c.status == ConnectionStatus::Active {
            item.insert("poll_shard".into(), s(poll_shard(&c.id).to_string()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("dynamodb", "PutItem(connection)", e))
    }
}

fn time(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    text(item, name).and_then(|t| t.parse().ok())
}

fn json<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Option<T> {
    text(item, name).and_then(|t| serde_json::from_str(&t).ok())
}

/// A stored connection; `None` for an item that is not one (or is malformed).
pub fn from_item(item: &Item) -> Option<Connection> {
    Some(Connection {
        id: text(item, "id")?,
        merchant: text(item, "merchant")?,
        marketplace: Marketplace::parse(&text(item, "marketplace")?)?,
        account: text(item, "account").unwrap_or_default(),
        sites: json(item, "sites").unwrap_or_default(),
        status: ConnectionStatus::parse(&text(item, "status")?)?,
        secret_id: text(item, "secret_id")?,
        created_at: time(item, "created_at")?,
        watermark: time(item, "watermark"),
        cursor: json::<Cursor>(item, "cursor"),
        bucket: json::<Bucket>(item, "bucket"),
        throttle_until: time(item, "throttle_until"),
        last_success: time(item, "last_success"),
        last_error: text(item, "last_error"),
        failures: super::dynamo_attrs::num(item, "failures").unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
    })
}

fn malformed() -> InfraError {
    InfraError {
        service: "dynamodb",
        operation: "GetItem(connection)",
        retryable: false,
        source: Some("malformed connection".into()),
    }
}

impl ConnectionStore for DynamoConnections {
    async fn get(&self, id: &str) -> Result<Option<Connection>, InfraError> {
        let item = super::dynamo_attrs::get_item(&self.client, &self.table, format!("conn#{id}"), SK, true).await?;
        item.map(|i| from_item(&i).ok_or_else(malformed)).transpose()
    }

    async fn lease(
        &self, id: &str, lease: &str, now: DateTime<Utc>, until: DateTime<Utc>,
    ) -> Result<Option<Connection>, InfraError> {
        let res = update(&self.client, &self.table, s(format!("conn#{id}")), s(SK))
            .update_expression("SET lease = :l, lease_until = :u")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(lease_until) OR lease_until <= :now)")
            .expression_attribute_values(":l", s(lease))
            .expression_attribute_values(":u", n(until.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => Ok(out.attributes.as_ref().and_then(from_item)),
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(connection lease)", e)),
        }
    }

    async fn save(&self, c: &Connection, lease: &str, release: bool) -> Result<bool, InfraError> {
        // Every name through a placeholder: `cursor` and `bucket` are reserved words.
        let mut names: HashMap<String, String> = HashMap::from([("#failures".into(), "failures".into())]);
        let mut set: Vec<String> = vec!["#failures = :failures".into()];
        let mut remove: Vec<String> = vec![];
        let mut values: HashMap<String, AttributeValue> =
            HashMap::from([(":failures".into(), n(i64::from(c.failures))), (":l".into(), s(lease))]);
        let fields = [
            ("watermark", c.watermark.map(|t| t.to_rfc3339())),
            ("cursor", c.cursor.as_ref().and_then(|v| serde_json::to_string(v).ok())),
            ("bucket", c.bucket.as_ref().and_then(|v| serde_json::to_string(v).ok())),
            ("throttle_until", c.throttle_until.map(|t| t.to_rfc3339())),
            ("last_success", c.last_success.map(|t| t.to_rfc3339())),
            ("last_error", c.last_error.clone()),
        ];
        for (name, value) in fields {
            names.insert(format!("#{name}"), name.to_owned());
            match value {
                Some(v) => {
                    set.push(format!("#{name} = :{name}"));
                    values.insert(format!(":{name}"), s(v));
                }
                None => remove.push(format!("#{name}")),
            }
        }
        // The job changes the status only to stop polling a connection whose credentials were refused;
        // a pause or a removal meanwhile is the merchant's, and is kept.
        let reauth = c.status == ConnectionStatus::NeedsReauthorization;
        if reauth {
            names.insert("#status".into(), "status".into());
            set.push("#status = :status".into());
            values.insert(":status".into(), s(c.status.as_str()));
            remove.push("poll_shard".into());
        }
        if release {
            remove.extend(["lease".to_owned(), "lease_until".to_owned()]);
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let req = update(&self.client, &self.table, s(format!("conn#{}", c.id)), s(SK))
            .update_expression(expr)
            .condition_expression("lease = :l")
            .set_expression_attribute_values(Some(values))
            .set_expression_attribute_names(Some(names));
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(connection)", e)),
        }
    }

    async fn pollable(&self, shard: u32, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), InfraError> {
        let mut q = super::dynamo_attrs::query(&self.client, &self.table)
            .index_name("pollable")
            .key_condition_expression("poll_shard = :s")
            .expression_attribute_values(":s", s(shard.to_string()))
            .limit(500);
        if let Some(c) = cursor {
            let start: HashMap<String, String> = serde_json::from_str(c).map_err(|_| InfraError {
                service: "dynamodb",
                operation: "Query(pollable)",
                retryable: false,
                source: Some("malformed cursor".into()),
            })?;
            q = q.set_exclusive_start_key(Some(start.into_iter().map(|(k, v)| (k, s(v))).collect()));
        }
        let out = q.send().await.map_err(|e| infra_error("dynamodb", "Query(pollable)", e))?;
        let ids = out.items().iter().filter_map(|i| text(i, "pk")?.strip_prefix("conn#").map(str::to_owned)).collect();
        let next = out.last_evaluated_key.filter(|k| !k.is_empty()).map(|k| {
            let m: HashMap<String, String> =
                k.iter().filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone()))).collect();
            serde_json::to_string(&m).unwrap_or_default()
        });
        Ok((ids, next))
    }
}

/// The JSON of a connection's secret.
#[derive(Default, Serialize, Deserialize)]
struct SecretJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_expires_at: Option<DateTime<Utc>>,
}

/// Connection credentials in Secrets Manager, one secret per connection.
#[derive(Debug, Clone)]
pub struct SecretsCredentials {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsCredentials {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }

    fn encode(c: &Credentials) -> SecretString {
        let j = SecretJson {
            refresh_token: c.refresh_token.as_ref().map(|v| v.expose_secret().to_owned()),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.as_ref().map(|v| v.expose_secret().to_owned()),
            access_token: c.access_token.as_ref().map(|v| v.expose_secret().to_owned()),
            access_expires_at: c.access_expires_at,
        };
        SecretString::from(serde_json::to_string(&j).unwrap_or_default())
    }

    /// Creates the secret of a new connection; returns its id (ARN).
    pub async fn create(&self, name: &str, c: &Credentials) -> Result<String, InfraError> {
        let out = self
            .client
            .create_secret()
            .name(name)
            .secret_string(Self::encode(c).expose_secret())
            .send()
            .await
            .map_err(|e| infra_error("secretsmanager", "CreateSecret", e))?;
        Ok(out.arn.unwrap_or_else(|| name.to_owned()))
    }

    /// Deletes a removed connection's secret at once (no recovery window: nothing should be recoverable).
    pub async fn delete(&self, secret_id: &str) -> Result<(), InfraError> {
        self.client
            .delete_secret()
            .secret_id(secret_id)
            .force_delete_without_recovery(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("secretsmanager", "DeleteSecret", e))
    }
}

impl CredentialStore for SecretsCredentials {
    async fn load(&self, secret_id: &str) -> Result<Credentials, InfraError> {
        let raw = super::secrets::fetch(&self.client, secret_id).await?;
        let j: SecretJson = serde_json::from_str(raw.expose_secret()).map_err(|_| InfraError {
            service: "secretsmanager",
            operation: "GetSecretValue",
            retryable: false,
            source: Some("the connection's secret is not its JSON".into()),
        })?;
        Ok(Credentials {
            refresh_token: j.refresh_token.map(SecretString::from),
            client_id: j.client_id,
            client_secret: j.client_secret.map(SecretString::from),
            access_token: j.access_token.map(SecretString::from),
            access_expires_at: j.access_expires_at,
        })
    }

    async fn save(&self, secret_id: &str, c: &Credentials) -> Result<(), InfraError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(Self::encode(c).expose_secret())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("secretsmanager", "PutSecretValue", e))
    }
}

/// What a single-use consent `state` is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBinding {
    pub merchant: String,
    pub marketplace: Marketplace,
    pub sites: Vec<String>,
    /// The account the merchant says it is connecting (Amazon's selling partner id): the callback must
    /// bring that one, so a consent link sent to another seller connects nothing.
    pub account: Option<String>,
}

impl DynamoConnections {
    /// Keeps a consent `state` (by its SHA-256, never the value) bound to `binding` until `expires_at`.
    pub async fn put_state(
        &self, state_hash: &str, binding: &StateBinding, expires_at: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("state#{state_hash}")))
            .item("sk", s("state"))
            .item("merchant", s(&binding.merchant))
            .item("marketplace", s(binding.marketplace.as_str()))
            .item("sites", s(serde_json::to_string(&binding.sites).unwrap_or_default()))
            .item("account", s(binding.account.clone().unwrap_or_default()))
            .item("expires_at", n(expires_at.timestamp()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("dynamodb", "PutItem(state)", e))
    }

    /// Takes a consent state once: deleted as it is read, and only if it has not expired. `None`: unknown,
    /// used, or expired.
    pub async fn take_state(&self, state_hash: &str, now: DateTime<Utc>) -> Result<Option<StateBinding>, InfraError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("state#{state_hash}")))
            .key("sk", s("state"))
            .condition_expression("attribute_exists(pk) AND expires_at > :now")
            .expression_attribute_values(":now", n(now.timestamp()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match res {
            Ok(out) => Ok(out.attributes.and_then(|a| {
                Some(StateBinding {
                    merchant: text(&a, "merchant")?,
                    marketplace: Marketplace::parse(&text(&a, "marketplace")?)?,
                    sites: json(&a, "sites").unwrap_or_default(),
                    account: text(&a, "account").filter(|a| !a.is_empty()),
                })
            })),
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(infra_error("dynamodb", "DeleteItem(state)", e)),
        }
    }

    /// `merchant`'s connections, from the `by_merchant` index.
    pub async fn for_merchant(&self, merchant: &str) -> Result<Vec<Connection>, InfraError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let res = super::dynamo_attrs::query(&self.client, &self.table)
                .index_name("by_merchant")
                .key_condition_expression("merchant = :m AND begins_with(pk, :c)")
                .expression_attribute_values(":m", s(merchant))
                .expression_attribute_values(":c", s("conn#"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", "Query(by_merchant)", e))?;
            out.extend(res.items().iter().filter_map(from_item).filter(|c| c.merchant == merchant));
            start = res.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Every connection (the operator's view), a page at a time.
    pub async fn all(&self) -> Result<Vec<Connection>, InfraError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let res = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :c)")
                .expression_attribute_values(":c", s("conn#"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", "Scan(connections)", e))?;
            out.extend(res.items().iter().filter_map(from_item));
            start = res.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Pauses (`active` -> `paused`) or resumes (`paused` -> `active`) connection `id`, only if it is held
    /// for `merchant` (`None`: an operator). `Ok(false)`: not theirs, absent, or not in the state to change.
    pub async fn set_paused(&self, id: &str, merchant: Option<&str>, paused: bool) -> Result<bool, InfraError> {
        let (from, to) = if paused {
            (ConnectionStatus::Active, ConnectionStatus::Paused)
        } else {
            (ConnectionStatus::Paused, ConnectionStatus::Active)
        };
        let mut req = update(&self.client, &self.table, s(format!("conn#{id}")), s(SK))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":to", s(to.as_str()));
        req = if paused {
            req.update_expression("SET #status = :to REMOVE poll_shard")
        } else {
            // A backoff in force stays: resuming does not skip a 429's wait.
            req.update_expression("SET #status = :to, poll_shard = :shard")
                .expression_attribute_values(":shard", s(poll_shard(id).to_string()))
        };
        req = match merchant {
            Some(m) => req
                .condition_expression("attribute_exists(pk) AND #status = :from AND merchant = :m")
                .expression_attribute_values(":m", s(m)),
            None => req.condition_expression("attribute_exists(pk) AND #status = :from"),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(connection status)", e)),
        }
    }

    /// Stores a connection made again (new credentials for the same account): active and polled again from
    /// its watermark. Creates it if it is new. A job still running on the old credentials loses its lease,
    /// so it can neither mark the fresh connection refused nor save over it.
    pub async fn connect(&self, c: &Connection) -> Result<(), InfraError> {
        match self.create(c).await {
            Ok(()) => Ok(()),
            Err(e) if e.operation == "PutItem(connection)" => {
                let res = update(&self.client, &self.table, s(format!("conn#{}", c.id)), s(SK))
                    .update_expression(
                        "SET #status = :active, poll_shard = :shard, failures = :zero, sites = :sites, secret_id = :secret \
                         REMOVE throttle_until, last_error, #cursor, lease, lease_until",
                    )
                    .expression_attribute_names("#cursor", "cursor")
                    .expression_attribute_values(":sites", s(serde_json::to_string(&c.sites).unwrap_or_default()))
                    .expression_attribute_values(":secret", s(&c.secret_id))
                    .condition_expression("attribute_exists(pk) AND merchant = :m")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":active", s(ConnectionStatus::Active.as_str()))
                    .expression_attribute_values(":shard", s(poll_shard(&c.id).to_string()))
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":m", s(&c.merchant))
                    .send()
                    .await;
                res.map(|_| ()).map_err(|e| infra_error("dynamodb", "UpdateItem(connection)", e))
            }
            Err(e) => Err(e),
        }
    }

    /// Removes connection `id` if it is held for `merchant` (`None`: an operator); returns its secret's id
    /// so the caller deletes it. Its orders keep their own deadlines.
    pub async fn remove(&self, id: &str, merchant: Option<&str>) -> Result<Option<String>, InfraError> {
        let mut req =
            self.client.delete_item().table_name(&self.table).key("pk", s(format!("conn#{id}"))).key("sk", s(SK));
        req = match merchant {
            Some(m) => req.condition_expression("merchant = :m").expression_attribute_values(":m", s(m)),
            None => req.condition_expression("attribute_exists(pk)"),
        };
        match req.return_values(ReturnValue::AllOld).send().await {
            Ok(out) => Ok(out.attributes.and_then(|a| text(&a, "secret_id"))),
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(infra_error("dynamodb", "DeleteItem(connection)", e)),
        }
    }
}

impl SecretsCredentials {
    /// Creates or replaces the secret `name` (a connection made again gets its new credentials).
    pub async fn put(&self, name: &str, c: &Credentials) -> Result<String, InfraError> {
        match self.create(name, c).await {
            Ok(id) => Ok(id),
            Err(_) => {
                self.save(name, c).await?;
                Ok(name.to_owned())
            }
        }
    }
}
