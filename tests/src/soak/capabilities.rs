//! The later capabilities in the soak, through the same runner, faults and cut-offs as the webhooks:
//! marketplace polling (each soak merchant connected to the Amazon, eBay and bol stand-ins of the runner),
//! forwarding (an endpoint per merchant for its order events, one for the storefront's payment events, all
//! on a local receiver that checks each delivery's Standard Webhooks signature) and ad insights (ad
//! accounts pulled from the runner's Graph stand-in). The polls and pulls are fired on their schedules'
//! names every few seconds during the run, so re-polls of unchanged orders and re-pulls happen under
//! faults too.
//!
//! Set up directly in the tables (outside the fault layer): registering through the merchant API is tested
//! on its own; here the point is what the functions do with it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration as D, NaiveDate, Utc};
use nex_shared::adapters::dynamo_connections::{DynamoConnections, SecretsCredentials};
use nex_shared::adapters::dynamo_insights::{AdAccount, DynamoInsights};
use nex_shared::adapters::dynamo_webhooks::DynamoWebhooks;
use nex_shared::adapters::webhook_delivery::SecretsSigning;
use nex_shared::domain::orders::connection::Connection;
use nex_shared::domain::orders::Marketplace;
use nex_shared::domain::webhooks;
use nex_shared::ports::{Credentials, Endpoint};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{scan_all, text, Tally};

/// The orders each stand-in serves (`infra/nex-local/src/marketplaces.rs`), the same for every connection.
const ORDERS: [(Marketplace, &[&str]); 3] = [
    (Marketplace::Amazon, &["303-0000001-0000001", "303-0000002-0000002", "303-0000003-0000003"]),
    (Marketplace::Ebay, &["05-00000-00001", "05-00000-00002"]),
    (Marketplace::Bol, &["B100000001", "B100000002"]),
];

/// One delivery as the receiver got it.
#[derive(Debug, Clone)]
struct Got {
    endpoint: String,
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
}

impl Respond for Receiver {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let h = |k: &str| req.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        self.got.lock().unwrap().push(Got {
            endpoint: req.url.path().trim_start_matches("/hook/").to_owned(),
            id: h("webhook-id"),
            timestamp: h("webhook-timestamp").parse().unwrap_or(0),
            signature: h("webhook-signature"),
            body: req.body.clone(),
        });
        ResponseTemplate::new(204)
    }
}

/// What is not finished yet, and whether firing the polls and pulls again would help finish it.
#[derive(Debug)]
pub struct Unsettled {
    pub why: String,
    pub refire: bool,
}

pub struct Capabilities {
    server: MockServer,
    receiver: Receiver,
    /// Endpoint id -> (merchant, signing secret).
    endpoints: HashMap<String, (String, String)>,
    /// The storefront's endpoint for payment events.
    payments_endpoint: Option<String>,
    merchants: Vec<String>,
    connections: HashSet<String>,
    accounts: Vec<String>,
    webhooks: DynamoWebhooks,
    connections_store: DynamoConnections,
    insights: DynamoInsights,
    tables: HashMap<&'static str, String>,
}

/// The runner's stand-ins for the functions' platform base URLs (as `infra/dev.sh` provisions them).
pub fn stand_in(var: &str, local: &str) -> Option<String> {
    let at = match var {
        "AMAZON_LWA_URL" | "AMAZON_SP_API_URL" => "amazon",
        "EBAY_AUTH_URL" | "EBAY_API_URL" => "ebay",
        "BOL_LOGIN_URL" | "BOL_API_URL" => "bol",
        "GRAPH_API_BASE_URL" => "meta",
        _ => return None,
    };
    Some(format!("{local}/_local/{at}"))
}

impl Capabilities {
    /// Registers the endpoints, connections and ad accounts of this run (`tag` names them).
    pub async fn setup(
        sdk: &aws_config::SdkConfig, raw: &Value, secret_prefix: &str, tag: &str, merchants: usize, accounts: usize,
        storefront: &str,
    ) -> Self {
        let table = |logical: &str| raw["tables"][logical].as_str().expect("table").to_owned();
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let sm = aws_sdk_secretsmanager::Client::new(sdk);
        let server = MockServer::start().await;
        let receiver = Receiver::default();
        Mock::given(wiremock::matchers::method("POST")).respond_with(receiver.clone()).mount(&server).await;
        let mut me = Self {
            server,
            receiver,
            endpoints: HashMap::new(),
            payments_endpoint: None,
            merchants: Vec::new(),
            connections: HashSet::new(),
            accounts: Vec::new(),
            webhooks: DynamoWebhooks::new(ddb.clone(), table("WebhooksTable")),
            connections_store: DynamoConnections::new(ddb.clone(), table("ConnectionsTable")),
            insights: DynamoInsights::new(ddb, table("InsightsTable")),
            tables: HashMap::from([("orders", table("OrdersTable")), ("webhooks", table("WebhooksTable"))]),
        };
        if merchants + accounts == 0 {
            return me;
        }
        let signing = SecretsSigning::new(sm.clone());
        let credentials = SecretsCredentials::new(sm);
        if !storefront.is_empty() {
            me.payments_endpoint = Some(me.endpoint(&signing, secret_prefix, storefront, &["payment.updated"]).await);
        }
        for k in 0..merchants {
            let merchant = format!("merchant-soak{tag}-{k:03}");
            me.endpoint(&signing, secret_prefix, &merchant, &["order.created", "order.updated"]).await;
            for (marketplace, _) in &ORDERS {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let creds = match marketplace {
                    Marketplace::Bol => Credentials {
                        client_id: Some("soak-bol-client".into()),
                        client_secret: Some(SecretString::from("soak-bol-secret".to_owned())),
                        ..Credentials::default()
                    },
                    _ => Credentials {
                        refresh_token: Some(SecretString::from("soak-refresh-token".to_owned())),
                        ..Credentials::default()
                    },
                };
                let secret_id =
                    credentials.create(&format!("nex-local/connections/{id}"), &creds).await.expect("secret");
                let sites = match marketplace {
                    Marketplace::Amazon => vec!["A1PA6795UKMFR9".to_owned()],
                    Marketplace::Ebay => vec!["EBAY_DE".to_owned()],
                    Marketplace::Bol => vec!["NL".to_owned()],
                };
                let c = Connection::new(
                    id.clone(),
                    merchant.clone(),
                    *marketplace,
                    format!("SOAK{k:03}"),
                    sites,
                    secret_id,
                    Utc::now() - D::hours(1),
                );
                me.connections_store.create(&c).await.expect("connection");
                me.connections.insert(id);
            }
            me.merchants.push(merchant);
        }
        let digits: String = tag.chars().filter(char::is_ascii_digit).take(6).collect();
        for k in 0..accounts {
            let id = format!("9{digits}{k:04}");
            assert!(me.insights.add_account(&AdAccount::new(&id)).await.expect("account"), "a fresh account");
            me.accounts.push(id);
        }
        me
    }

    async fn endpoint(&mut self, signing: &SecretsSigning, prefix: &str, merchant: &str, types: &[&str]) -> String {
        let id = format!("ep_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let secret = webhooks::new_secret();
        let secret_id = signing.create(&format!("{prefix}{id}"), &secret).await.expect("CreateSecret");
        let e = Endpoint {
            merchant: merchant.to_owned(),
            id: id.clone(),
            url: format!("{}/hook/{id}", self.server.uri()),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            description: "soak".into(),
            enabled: true,
            disabled_reason: None,
            secret_id,
            secret_version: 0,
            created_at: Utc::now().timestamp(),
            failing_since: None,
            last_success_at: None,
            last_failure_at: None,
            paused_until: None,
        };
        assert!(self.webhooks.put_endpoint(&e).await.expect("PutItem(endpoint)"), "a fresh endpoint id");
        self.endpoints.insert(id.clone(), (merchant.to_owned(), secret));
        id
    }

    pub fn active(&self) -> bool {
        !self.endpoints.is_empty() || !self.accounts.is_empty()
    }

    /// Every connection polled to the end, every account pulled with nothing pending, and none of this run's
    /// deliveries still pending (a delivery whose job was lost waits for the due index's backstop).
    pub async fn settled(&self, ddb: &aws_sdk_dynamodb::Client) -> Result<(), Unsettled> {
        let refire = |why: String| Unsettled { why, refire: true };
        let all = self.connections_store.all().await.map_err(|e| refire(format!("connections: {e:?}")))?;
        let polled = all.iter().filter(|c| self.connections.contains(&c.id) && c.last_success.is_some()).count();
        if polled < self.connections.len() {
            return Err(refire(format!("{polled} of {} connections polled", self.connections.len())));
        }
        for a in &self.accounts {
            match self.insights.account(a).await {
                Ok(Some(acc)) if acc.last_success_at.is_some() && acc.pending.is_empty() && acc.job.is_none() => {}
                Ok(_) => return Err(refire(format!("ad account {a} not pulled yet"))),
                Err(e) => return Err(refire(format!("ad account {a}: {e:?}"))),
            }
        }
        let pending = self.deliveries(ddb).await.iter().filter(|i| text(i, "state") == "pending").count();
        if pending > 0 {
            // The forwarder's own schedule and backstop finish these: a poll would only add work.
            return Err(Unsettled { why: format!("{pending} deliveries pending"), refire: false });
        }
        Ok(())
    }

    async fn deliveries(&self, ddb: &aws_sdk_dynamodb::Client) -> Vec<HashMap<String, AttributeValue>> {
        scan_all(ddb, &self.tables["webhooks"])
            .await
            .into_iter()
            .filter(|i| {
                text(i, "sk")
                    .strip_prefix("delivery#")
                    .and_then(|r| r.split('#').next())
                    .is_some_and(|ep| self.endpoints.contains_key(ep))
            })
            .collect()
    }

    /// Tallies this run's rows; `paid` are the storefront's paid checkouts (payment keys). Returns notes for
    /// the report (resends under the same id, which a receiver drops by `webhook-id`, and bad signatures).
    pub async fn reconcile(&self, ddb: &aws_sdk_dynamodb::Client, paid: &[String], tally: &mut Tally) -> Vec<String> {
        if !self.active() {
            return Vec::new();
        }
        // Orders and their events.
        let mine: HashSet<String> = self.merchants.iter().map(|m| format!("merchant#{m}")).collect();
        let orders: Vec<_> =
            scan_all(ddb, &self.tables["orders"]).await.into_iter().filter(|i| mine.contains(text(i, "pk"))).collect();
        let mut stored: HashSet<(String, String)> = HashSet::new();
        let mut created: HashMap<(String, String), u64> = HashMap::new();
        let mut events: Vec<(String, String)> = Vec::new();
        for i in &orders {
            let (pk, sk) = (text(i, "pk").to_owned(), text(i, "sk"));
            if let Some(o) = sk.strip_prefix("order#") {
                stored.insert((pk, o.to_owned()));
            } else if let Some(e) = sk.strip_prefix("event#") {
                // event#<marketplace>#<id>#<ms>
                let order = e.rsplit_once('#').map(|(o, _)| o).unwrap_or(e).to_owned();
                if text(i, "event_type") == "order.created" {
                    *created.entry((pk.clone(), order)).or_default() += 1;
                }
                events.push((pk.trim_start_matches("merchant#").to_owned(), text(i, "event_id").to_owned()));
            }
        }
        for m in &self.merchants {
            let pk = format!("merchant#{m}");
            for (marketplace, ids) in &ORDERS {
                for id in *ids {
                    let key = (pk.clone(), format!("{}#{id}", marketplace.as_str()));
                    tally.add("Marketplace: order stored", u64::from(stored.contains(&key)), 1);
                    tally.add("Marketplace: order.created event", *created.get(&key).unwrap_or(&0), 1);
                }
            }
        }

        // What the receiver got: verified, per endpoint and webhook-id.
        let got = self.receiver.got.lock().unwrap().clone();
        let (mut received, mut unverified, mut resent) = (HashMap::<(String, String), u64>::new(), 0u64, 0u64);
        let mut payment_ids: HashMap<String, HashSet<String>> = HashMap::new();
        for g in &got {
            let Some((merchant, secret)) = self.endpoints.get(&g.endpoint) else { continue };
            let good = webhooks::key_of(secret).is_some_and(|k| {
                let want = webhooks::sign(&k, &g.id, g.timestamp, &g.body);
                g.signature.split(' ').any(|s| s == want)
            });
            if !good {
                unverified += 1;
                continue;
            }
            let n = received.entry((merchant.clone(), g.id.clone())).or_default();
            *n += 1;
            if *n > 1 {
                resent += 1;
            }
            if Some(&g.endpoint) == self.payments_endpoint.as_ref() {
                let body: Value = serde_json::from_slice(&g.body).unwrap_or_default();
                let key = body["data"]["payment_key"].as_str().unwrap_or_default().to_owned();
                payment_ids.entry(key).or_default().insert(g.id.clone());
            }
        }
        let deliveries = self.deliveries(ddb).await;
        let states = |state: &str| deliveries.iter().filter(|i| text(i, "state") == state).count();
        let (pending, failed) = (states("pending"), states("failed"));
        let delivered: HashSet<String> = deliveries
            .iter()
            .filter(|i| text(i, "state") == "succeeded")
            .filter_map(|i| text(i, "sk").splitn(3, '#').nth(2).map(str::to_owned))
            .collect();
        for (merchant, event_id) in &events {
            let seen = received.contains_key(&(merchant.clone(), event_id.clone()));
            tally.add("Forwarding: order event delivered, signed", u64::from(seen && delivered.contains(event_id)), 1);
        }
        if let Some(storefront) = self.payments_endpoint.as_ref().and_then(|e| self.endpoints.get(e)).map(|e| &e.0) {
            for key in paid {
                let ids = payment_ids.get(key).map_or(0, |s| s.len() as u64);
                let seen = payment_ids
                    .get(key)
                    .is_some_and(|s| s.iter().all(|id| received.contains_key(&(storefront.clone(), id.clone()))));
                tally.add("Forwarding: payment.updated delivered, signed", if seen { ids } else { 0 }, 1);
            }
        }

        // Ad insights: the days both sides of the accounts' (UTC+1) midnight would pull, with Meta's values.
        let today = (Utc::now() + D::hours(1)).date_naive();
        let (since, until) = (today - D::days(26), today - D::days(1));
        for a in &self.accounts {
            let rows = self.insights.rows(a, since, until).await.unwrap_or_default();
            let by_key: HashMap<(NaiveDate, String), _> =
                rows.iter().map(|r| ((r.row.date, r.row.campaign_id.clone()), &r.row)).collect();
            let mut d = since;
            while d <= until {
                for (i, (campaign, _)) in nex_local::meta_insights::CAMPAIGNS.iter().enumerate() {
                    let (impressions, clicks, cents) = nex_local::meta_insights::day_values(d, i);
                    let right = by_key.get(&(d, campaign.to_string())).is_some_and(|r| {
                        r.impressions == impressions && r.clicks == clicks && r.spend == Decimal::new(cents as i64, 2)
                    });
                    tally.add("Insights: campaign day stored, Meta's values", u64::from(right), 1);
                }
                d += D::days(1);
            }
        }
        vec![
            format!(
                "forwarding: {} deliveries received, {resent} of them again under the same webhook-id (at least once: \
                 the receiver drops them by id), {unverified} with a signature that did not verify; deliveries \
                 still pending {pending}, failed {failed}",
                got.len()
            ),
            format!(
                "marketplaces: {} connections of {} merchants polled in {ROUNDS} rounds {} s apart (and again while \
                 any was unpolled); insights: {} ad accounts alike",
                self.connections.len(),
                self.merchants.len(),
                FIRE_EVERY.as_secs(),
                self.accounts.len()
            ),
        ]
    }

    /// Removes this run's endpoints, so a later run on the same stack does not deliver to a receiver gone.
    pub async fn retire(&self) {
        for (id, (merchant, _)) in &self.endpoints {
            let _ = self.webhooks.delete_endpoint(merchant, id).await;
        }
    }
}

/// How often the soak fires the polls and pulls (`Poll`, `Pull`) while it runs, and how many rounds.
pub const FIRE_EVERY: std::time::Duration = std::time::Duration::from_secs(45);
pub const ROUNDS: usize = 3;
