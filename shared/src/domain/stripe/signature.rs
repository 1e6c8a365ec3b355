//! `Stripe-Signature` verification: a pure function over the exact raw body.
//!
//! Header: `t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`. The signed payload is `"{t}.{body}"`,
//! HMAC-SHA256 keyed with an endpoint secret. A request is genuine when ANY `v1` matches under ANY
//! configured secret (Stripe sends one `v1` per active secret while a secret is being rolled, and the
//! platform and Connect endpoints have different secrets). Other schemes are ignored. The signature is
//! checked before the timestamp, as Stripe's SDKs do, so a forged request never learns about freshness.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a request was refused. `reason()` is the short machine-readable text sent back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    #[error("no v1 signature in the header")]
    NoV1Signature,
    #[error("no signature matches the payload")]
    NoMatch,
    #[error("timestamp outside the tolerance zone")]
    Stale,
}

impl SignatureError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_signature",
            Self::MalformedHeader => "malformed_signature",
            Self::NoV1Signature => "no_v1_signature",
            Self::NoMatch => "signature_mismatch",
            Self::Stale => "timestamp_out_of_tolerance",
        }
    }
}

/// Why a set of endpoint secrets cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("no Stripe endpoint secret configured")]
    Empty,
    #[error("a Stripe endpoint secret contains whitespace")]
    Whitespace,
}

/// The endpoint secrets, keyed once at init so that each verification only clones a prepared HMAC state.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("secrets", &self.keys.len()).finish()
    }
}

impl Verifier {
    /// Fails on an empty list and on secrets with whitespace (a copy-paste error that would make every
    /// request fail verification): better to fail at init than to answer 401 to every delivery.
    pub fn new(secrets: &[SecretString]) -> Result<Self, SecretError> {
        if secrets.is_empty() {
            return Err(SecretError::Empty);
        }
        let mut keys = Vec::with_capacity(secrets.len());
        for s in secrets {
            let s = s.expose_secret();
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                return Err(if s.is_empty() { SecretError::Empty } else { SecretError::Whitespace });
            }
            keys.push(HmacSha256::new_from_slice(s.as_bytes()).expect("HMAC takes keys of any length"));
        }
        Ok(Self { keys })
    }

    /// Verifies `header` over `body` and returns the signed timestamp.
    ///
    /// `tolerance_secs`: the largest allowed distance between the signed timestamp and `now` (either way,
    /// so a clock far in the future is refused too). `None` skips the freshness check; only tests replaying
    /// fixed vectors should pass it.
    pub fn verify(
        &self, header: Option<&str>, body: &[u8], now: i64, tolerance_secs: Option<u64>,
    ) -> Result<i64, SignatureError> {
        let header = header.map(str::trim).filter(|h| !h.is_empty());
        let parsed = parse_header(header.ok_or(SignatureError::MissingHeader)?)?;
        if parsed.v1.is_empty() {
            return Err(SignatureError::NoV1Signature);
        }
        let prefix = format!("{}.", parsed.timestamp);
        let matched = self.keys.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(prefix.as_bytes());
            mac.update(body);
            let expected = mac.finalize().into_bytes();
            // Every candidate is compared, in constant time, whatever the earlier ones gave.
            parsed.v1.iter().fold(subtle::Choice::from(0), |acc, sig| acc | expected.as_slice().ct_eq(sig)).into()
        });
        if !matched {
            return Err(SignatureError::NoMatch);
        }
        if let Some(tol) = tolerance_secs {
            if now.abs_diff(parsed.timestamp) > tol {
                return Err(SignatureError::Stale);
            }
        }
        Ok(parsed.timestamp)
    }
}

struct Parsed {
    timestamp: i64,
    /// Decoded `v1` signatures; values that are not 32 bytes of hex can never match and are dropped.
    v1: Vec<[u8; 32]>,
}

fn parse_header(header: &str) -> Result<Parsed, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let (key, value) = item.split_once('=').ok_or(SignatureError::MalformedHeader)?;
        match key.trim() {
            "t" => {
                let t: i64 = value.trim().parse().map_err(|_| SignatureError::MalformedHeader)?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::MalformedHeader);
                }
            }
            "v1" => {
                let mut sig = [0u8; 32];
                if hex::decode_to_slice(value.trim(), &mut sig).is_ok() {
                    v1.push(sig);
                } else {
                    // Keep the count honest: a present-but-garbled v1 is a mismatch, not a missing scheme.
                    v1.push([0u8; 32]);
                }
            }
            _ => {}
        }
        // A header with thousands of entries is not Stripe's; stop before doing unbounded work.
        if v1.len() > 16 {
            return Err(SignatureError::MalformedHeader);
        }
    }
    Ok(Parsed { timestamp: timestamp.ok_or(SignatureError::MalformedHeader)?, v1 })
}

/// Builds a `Stripe-Signature` header as Stripe does: for tests, benchmarks and the local stack.
pub fn sign_header(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(secrets: &[&str]) -> Verifier {
        let s: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(s.to_string())).collect();
        Verifier::new(&s).unwrap()
    }

    #[test]
    fn a_header_signed_by_any_of_several_secrets_verifies() {
        let v = verifier(&["whsec_old", "whsec_new"]);
        let body = br#"{"id":"evt_1"}"#;
        assert_eq!(v.verify(Some(&sign_header(&["whsec_new"], 100, body)), body, 100, Some(300)), Ok(100));
        assert_eq!(v.verify(Some(&sign_header(&["whsec_old"], 100, body)), body, 100, Some(300)), Ok(100));
        assert_eq!(
            v.verify(Some(&sign_header(&["whsec_other"], 100, body)), body, 100, Some(300)),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn the_last_v1_is_not_the_only_one_checked() {
        let v = verifier(&["whsec_a"]);
        let body = b"{}";
        let good = sign_header(&["whsec_a"], 5, body);
        let header = format!("{good},v1={}", "ab".repeat(32));
        assert_eq!(v.verify(Some(&header), body, 5, Some(300)), Ok(5));
    }

    #[test]
    fn a_changed_body_does_not_verify() {
        let v = verifier(&["whsec_a"]);
        let header = sign_header(&["whsec_a"], 5, b"{\"a\":1}");
        assert_eq!(v.verify(Some(&header), b"{\"a\": 1}", 5, Some(300)), Err(SignatureError::NoMatch));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_after_the_signature_matches() {
        let v = verifier(&["whsec_a"]);
        let header = sign_header(&["whsec_a"], 1_000, b"{}");
        assert_eq!(v.verify(Some(&header), b"{}", 1_300, Some(300)), Ok(1_000));
        assert_eq!(v.verify(Some(&header), b"{}", 1_301, Some(300)), Err(SignatureError::Stale));
        assert_eq!(v.verify(Some(&header), b"{}", 699, Some(300)), Err(SignatureError::Stale));
    }

    #[test]
    fn duplicate_or_unparsable_timestamps_are_malformed() {
        let v = verifier(&["whsec_a"]);
        for h in ["t=1,t=2,v1=00", "t=abc,v1=00", "v1,t=1", "t=", "garbage"] {
            assert_eq!(v.verify(Some(h), b"{}", 1, None), Err(SignatureError::MalformedHeader), "{h}");
        }
    }

    #[test]
    fn secrets_with_whitespace_or_none_at_all_are_refused_at_init() {
        assert_eq!(Verifier::new(&[]).unwrap_err(), SecretError::Empty);
        let s = [SecretString::from("whsec_a ".to_string())];
        assert_eq!(Verifier::new(&s).unwrap_err(), SecretError::Whitespace);
    }
}
