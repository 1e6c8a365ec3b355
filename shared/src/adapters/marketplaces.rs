//! [`OrderSource`] for each marketplace, over HTTPS (reqwest with rustls). Every base URL comes from
//! configuration, so tests and the local stack point them at stand-ins.
//!
//! Failures are classified by status, never by the platform's text (which may quote the request):
//! 429 rate limited (with `Retry-After` when sent), 401/403 unauthorized, 5xx and transport errors
//! transient, other 4xx and undocumented bodies permanent.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::orders::connection::{Budget, Connection, Cursor, FIRST_LOOKBACK};
use crate::domain::orders::{amazon, bol, ebay, Marketplace, Normalised};
use crate::ports::{AccessToken, Credentials, Listed, Listing, OrderSource, SourceError};

/// One HTTP client for the platform calls: short connect timeout, bounded total time.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a TLS client with timeouts builds (rustls needs no system state)")
}

/// An app's own credentials at a marketplace (the suite's, not a merchant's).
#[derive(Clone)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl AppCredentials {
    /// From an app secret's JSON (`client_id`, `client_secret`, anything else ignored); `None` if it is
    /// not that.
    pub fn parse(value: &SecretString) -> Option<Self> {
        #[derive(Deserialize)]
        struct App {
            client_id: String,
            client_secret: String,
        }
        let app: App = serde_json::from_str(value.expose_secret()).ok()?;
        Some(AppCredentials { client_id: app.client_id, client_secret: SecretString::from(app.client_secret) })
    }
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get("retry-after")?.to_str().ok()?.trim().parse().ok()
}

/// The class of a non-2xx answer.
fn refusal(status: u16, headers: &reqwest::header::HeaderMap) -> SourceError {
    match status {
        429 => SourceError::RateLimited { retry_after: retry_after(headers) },
        401 | 403 => SourceError::Unauthorized,
        408 | 500..=599 => SourceError::Transient("server error"),
        404 => SourceError::Permanent(NOT_FOUND),
        _ => SourceError::Permanent("refused request"),
    }
}

fn transport(e: &reqwest::Error) -> SourceError {
    if e.is_timeout() {
        SourceError::Transient("timeout")
    } else {
        SourceError::Transient("transport")
    }
}

/// Sends `req`; a 2xx body parsed as `T`, else the refusal's class.
async fn call<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
) -> Result<(T, reqwest::header::HeaderMap), SourceError> {
    let res = req.send().await.map_err(|e| transport(&e))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    if !(200..300).contains(&status) {
        return Err(refusal(status, &headers));
    }
    let bytes = capped(res).await?;
    // bol answers an empty list as `{}`; an empty body is an empty object too.
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
    let parsed = serde_json::from_slice(bytes).map_err(|_| SourceError::Permanent("undocumented body"))?;
    Ok((parsed, headers))
}

/// The class of a 404: the one permanent refusal that is about one order, not about the request.
pub const NOT_FOUND: &str = "not found";

/// The largest answer read from a platform: a page of 100 orders is well under 1 MB.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// The body, read a chunk at a time and refused past [`MAX_ANSWER_BYTES`] (a hostile or broken answer
/// must not exhaust the function's memory).
async fn capped(mut res: reqwest::Response) -> Result<Vec<u8>, SourceError> {
    if res.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
        return Err(SourceError::Permanent("answer too large"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| transport(&e))? {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(SourceError::Permanent("answer too large"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The page without its orders (its paging fields), and its orders typed one by one: an order that is not
/// in the documented shape is counted and skipped, and holds up neither its page nor the connection.
fn split<P: serde::de::DeserializeOwned, T: serde::de::DeserializeOwned>(
    mut raw: serde_json::Value, invalid: &mut u32,
) -> Result<(P, Vec<T>, usize), SourceError> {
    let orders = match raw.as_object_mut().and_then(|o| o.remove("orders")) {
        Some(serde_json::Value::Array(a)) => a,
        Some(serde_json::Value::Null) | None => Vec::new(),
        Some(_) => return Err(SourceError::Permanent("undocumented body")),
    };
    let n = orders.len();
    let page = serde_json::from_value(raw).map_err(|_| SourceError::Permanent("undocumented body"))?;
    Ok((page, each(orders, invalid), n))
}

fn each<T: serde::de::DeserializeOwned>(orders: Vec<serde_json::Value>, invalid: &mut u32) -> Vec<T> {
    orders
        .into_iter()
        .filter_map(|o| match serde_json::from_value(o) {
            Ok(t) => Some(t),
            Err(_) => {
                *invalid += 1;
                None
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// A token endpoint's answer. OAuth refusals of the grant (`invalid_grant`, `invalid_client`) come as
/// 400/401: both mean the credentials no longer work.
async fn token_call(req: reqwest::RequestBuilder, default_life: i64) -> Result<AccessToken, SourceError> {
    let res = req.send().await.map_err(|e| transport(&e))?;
    let status = res.status().as_u16();
    if status == 400 || status == 401 || status == 403 {
        return Err(SourceError::Unauthorized);
    }
    if !(200..300).contains(&status) {
        return Err(refusal(status, res.headers()));
    }
    let t: TokenAnswer =
        serde_json::from_slice(&capped(res).await?).map_err(|_| SourceError::Permanent("undocumented token answer"))?;
    let life = t.expires_in.unwrap_or(default_life).clamp(60, 86_400);
    Ok(AccessToken { token: SecretString::from(t.access_token), expires_at: Utc::now() + Duration::seconds(life) })
}

/// `url` with `query` percent-encoded (so `[`, `]`, `:` and `,` in values are encoded, as eBay's filter needs).
fn with_query<'a>(url: String, query: impl IntoIterator<Item = &'a (&'a str, String)>) -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.into_iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    format!("{url}?{q}")
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn normalised(r: Result<Normalised, crate::domain::orders::Invalid>, invalid: &mut u32) -> Option<Listed> {
    match r {
        Ok(n) => Some(Listed::Full(Box::new(n))),
        Err(e) => {
            tracing::warn!(marketplace = %e.marketplace, field = e.field, "order skipped: not normalisable");
            *invalid += 1;
            None
        }
    }
}

// ------------------------------------------------------------------------------------------- Amazon

/// Amazon SP-API: LWA tokens and the Orders API 2026-01-01 `searchOrders`.
#[derive(Clone)]
pub struct AmazonSource {
    pub http: reqwest::Client,
    pub lwa_url: String,
    pub api_url: String,
    pub app: AppCredentials,
}

/// What `searchOrders` is asked to include: buyer, recipient, fulfilment and packages in the same call.
pub const AMAZON_INCLUDED: &str = "BUYER,RECIPIENT,FULFILLMENT,PACKAGES,PROCEEDS";

impl OrderSource for AmazonSource {
    fn budget(&self) -> Budget {
        Budget { rate: 0.0056, burst: 20.0 }
    }

    /// From the watermark to two minutes before now (the orders API's lag).
    fn window(&self, watermark: Option<DateTime<Utc>>, created: DateTime<Utc>, now: DateTime<Utc>) -> Cursor {
        let to = now - Duration::minutes(2);
        let from = watermark.unwrap_or(created - FIRST_LOOKBACK).min(to);
        Cursor { from, to, position: None }
    }

    async fn token(&self, c: &Credentials) -> Result<AccessToken, SourceError> {
        let refresh = c.refresh_token.as_ref().ok_or(SourceError::Unauthorized)?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret()),
            ("client_id", self.app.client_id.as_str()),
            ("client_secret", self.app.client_secret.expose_secret()),
        ];
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let req = self
            .http
            .post(format!("{}/auth/o2/token", base(&self.lwa_url)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        token_call(req, 3600).await
    }

    async fn list(&self, token: &SecretString, c: &Connection, cursor: &Cursor) -> Result<Listing, SourceError> {
        // Every parameter the same on every page of a window; the token is added to them.
        let mut query = vec![
            ("marketplaceIds", c.sites.join(",")),
            ("lastUpdatedAfter", iso(cursor.from)),
            ("lastUpdatedBefore", iso(cursor.to)),
            ("includedData", AMAZON_INCLUDED.to_owned()),
            ("maxResultsPerPage", "100".to_owned()),
        ];
        if let Some(p) = &cursor.position {
            query.push(("paginationToken", p.clone()));
        }
        let req = self
            .http
            .get(with_query(format!("{}/orders/2026-01-01/orders", base(&self.api_url)), &query))
            .header("x-amz-access-token", token.expose_secret())
            .header("accept", "application/json");
        let (raw, headers): (serde_json::Value, _) = call(req).await?;
        let mut invalid = 0;
        let (page, typed, n): (amazon::SearchOrders, Vec<amazon::ApiOrder>, _) = split(raw, &mut invalid)?;
        if n > 0 && typed.is_empty() {
            return Err(SourceError::Permanent("no order of the page in the documented shape"));
        }
        let orders = typed.iter().filter_map(|o| normalised(amazon::normalise(o), &mut invalid)).collect();
        Ok(Listing {
            orders,
            invalid,
            next: page.next_token().map(str::to_owned),
            window_to: page.last_updated_before(),
            pause: None,
            rate: headers.get("x-amzn-ratelimit-limit").and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok()),
        })
    }

    async fn detail(&self, _t: &SecretString, _c: &Connection, _id: &str) -> Result<Normalised, SourceError> {
        Err(SourceError::Permanent("searchOrders lists whole orders"))
    }
}

// --------------------------------------------------------------------------------------------- eBay

/// eBay: OAuth refresh-token grant and the Fulfillment API `getOrders`.
#[derive(Clone)]
pub struct EbaySource {
    pub http: reqwest::Client,
    pub auth_url: String,
    pub api_url: String,
    pub app: AppCredentials,
}

/// The scope the poller asks for: reading orders, nothing else.
pub const EBAY_SCOPE: &str = "https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly";
/// What a merchant consents to: reading orders, and who the account is (`getUser`, to bind the
/// connection to the account the merchant declared).
pub const EBAY_CONSENT_SCOPES: &str = "https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly https://api.ebay.com/oauth/api_scope/commerce.identity.readonly";
/// eBay's largest page (more fails rather than clamps).
pub const EBAY_LIMIT: usize = 200;
/// Orders re-read at each page boundary: the set moves while it is paged (an order modified meanwhile
/// leaves the window, and the next page starts earlier than its offset says).
pub const EBAY_OVERLAP: usize = 20;

impl OrderSource for EbaySource {
    fn budget(&self) -> Budget {
        // The Fulfillment API's daily call limit is large; a call every few seconds is well within it.
        Budget { rate: 0.5, burst: 20.0 }
    }

    /// From two minutes before the watermark (eBay's own guidance) to two minutes before now.
    fn window(&self, watermark: Option<DateTime<Utc>>, created: DateTime<Utc>, now: DateTime<Utc>) -> Cursor {
        let to = now - Duration::minutes(2);
        let from = watermark.map_or(created - FIRST_LOOKBACK, |w| w - Duration::minutes(2)).min(to);
        Cursor { from, to, position: None }
    }

    async fn token(&self, c: &Credentials) -> Result<AccessToken, SourceError> {
        let refresh = c.refresh_token.as_ref().ok_or(SourceError::Unauthorized)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose_secret()),
                ("scope", EBAY_SCOPE),
            ])
            .finish();
        let req = self
            .http
            .post(format!("{}/identity/v1/oauth2/token", base(&self.auth_url)))
            .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose_secret()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        token_call(req, 7200).await
    }

    async fn list(&self, token: &SecretString, _c: &Connection, cursor: &Cursor) -> Result<Listing, SourceError> {
        let offset: usize = cursor.position.as_deref().and_then(|p| p.parse().ok()).unwrap_or(0);
        // Only `lastmodifieddate` (with `creationdate` too, eBay would use that one alone).
        let filter = format!("lastmodifieddate:[{}..{}]", iso(cursor.from), iso(cursor.to));
        let query = [("filter", filter), ("limit", EBAY_LIMIT.to_string()), ("offset", offset.to_string())];
        let req = self
            .http
            .get(with_query(format!("{}/sell/fulfillment/v1/order", base(&self.api_url)), &query))
            .bearer_auth(token.expose_secret())
            .header("accept", "application/json");
        let (raw, _): (serde_json::Value, _) = call(req).await?;
        let mut invalid = 0;
        let (page, typed, n): (ebay::OrderPage, Vec<ebay::ApiOrder>, _) = split(raw, &mut invalid)?;
        if n > 0 && typed.is_empty() {
            return Err(SourceError::Permanent("no order of the page in the documented shape"));
        }
        let orders = typed.iter().filter_map(|o| normalised(ebay::normalise(o), &mut invalid)).collect();
        let total = page.total.unwrap_or(0) as usize;
        let next = (n > 0 && offset + n < total)
            .then(|| (offset + n).saturating_sub(EBAY_OVERLAP).max(offset + 1).to_string());
        Ok(Listing { orders, invalid, next, window_to: Some(cursor.to), pause: None, rate: None })
    }

    async fn detail(&self, _t: &SecretString, _c: &Connection, _id: &str) -> Result<Normalised, SourceError> {
        Err(SourceError::Permanent("getOrders lists whole orders"))
    }
}

// ---------------------------------------------------------------------------------------------- bol

/// bol.com Retailer API v10: client-credentials tokens, the changed-orders list and each order.
#[derive(Clone)]
pub struct BolSource {
    pub http: reqwest::Client,
    pub login_url: String,
    pub api_url: String,
    /// The orders resources' media type (`application/vnd.retailer.v10+json`), configurable per resource.
    pub orders_media_type: String,
}

/// bol's page size.
pub const BOL_PAGE: usize = 50;
/// How far back a new bol connection looks.
pub const BOL_FIRST_LOOKBACK: Duration = Duration::days(2);
/// `change-interval-minute` goes up to 60.
pub const BOL_MAX_INTERVAL: i64 = 60;

/// Where a bol window is: the page, and in the fallback the day (`latest-change-date`).
fn bol_position(p: Option<&str>) -> (Option<chrono::NaiveDate>, u32) {
    let p = p.unwrap_or("");
    let mut day = None;
    let mut page = 1;
    for part in p.split(';') {
        if let Some(d) = part.strip_prefix("d=") {
            day = d.parse().ok();
        } else if let Some(n) = part.strip_prefix("p=") {
            page = n.parse().unwrap_or(1).max(1);
        }
    }
    (day, page)
}

impl BolSource {
    /// The list query for a window: `change-interval-minute` while the gap is short enough, else the
    /// day-by-day `latest-change-date` fallback; always `status=ALL` so shipped and cancelled changes
    /// are seen too.
    pub fn query(cursor: &Cursor, now: DateTime<Utc>) -> (Vec<(&'static str, String)>, Option<chrono::NaiveDate>, u32) {
        let (day, page) = bol_position(cursor.position.as_deref());
        // Counted back from the call itself: a first call deferred (a 429, an empty budget) still reaches
        // back to the window's start.
        let gap = (now.max(cursor.to) - cursor.from).num_minutes() + 1;
        let mut q =
            vec![("fulfilment-method", "ALL".to_owned()), ("status", "ALL".to_owned()), ("page", page.to_string())];
        // The interval counts back from the call, so it is only used for a window read in one call; a window
        // of more pages is paged by day (an absolute key), which a later job can resume without a gap.
        if gap < BOL_MAX_INTERVAL && day.is_none() && page == 1 {
            q.push(("change-interval-minute", gap.max(1).to_string()));
            (q, None, page)
        } else {
            let day = day.unwrap_or(cursor.from.date_naive()).max((cursor.to - Duration::days(90)).date_naive());
            q.push(("latest-change-date", day.format("%Y-%m-%d").to_string()));
            (q, Some(day), page)
        }
    }
}

impl OrderSource for BolSource {
    fn budget(&self) -> Budget {
        // GET /retailer/orders: 7 requests per 3 minutes.
        Budget { rate: 7.0 / 180.0, burst: 7.0 }
    }

    /// From the watermark to now (bol's interval counts back from the call). A new connection looks back
    /// two days: bol lists handled orders for 48 hours only (open ones until they are handled), and each
    /// day of the fallback is a call of a budget of 7 per 3 minutes.
    fn window(&self, watermark: Option<DateTime<Utc>>, created: DateTime<Utc>, now: DateTime<Utc>) -> Cursor {
        Cursor { from: watermark.unwrap_or(created - BOL_FIRST_LOOKBACK).min(now), to: now, position: None }
    }

    async fn token(&self, c: &Credentials) -> Result<AccessToken, SourceError> {
        let id = c.client_id.as_deref().ok_or(SourceError::Unauthorized)?;
        let secret = c.client_secret.as_ref().ok_or(SourceError::Unauthorized)?;
        let req = self
            .http
            .post(format!("{}/token?grant_type=client_credentials", base(&self.login_url)))
            .basic_auth(id, Some(secret.expose_secret()))
            .header("accept", "application/json");
        token_call(req, 299).await
    }

    async fn list(&self, token: &SecretString, _c: &Connection, cursor: &Cursor) -> Result<Listing, SourceError> {
        let (query, day, page) = Self::query(cursor, Utc::now());
        let req = self
            .http
            .get(with_query(format!("{}/retailer/orders", base(&self.api_url)), &query))
            .bearer_auth(token.expose_secret())
            .header("accept", &self.orders_media_type);
        let (raw, headers): (serde_json::Value, _) = call(req).await?;
        let mut invalid = 0;
        let (_, listed, n): (serde::de::IgnoredAny, Vec<bol::ReducedOrder>, _) = split(raw, &mut invalid)?;
        let orders = listed
            .iter()
            .filter_map(|o| match crate::domain::orders::order_id(Marketplace::Bol, o.order_id.as_deref()) {
                Ok(id) => Some(Listed::Ref {
                    sort_key: format!("order#{}#{id}", Marketplace::Bol),
                    order_id: id,
                    changed_at: o.changed_at(),
                }),
                Err(_) => {
                    invalid += 1;
                    None
                }
            })
            .collect();
        let next = if n >= BOL_PAGE {
            Some(match day {
                Some(d) => format!("d={d};p={}", page + 1),
                // A full first page of the interval: the window is read again by day, from its first day.
                None => format!("d={};p=1", cursor.from.date_naive()),
            })
        } else {
            // The day is done: the next day of the fallback, until the day after the window's last in UTC
            // (bol's dates may be Amsterdam's, an hour or two ahead of UTC).
            let last = cursor.to.date_naive().succ_opt().unwrap_or(cursor.to.date_naive());
            day.filter(|d| *d < last).and_then(|d| d.succ_opt()).map(|d| format!("d={d};p=1"))
        };
        let remaining = headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        let reset = headers.get("x-ratelimit-reset").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        let pause = (remaining == Some(0)).then(|| reset.unwrap_or(60));
        if n > 0 && invalid as usize == n {
            return Err(SourceError::Permanent("no order of the page in the documented shape"));
        }
        Ok(Listing { orders, invalid, next, window_to: Some(cursor.to), pause, rate: None })
    }

    async fn detail(&self, token: &SecretString, _c: &Connection, order_id: &str) -> Result<Normalised, SourceError> {
        let req = self
            .http
            .get(format!("{}/retailer/orders/{order_id}", base(&self.api_url)))
            .bearer_auth(token.expose_secret())
            .header("accept", &self.orders_media_type);
        let (order, _): (bol::ApiOrder, _) = call(req).await?;
        bol::normalise(&order).map_err(|_| SourceError::Permanent("order not normalisable"))
    }
}

/// Exchanges an OAuth authorization code for a refresh token (the connection's lasting credential).
async fn exchange(req: reqwest::RequestBuilder) -> Result<SecretString, SourceError> {
    exchange_both(req).await.map(|(refresh, _)| refresh)
}

/// The refresh token and the first access token of an authorization-code grant.
async fn exchange_both(req: reqwest::RequestBuilder) -> Result<(SecretString, Option<SecretString>), SourceError> {
    #[derive(Deserialize)]
    struct Answer {
        refresh_token: Option<String>,
        access_token: Option<String>,
    }
    let res = req.send().await.map_err(|e| transport(&e))?;
    let status = res.status().as_u16();
    if (400..500).contains(&status) && status != 429 {
        return Err(SourceError::Unauthorized);
    }
    if !(200..300).contains(&status) {
        return Err(refusal(status, res.headers()));
    }
    let a: Answer =
        serde_json::from_slice(&capped(res).await?).map_err(|_| SourceError::Permanent("undocumented token answer"))?;
    let refresh = a
        .refresh_token
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
        .ok_or(SourceError::Permanent("no refresh token"))?;
    Ok((refresh, a.access_token.filter(|t| !t.is_empty()).map(SecretString::from)))
}

impl AmazonSource {
    /// The SP-API authorization callback's `spapi_oauth_code`, exchanged at LWA for a refresh token.
    pub async fn exchange(&self, code: &str) -> Result<SecretString, SourceError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", self.app.client_id.as_str()),
                ("client_secret", self.app.client_secret.expose_secret()),
            ])
            .finish();
        exchange(
            self.http
                .post(format!("{}/auth/o2/token", base(&self.lwa_url)))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }
}

impl EbaySource {
    /// eBay's authorization-code grant, then whose account it is (the Identity API's `getUser`, with the
    /// grant's access token): the refresh token and the account's username.
    pub async fn connect(
        &self, code: &str, ru_name: &str, identity_url: &str,
    ) -> Result<(SecretString, String, String), SourceError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("grant_type", "authorization_code"), ("code", code), ("redirect_uri", ru_name)])
            .finish();
        let (refresh, access) = exchange_both(
            self.http
                .post(format!("{}/identity/v1/oauth2/token", base(&self.auth_url)))
                .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose_secret()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await?;
        let access = access.ok_or(SourceError::Permanent("no access token"))?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct User {
            username: Option<String>,
            user_id: Option<String>,
        }
        let req = self
            .http
            .get(format!("{}/commerce/identity/v1/user/", base(identity_url)))
            .bearer_auth(access.expose_secret())
            .header("accept", "application/json");
        let (user, _): (User, _) = call(req).await?;
        let username = user.username.filter(|u| !u.is_empty()).ok_or(SourceError::Permanent("no username"))?;
        let user_id = user.user_id.filter(|u| !u.is_empty()).unwrap_or_else(|| username.clone());
        Ok((refresh, username, user_id))
    }

    /// eBay's authorization-code grant: the code, for the app's RuName (its registered redirect).
    pub async fn exchange(&self, code: &str, ru_name: &str) -> Result<SecretString, SourceError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("grant_type", "authorization_code"), ("code", code), ("redirect_uri", ru_name)])
            .finish();
        exchange(
            self.http
                .post(format!("{}/identity/v1/oauth2/token", base(&self.auth_url)))
                .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose_secret()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn bol_asks_for_the_interval_while_polled_often_and_falls_back_to_days_after_a_gap() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let short = Cursor { from: now - Duration::minutes(14), to: now, position: None };
        let (q, day, _) = BolSource::query(&short, now);
        assert_eq!(day, None);
        assert!(q.contains(&("change-interval-minute", "15".into())) && q.contains(&("status", "ALL".into())));
        let long = Cursor { from: now - Duration::hours(30), to: now, position: None };
        let (q, day, page) = BolSource::query(&long, now);
        assert_eq!((day.map(|d| d.to_string()), page), (Some("2026-11-30".into()), 1));
        assert!(q.contains(&("latest-change-date", "2026-11-30".into())) && q.contains(&("status", "ALL".into())));
        // A first call deferred past the window's end (a 429, an empty budget) still reaches its start.
        let deferred = Cursor { from: now - Duration::minutes(14), to: now - Duration::minutes(10), position: None };
        let (q, day, _) = BolSource::query(&deferred, now);
        assert_eq!(day, None);
        assert!(q.contains(&("change-interval-minute", "15".into())), "{q:?}");
        let resumed = Cursor { position: Some("d=2026-12-01;p=3".into()), ..long };
        let (_, day, page) = BolSource::query(&resumed, now);
        assert_eq!((day.map(|d| d.to_string()), page), (Some("2026-12-01".into()), 3));
    }

    #[test]
    fn windows_start_at_the_watermark_and_end_before_the_platforms_lag() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let w = now - Duration::minutes(7);
        let http = http_client();
        let app = AppCredentials { client_id: "c".into(), client_secret: SecretString::from("s".to_owned()) };
        let amazon =
            AmazonSource { http: http.clone(), lwa_url: String::new(), api_url: String::new(), app: app.clone() };
        let c = amazon.window(Some(w), now, now);
        // lastUpdatedAfter is the watermark itself: an order updated at the edge is in this window too.
        assert_eq!((c.from, c.to), (w, now - Duration::minutes(2)));
        let ebay = EbaySource { http, auth_url: String::new(), api_url: String::new(), app };
        let c = ebay.window(Some(w), now, now);
        assert_eq!(
            (c.from, c.to),
            (w - Duration::minutes(2), now - Duration::minutes(2)),
            "eBay: 2 minutes of overlap"
        );
        let first = amazon.window(None, now, now);
        assert_eq!(first.from, now - FIRST_LOOKBACK);
    }

    #[test]
    fn refusals_are_classed_by_status_alone() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(refusal(429, &h), SourceError::RateLimited { retry_after: None });
        h.insert("retry-after", "4".parse().unwrap());
        assert_eq!(refusal(429, &h), SourceError::RateLimited { retry_after: Some(4) });
        assert_eq!(refusal(401, &h), SourceError::Unauthorized);
        assert_eq!(refusal(503, &h).class(), "transient");
        assert_eq!(refusal(400, &h).class(), "permanent");
    }
}
