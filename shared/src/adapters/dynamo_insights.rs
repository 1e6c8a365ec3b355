//! The insights table. No personal data (campaign-level aggregates).
//!
//! - `accounts` / `account#<id>`: an ad account the platform pulls: currency, UTC offset, status
//!   (`active`, `token_error`), throttle, lease, the ranges still to pull and an async report run in
//!   progress, the last outcome.
//! - `account#<id>` / `row#<date>#<campaign>`: one campaign's day (impressions, clicks, spend as a decimal
//!   string, currency, name) and, when mapped, its `retailer` with `retailer_sk` (`<date>#<account>#<campaign>`),
//!   the keys of the sparse `by_retailer` index.
//! - `campaigns` / `campaign#<id>`: the retailer a campaign was created for.
//! - `unmapped` / `campaign#<id>`: a campaign seen in a pull without a mapping (counted, listed).
//! - `retailer#<id>` / `day#<date>#<currency>`: the retailer's rollup of that day.
//! - `app` / `throttle`: the app-wide pause every pull respects.
//!
//! Every row, mapping and rollup expires with the policy's `AdPerformanceRecord` window.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::aws::{infra_error, is_condition_failed};
use super::dynamo_attrs::{get, n, num, put, put_if_absent, query, s, text, update, Item};
use crate::domain::insights::{Rollup, Row};
use crate::ports::InfraError;

pub const BY_RETAILER: &str = "by_retailer";

/// An ad account and its pull state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdAccount {
    /// Without `act_`.
    pub id: String,
    pub currency: String,
    /// Meta's `timezone_offset_hours_utc`: the account's dates.
    pub offset_hours: f64,
    #[serde(default)]
    pub timezone_name: String,
    /// `active` or `token_error` (pulls stop until an operator resumes it).
    pub status: String,
    #[serde(default)]
    pub throttle_until: Option<i64>,
    #[serde(default)]
    pub lease_until: Option<i64>,
    /// Ranges still to pull in this run (a run cut off, throttled or split goes on from here).
    #[serde(default)]
    pub pending: Vec<(NaiveDate, NaiveDate)>,
    /// An async report run in progress: its id and range, and when it started (epoch seconds).
    #[serde(default)]
    pub job: Option<(String, NaiveDate, NaiveDate, i64)>,
    #[serde(default)]
    pub last_success_at: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The last day pulled to the end of a window (so a stopped account's missed days are pulled later).
    #[serde(default)]
    pub pulled_through: Option<NaiveDate>,
    /// Failures in a row of the range (or report run) at the head: at 3 it goes to the back, at 6 it is
    /// dropped (and counted), so no range blocks the account.
    #[serde(default)]
    pub head_failures: u32,
    /// When the currency and time zone were last read from Meta (they are read again daily: daylight
    /// saving moves the offset).
    #[serde(default)]
    pub info_at: Option<i64>,
}

impl AdAccount {
    /// A new active account (its currency and time zone are read from Meta on its first pull).
    pub fn new(id: &str) -> Self {
        Self {
            id: id.trim_start_matches("act_").to_owned(),
            currency: String::new(),
            offset_hours: 0.0,
            timezone_name: String::new(),
            status: "active".into(),
            throttle_until: None,
            lease_until: None,
            pending: vec![],
            job: None,
            last_success_at: None,
            last_error: None,
            pulled_through: None,
            head_failures: 0,
            info_at: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DynamoInsights {
    client: Client,
    table: String,
}

fn codec(e: impl std::error::Error + Send + Sync + 'static) -> InfraError {
    InfraError { service: "dynamodb", operation: "insights(codec)", retryable: false, source: Some(Box::new(e)) }
}

/// A mapping lasts as long as the rows it attributes (the policy's window from when it was written).
fn mapping_expiry(at: i64) -> i64 {
    let t = chrono::DateTime::from_timestamp(at, 0).unwrap_or_default();
    crate::domain::retention::deadline(crate::domain::retention::DataClass::AdPerformanceRecord, t)
        .unwrap_or(t)
        .timestamp()
}

fn row_sk(date: NaiveDate, campaign: &str) -> String {
    format!("row#{date}#{campaign}")
}

/// A stored row and the retailer it is attributed to.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub row: Row,
    pub retailer: Option<String>,
}

fn row_item(r: &Row, retailer: Option<&str>, expires_at: i64) -> Item {
    let mut item: Item = HashMap::from([
        ("pk".into(), s(format!("account#{}", r.account_id))),
        ("sk".into(), s(row_sk(r.date, &r.campaign_id))),
        ("account_id".into(), s(&r.account_id)),
        ("campaign_id".into(), s(&r.campaign_id)),
        ("campaign_name".into(), s(&r.campaign_name)),
        ("date".into(), s(r.date.to_string())),
        ("impressions".into(), n(r.impressions as i64)),
        ("clicks".into(), n(r.clicks as i64)),
        ("spend".into(), s(r.spend.to_string())),
        ("currency".into(), s(&r.currency)),
        ("expires_at".into(), n(expires_at)),
    ]);
    if let Some(m) = retailer {
        item.insert("retailer".into(), s(m));
        item.insert("retailer_sk".into(), s(format!("{}#{}#{}", r.date, r.account_id, r.campaign_id)));
    }
    item
}

fn row_of(item: &Item) -> Option<StoredRow> {
    Some(StoredRow {
        row: Row {
            account_id: text(item, "account_id")?,
            campaign_id: text(item, "campaign_id")?,
            campaign_name: text(item, "campaign_name").unwrap_or_default(),
            date: text(item, "date")?.parse().ok()?,
            impressions: num(item, "impressions")?.max(0) as u64,
            clicks: num(item, "clicks")?.max(0) as u64,
            spend: text(item, "spend")?.parse::<Decimal>().ok()?,
            currency: text(item, "currency")?,
        },
        retailer: text(item, "retailer"),
    })
}

impl DynamoInsights {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    async fn all(&self, pk: &str, from: Option<String>, to: Option<String>) -> Result<Vec<Item>, InfraError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut q = query(&self.client, &self.table).consistent_read(true).set_exclusive_start_key(start);
            q = match (&from, &to) {
                (Some(a), Some(b)) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                    .expression_attribute_values(":a", s(a))
                    .expression_attribute_values(":b", s(b)),
                _ => q.key_condition_expression("pk = :pk"),
            };
            let page = q
                .expression_attribute_values(":pk", s(pk))
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", "Query(insights)", e))?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    pub async fn accounts(&self) -> Result<Vec<AdAccount>, InfraError> {
        let items = self.all("accounts", None, None).await?;
        items.into_iter().map(|i| serde_dynamo::from_item(i).map_err(codec)).collect()
    }

    pub async fn account(&self, id: &str) -> Result<Option<AdAccount>, InfraError> {
        let out = get(&self.client, &self.table, s("accounts"), s(format!("account#{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem(account)", e))?;
        out.item.map(|i| serde_dynamo::from_item(i).map_err(codec)).transpose()
    }

    /// Registers an account (`false` if it exists).
    pub async fn add_account(&self, a: &AdAccount) -> Result<bool, InfraError> {
        let mut item: Item = serde_dynamo::to_item(a).map_err(codec)?;
        item.insert("pk".into(), s("accounts"));
        item.insert("sk".into(), s(format!("account#{}", a.id)));
        put_if_absent(&self.client, &self.table, item, "PutItem(account)").await
    }

    /// Takes the account for one pull until `until` if nobody holds it (one request in flight per account);
    /// the account as it is once taken (so the pull works on the state no other pull can change now).
    pub async fn lease(&self, id: &str, now: i64, until: i64) -> Result<Option<AdAccount>, InfraError> {
        let req = update(&self.client, &self.table, s("accounts"), s(format!("account#{id}")))
            .update_expression("SET lease_until = :u")
            .condition_expression("attribute_exists(sk) AND (attribute_not_exists(lease_until) OR lease_until = :null OR lease_until < :now)")
            .expression_attribute_values(":u", n(until))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":null", AttributeValue::Null(true))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        match req.send().await {
            Ok(out) => out.attributes.map(|i| serde_dynamo::from_item(i).map_err(codec)).transpose(),
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(account lease)", e)),
        }
    }

    /// Saves the account's pull state. `held`: the lease this pull holds; the write happens only while it
    /// still does (a pull whose lease lapsed writes nothing over a newer pull's state). `false` if not.
    pub async fn save_account(&self, a: &AdAccount, held: Option<i64>) -> Result<bool, InfraError> {
        let mut item: Item = serde_dynamo::to_item(a).map_err(codec)?;
        item.insert("pk".into(), s("accounts"));
        item.insert("sk".into(), s(format!("account#{}", a.id)));
        let mut req = put(&self.client, &self.table).set_item(Some(item));
        if let Some(l) = held {
            req = req.condition_expression("lease_until = :l").expression_attribute_values(":l", n(l));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "PutItem(account)", e)),
        }
    }

    /// Marks retailers' days whose rows are about to change, before the rows are written: a pull cut off
    /// after its writes leaves the marks, and the next pull recomputes those rollups.
    pub async fn mark_dirty(&self, days: &[(String, NaiveDate)], at: i64) -> Result<(), InfraError> {
        let items = days
            .iter()
            .map(|(r, d)| {
                HashMap::from([
                    ("pk".into(), s("dirty")),
                    ("sk".into(), s(format!("{r}#{d}"))),
                    ("retailer".into(), s(r)),
                    ("date".into(), s(d.to_string())),
                    ("marked_at".into(), n(at)),
                ])
            })
            .collect();
        self.batch_put(items).await
    }

    /// Every marked day: (retailer, date, when marked).
    pub async fn dirty(&self) -> Result<Vec<(String, NaiveDate, i64)>, InfraError> {
        let items = self.all("dirty", None, None).await?;
        Ok(items
            .iter()
            .filter_map(|i| Some((text(i, "retailer")?, text(i, "date")?.parse().ok()?, num(i, "marked_at")?)))
            .collect())
    }

    /// Clears a mark, only if it was not marked again since `at`.
    pub async fn clear_dirty(&self, retailer: &str, date: NaiveDate, at: i64) -> Result<(), InfraError> {
        let req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s("dirty"))
            .key("sk", s(format!("{retailer}#{date}")))
            .condition_expression("marked_at = :a")
            .expression_attribute_values(":a", n(at));
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(infra_error("dynamodb", "DeleteItem(dirty)", e)),
        }
    }

    /// A retailer's request to have a campaign mapped to it: pending until the platform or an operator
    /// maps it (a request gives no access to anything). `false` if this retailer asked already.
    pub async fn request_mapping(
        &self, campaign: &str, account: &str, retailer: &str, at: i64,
    ) -> Result<bool, InfraError> {
        let item: Item = HashMap::from([
            ("pk".into(), s("claims")),
            ("sk".into(), s(format!("campaign#{campaign}#{retailer}"))),
            ("campaign_id".into(), s(campaign)),
            ("account_id".into(), s(account)),
            ("retailer".into(), s(retailer)),
            ("requested_at".into(), n(at)),
            ("expires_at".into(), n(at + 90 * 86400)),
        ]);
        put_if_absent(&self.client, &self.table, item, "PutItem(claim)").await
    }

    /// Pending mapping requests: (campaign, account, retailer, requested at).
    pub async fn mapping_requests(&self) -> Result<Vec<(String, String, String, i64)>, InfraError> {
        let items = self.all("claims", None, None).await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                Some((text(i, "campaign_id")?, text(i, "account_id")?, text(i, "retailer")?, num(i, "requested_at")?))
            })
            .collect())
    }

    /// Sets only the retailer of stored rows (their values stay whatever the latest pull wrote).
    pub async fn set_row_retailer(&self, r: &Row, retailer: &str) -> Result<(), InfraError> {
        let req = update(
            &self.client,
            &self.table,
            s(format!("account#{}", r.account_id)),
            s(row_sk(r.date, &r.campaign_id)),
        )
        .update_expression("SET retailer = :r, retailer_sk = :k")
        .condition_expression("attribute_exists(sk)")
        .expression_attribute_values(":r", s(retailer))
        .expression_attribute_values(":k", s(format!("{}#{}#{}", r.date, r.account_id, r.campaign_id)));
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(row retailer)", e)),
        }
    }

    /// The stored rows of an account between two days (both included).
    pub async fn rows(&self, account: &str, since: NaiveDate, until: NaiveDate) -> Result<Vec<StoredRow>, InfraError> {
        let items = self
            .all(&format!("account#{account}"), Some(format!("row#{since}")), Some(format!("row#{until}#~")))
            .await?;
        Ok(items.iter().filter_map(row_of).collect())
    }

    /// Writes rows, 25 per call, sending again what DynamoDB leaves unprocessed.
    pub async fn put_rows(&self, rows: &[(Row, Option<String>)], expires_at: i64) -> Result<(), InfraError> {
        let items: Vec<Item> = rows.iter().map(|(r, m)| row_item(r, m.as_deref(), expires_at)).collect();
        self.batch_put(items).await
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), InfraError> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|i| {
                    PutRequest::builder()
                        .set_item(Some(i.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(codec)
                })
                .collect::<Result<_, _>>()?;
            for attempt in 0..8u32 {
                if requests.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(6))).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests.clone())
                    .send()
                    .await
                    .map_err(|e| infra_error("dynamodb", "BatchWriteItem(insights)", e))?;
                requests = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
            }
            if !requests.is_empty() {
                return Err(InfraError {
                    service: "dynamodb",
                    operation: "BatchWriteItem(insights)",
                    retryable: true,
                    source: Some("items left unprocessed".into()),
                });
            }
        }
        Ok(())
    }

    /// Campaign -> retailer, for every mapped campaign.
    pub async fn mappings(&self) -> Result<HashMap<String, String>, InfraError> {
        let items = self.all("campaigns", None, None).await?;
        Ok(items.iter().filter_map(|i| Some((text(i, "campaign_id")?, text(i, "retailer")?))).collect())
    }

    /// Maps a campaign to a retailer. `only_if_new`: refused (`false`) if it is mapped already.
    pub async fn set_mapping(
        &self, campaign: &str, account: &str, retailer: &str, source: &str, at: i64, only_if_new: bool,
    ) -> Result<bool, InfraError> {
        let item: Item = HashMap::from([
            ("pk".into(), s("campaigns")),
            ("sk".into(), s(format!("campaign#{campaign}"))),
            ("campaign_id".into(), s(campaign)),
            ("account_id".into(), s(account)),
            ("retailer".into(), s(retailer)),
            ("source".into(), s(source)),
            ("mapped_at".into(), n(at)),
            ("expires_at".into(), n(mapping_expiry(at))),
        ]);
        let mut req = put(&self.client, &self.table).set_item(Some(item));
        if only_if_new {
            req = req.condition_expression("attribute_not_exists(sk)");
        } else {
            // Mappings arrive in any order: the newest word stands.
            req = req
                .condition_expression("attribute_not_exists(sk) OR mapped_at <= :at")
                .expression_attribute_values(":at", n(at));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(infra_error("dynamodb", "PutItem(mapping)", e)),
        }
    }

    /// Records campaigns seen without a mapping (their rows are kept; they are counted and listed).
    pub async fn note_unmapped(&self, campaigns: &[(String, String)], at: i64) -> Result<(), InfraError> {
        let items = campaigns
            .iter()
            .map(|(c, a)| {
                HashMap::from([
                    ("pk".into(), s("unmapped")),
                    ("sk".into(), s(format!("campaign#{c}"))),
                    ("campaign_id".into(), s(c)),
                    ("account_id".into(), s(a)),
                    ("seen_at".into(), n(at)),
                    ("expires_at".into(), n(mapping_expiry(at))),
                ])
            })
            .collect();
        self.batch_put(items).await
    }

    /// Campaigns seen without a mapping.
    pub async fn unmapped(&self) -> Result<Vec<(String, String)>, InfraError> {
        let items = self.all("unmapped", None, None).await?;
        Ok(items.iter().filter_map(|i| Some((text(i, "campaign_id")?, text(i, "account_id")?))).collect())
    }

    pub async fn forget_unmapped(&self, campaign: &str) -> Result<(), InfraError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s("unmapped"))
            .key("sk", s(format!("campaign#{campaign}")))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra_error("dynamodb", "DeleteItem(unmapped)", e))
    }

    /// A retailer's rows between two days (the `by_retailer` index).
    pub async fn retailer_rows(
        &self, retailer: &str, since: NaiveDate, until: NaiveDate,
    ) -> Result<Vec<Row>, InfraError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = query(&self.client, &self.table)
                .index_name(BY_RETAILER)
                .key_condition_expression("retailer = :r AND retailer_sk BETWEEN :a AND :b")
                .expression_attribute_values(":r", s(retailer))
                .expression_attribute_values(":a", s(since.to_string()))
                .expression_attribute_values(":b", s(format!("{until}#~")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| infra_error("dynamodb", "Query(by_retailer)", e))?;
            out.extend(page.items.unwrap_or_default().iter().filter_map(row_of).map(|r| r.row));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Replaces a retailer's rollups of `date` (one per currency; currencies with no rows left are removed).
    /// Writes nothing when they are as stored; `true` if anything changed.
    pub async fn put_rollups(
        &self, retailer: &str, date: NaiveDate, rollups: &HashMap<String, Rollup>, expires_at: i64,
    ) -> Result<bool, InfraError> {
        let pk = format!("retailer#{retailer}");
        let existing = self.all(&pk, Some(format!("day#{date}#")), Some(format!("day#{date}#~"))).await?;
        let mut stored: HashMap<String, Rollup> = HashMap::new();
        for item in &existing {
            let Some(currency) = text(item, "currency") else { continue };
            if !rollups.contains_key(&currency) {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s(format!("day#{date}#{currency}")))
                    .send()
                    .await
                    .map_err(|e| infra_error("dynamodb", "DeleteItem(rollup)", e))?;
                stored.insert(currency, Rollup::default());
                continue;
            }
            let r = Rollup {
                impressions: num(item, "impressions").unwrap_or(0).max(0) as u64,
                clicks: num(item, "clicks").unwrap_or(0).max(0) as u64,
                spend: text(item, "spend").and_then(|v| v.parse().ok()).unwrap_or_default(),
                campaigns: num(item, "campaigns").unwrap_or(0).max(0) as u32,
            };
            stored.insert(currency, r);
        }
        let changed: Vec<(&String, &Rollup)> = rollups.iter().filter(|(c, r)| stored.get(*c) != Some(*r)).collect();
        let removed = existing.len() > rollups.iter().filter(|(c, _)| stored.contains_key(*c)).count();
        let items = changed
            .iter()
            .map(|(currency, r)| {
                let mut item: Item = HashMap::from([
                    ("pk".into(), s(&pk)),
                    ("sk".into(), s(format!("day#{date}#{currency}"))),
                    ("date".into(), s(date.to_string())),
                    ("currency".into(), s(currency.as_str())),
                    ("impressions".into(), n(r.impressions as i64)),
                    ("clicks".into(), n(r.clicks as i64)),
                    ("spend".into(), s(r.spend.to_string())),
                    ("campaigns".into(), n(i64::from(r.campaigns))),
                    ("expires_at".into(), n(expires_at)),
                ]);
                if let Some(c) = r.ctr() {
                    item.insert("ctr".into(), s(c.to_string()));
                }
                if let Some(c) = r.cpc() {
                    item.insert("cpc".into(), s(c.to_string()));
                }
                item
            })
            .collect();
        let any = !changed.is_empty() || removed;
        self.batch_put(items).await?;
        Ok(any)
    }

    /// A retailer's rollups between two days: (date, currency, rollup).
    pub async fn rollups(
        &self, retailer: &str, since: NaiveDate, until: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, Rollup)>, InfraError> {
        let items = self
            .all(&format!("retailer#{retailer}"), Some(format!("day#{since}")), Some(format!("day#{until}#~")))
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                Some((
                    text(i, "date")?.parse().ok()?,
                    text(i, "currency")?,
                    Rollup {
                        impressions: num(i, "impressions")?.max(0) as u64,
                        clicks: num(i, "clicks")?.max(0) as u64,
                        spend: text(i, "spend")?.parse().ok()?,
                        campaigns: num(i, "campaigns").unwrap_or(0).max(0) as u32,
                    },
                ))
            })
            .collect())
    }

    /// The app-wide pause (epoch seconds), if one is set.
    pub async fn app_throttle(&self) -> Result<Option<i64>, InfraError> {
        let out = get(&self.client, &self.table, s("app"), s("throttle"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| infra_error("dynamodb", "GetItem(app throttle)", e))?;
        Ok(out.item.and_then(|i| num(&i, "until")))
    }

    /// Pauses every account's pulls until `until` (never shortens a longer pause).
    pub async fn set_app_throttle(&self, until: i64) -> Result<(), InfraError> {
        let req = update(&self.client, &self.table, s("app"), s("throttle"))
            .update_expression("SET #u = :u")
            .condition_expression("attribute_not_exists(#u) OR #u < :u")
            .expression_attribute_names("#u", "until")
            .expression_attribute_values(":u", n(until));
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(infra_error("dynamodb", "UpdateItem(app throttle)", e)),
        }
    }
}
