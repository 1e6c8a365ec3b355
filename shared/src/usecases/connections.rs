//! Connecting a merchant's marketplace account: the consent URL with a single-use, expiring `state` bound
//! to the merchant, the callback that turns the marketplace's code into a connection, and bol's client
//! credentials, checked before they are kept. Credentials go to the connection's own secret, never to a
//! table or a log.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::domain::orders::Marketplace;

/// How long a consent `state` may be used.
pub const STATE_VALID: Duration = Duration::minutes(15);

/// A fresh consent state (256 random bits, hex) and the hash it is stored by.
pub fn new_state() -> (String, String) {
    let state = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let hash = state_hash(&state);
    (state, hash)
}

/// What a state is stored by: its SHA-256, so the table never holds a usable state.
pub fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// A state as the callback brings it: exactly what [`new_state`] makes.
pub fn is_state(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The connection id of `merchant`'s `account` at `marketplace`: the same account connected again is the
/// same connection (new credentials, the same watermark).
pub fn connection_id(merchant: &str, marketplace: Marketplace, account: &str) -> String {
    hex::encode(&Sha256::digest(format!("{merchant}\n{marketplace}\n{account}"))[..12])
}

/// An account, site or client id as the marketplaces issue them: 1-128 of letters, digits, `.-_:*`
/// (eBay usernames may hold `*`).
pub fn is_account(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:*".contains(&b))
}

/// Where the merchant's browser goes to consent.
#[derive(Debug, Clone)]
pub struct ConsentSettings {
    /// Seller Central (`https://sellercentral.amazon.com`) and the SP-API app's id.
    pub amazon_consent_url: String,
    pub amazon_application_id: String,
    /// eBay's authorization host (`https://auth.ebay.com`), the app's client id and RuName.
    pub ebay_consent_url: String,
    pub ebay_client_id: String,
    pub ebay_ru_name: String,
}

/// The consent URL for `marketplace` with `state`; `None` for bol (no consent flow: client credentials).
pub fn consent_url(s: &ConsentSettings, marketplace: Marketplace, state: &str) -> Option<String> {
    let q = |pairs: &[(&str, &str)]| form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    match marketplace {
        Marketplace::Amazon => Some(format!(
            "{}/apps/authorize/consent?{}",
            s.amazon_consent_url.trim_end_matches('/'),
            q(&[("application_id", &s.amazon_application_id), ("state", state)])
        )),
        Marketplace::Ebay => Some(format!(
            "{}/oauth2/authorize?{}",
            s.ebay_consent_url.trim_end_matches('/'),
            q(&[
                ("client_id", &s.ebay_client_id),
                ("redirect_uri", &s.ebay_ru_name),
                ("response_type", "code"),
                ("scope", crate::adapters::marketplaces::EBAY_CONSENT_SCOPES),
                ("state", state),
            ])
        )),
        Marketplace::Bol => None,
    }
}

/// When a state made at `now` stops working.
pub fn state_expires(now: DateTime<Utc>) -> DateTime<Utc> {
    now + STATE_VALID
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_random_hex_stored_by_their_hash() {
        let (a, ha) = new_state();
        let (b, _) = new_state();
        assert!(is_state(&a) && a != b);
        assert_eq!(ha, state_hash(&a));
        assert_ne!(ha, a);
        assert!(!is_state("x") && !is_state(&"g".repeat(64)));
    }

    #[test]
    fn the_same_account_is_the_same_connection_for_its_merchant_only() {
        let a = connection_id("m1", Marketplace::Amazon, "A3SELLER");
        assert_eq!(a, connection_id("m1", Marketplace::Amazon, "A3SELLER"));
        assert_ne!(a, connection_id("m2", Marketplace::Amazon, "A3SELLER"));
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn consent_urls_carry_the_state_and_bol_has_none() {
        let s = ConsentSettings {
            amazon_consent_url: "https://sellercentral.amazon.de/".into(),
            amazon_application_id: "amzn1.sp.solution.x".into(),
            ebay_consent_url: "https://auth.ebay.com".into(),
            ebay_client_id: "Nex-PRD".into(),
            ebay_ru_name: "Nex-RuName".into(),
        };
        let a = consent_url(&s, Marketplace::Amazon, "abc").unwrap();
        assert_eq!(
            a,
            "https://sellercentral.amazon.de/apps/authorize/consent?application_id=amzn1.sp.solution.x&state=abc"
        );
        let e = consent_url(&s, Marketplace::Ebay, "abc").unwrap();
        assert!(e.starts_with(
            "https://auth.ebay.com/oauth2/authorize?client_id=Nex-PRD&redirect_uri=Nex-RuName&response_type=code"
        ));
        assert!(e.ends_with("&state=abc"));
        assert_eq!(consent_url(&s, Marketplace::Bol, "abc"), None);
    }
}
