//! Forwarding to merchants' systems as Standard Webhooks: signing secrets, signatures, the retry schedule,
//! what an answer means, event types, and which endpoint addresses may be called at all.
//!
//! - A secret is `whsec_` + base64 of 24 random bytes; the key is the decoded bytes.
//! - `webhook-signature` is `v1,` + base64(HMAC-SHA256(key, `id.timestamp.body`)); during a rotation
//!   the signatures of both secrets are sent, space-separated, so a receiver holding either verifies.
//! - Attempts follow Svix's schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h): 8 attempts
//!   over about 27.6 hours. Only a 2xx within the timeout is a success; `Retry-After` on 429/502/503/504
//!   is honoured (never sooner than the schedule); 410 disables the endpoint.
//! - An endpoint address is `https`, has no credentials in it, and never resolves to a private, loopback,
//!   link-local, shared, multicast, reserved or metadata address (checked at registration and on every
//!   connection by the sender's resolver). The local stack may allow loopback, explicitly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a new signing key.
pub const KEY_BYTES: usize = 24;

/// How long the previous secret keeps signing after a rotation: a receiver has a day to switch.
pub const ROTATION_OVERLAP_SECS: i64 = 24 * 3600;

/// The wait before each attempt (seconds): attempt 1 at once, attempt 8 ten hours after the seventh.
pub const SCHEDULE: [i64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

/// An endpoint failing (no success) for this long is disabled.
pub const DISABLE_AFTER_SECS: i64 = 5 * 24 * 3600;

/// Success is a 2xx within this time.
pub const ATTEMPT_TIMEOUT_SECS: u64 = 15;

/// The longest `Retry-After` honoured; a larger one waits this long.
pub const MAX_RETRY_AFTER_SECS: i64 = 10 * 3600;

/// The event types a merchant can subscribe to. New types are added here (and documented in the README).
pub const EVENT_TYPES: &[&str] = &["order.created", "order.updated", "payment.updated"];

/// A hash of `key` that is the same in every process and release (a due shard, a spread of waits).
pub fn stable_hash(key: &str) -> u32 {
    key.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
}

/// Whether `t` is an event type the suite sends.
pub fn is_event_type(t: &str) -> bool {
    EVENT_TYPES.contains(&t)
}

/// A new random secret, shown to the merchant once.
pub fn new_secret() -> String {
    let mut key = [0u8; KEY_BYTES];
    // The OS's generator; if it cannot answer, no secret can be made safely.
    getrandom::fill(&mut key).expect("the operating system's random generator answers");
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// The key of a secret (`whsec_` + base64, padding optional); `None` if it is not one, or empty.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret).trim_end_matches('=');
    let key = base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64).ok()?;
    (!key.is_empty()).then_some(key)
}

/// One signature: `v1,` + base64(HMAC-SHA256(key, `id.timestamp.body`)).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter().map(|k| sign(k, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// What an attempt's answer (or its absence) means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again, no sooner than `retry_after` seconds if the receiver said so.
    Retry {
        retry_after: Option<i64>,
    },
    /// 410 Gone: the receiver asks for the endpoint to be disabled.
    Gone,
    /// `webhook-delivery: abort-message`: the receiver asks for no more attempts of this message.
    Abort,
}

/// Judges an answer: `status` (none if the attempt timed out or failed to connect), `retry_after` (the
/// header's value) and whether the receiver asked to abort.
pub fn verdict(status: Option<u16>, retry_after: Option<&str>, abort: bool) -> Verdict {
    match status {
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        _ if abort => Verdict::Abort,
        Some(429 | 502 | 503 | 504) => Verdict::Retry { retry_after: retry_after.and_then(parse_retry_after) },
        _ => Verdict::Retry { retry_after: None },
    }
}

/// `Retry-After` in seconds (delta-seconds; an HTTP date is not honoured, the schedule applies).
pub fn parse_retry_after(v: &str) -> Option<i64> {
    let secs: i64 = v.trim().parse().ok()?;
    (secs >= 0).then_some(secs.min(MAX_RETRY_AFTER_SECS))
}

/// The wait before the attempt after `attempts_done` attempts, `None` once the schedule is spent.
pub fn next_wait(attempts_done: u32, retry_after: Option<i64>) -> Option<i64> {
    let scheduled = *SCHEDULE.get(attempts_done as usize)?;
    Some(scheduled.max(retry_after.unwrap_or(0)))
}

/// Why an endpoint address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("not a URL")]
    Malformed,
    #[error("the URL must be https")]
    NotHttps,
    #[error("the URL must not carry credentials")]
    Credentials,
    #[error("the URL must name a host")]
    NoHost,
    #[error("the host resolves to an address the suite never calls (private, loopback, link-local, metadata)")]
    ForbiddenAddress,
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("the URL is longer than 2048 characters")]
    TooLong,
    #[error("the port must be 443 or 1024 and above")]
    Port,
}

impl UrlRefused {
    pub fn code(&self) -> &'static str {
        match self {
            UrlRefused::Malformed => "url_malformed",
            UrlRefused::NotHttps => "url_must_be_https",
            UrlRefused::Credentials => "url_must_not_carry_credentials",
            UrlRefused::NoHost => "url_must_name_a_host",
            UrlRefused::ForbiddenAddress => "url_resolves_to_a_forbidden_address",
            UrlRefused::Unresolvable => "url_host_does_not_resolve",
            UrlRefused::TooLong => "url_too_long",
            UrlRefused::Port => "url_port_not_allowed",
        }
    }
}

/// Which addresses the sender may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    /// Loopback (and plain `http` to it) for the local stack only; never set in a deployment.
    pub allow_loopback: bool,
}

impl AddressPolicy {
    /// Whether the sender may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.allow_loopback && ip.is_loopback() {
            return true;
        }
        is_public(ip)
    }

    /// The URL's shape: `https` (or `http` to a loopback host when loopback is allowed), a host, no
    /// credentials. An IP literal is judged here; a name is judged when it resolves.
    pub fn check_url(&self, raw: &str) -> Result<reqwest::Url, UrlRefused> {
        if raw.len() > 2048 {
            return Err(UrlRefused::TooLong);
        }
        let url = reqwest::Url::parse(raw).map_err(|_| UrlRefused::Malformed)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefused::Credentials);
        }
        let host = url.host().ok_or(UrlRefused::NoHost)?;
        let literal = match host {
            url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
            url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
            url::Host::Domain(_) => None,
        };
        let loopback_host =
            literal.is_some_and(|ip| ip.is_loopback()) || url.host_str().is_some_and(|h| h == "localhost");
        match url.scheme() {
            "https" => {}
            "http" if self.allow_loopback && loopback_host => {}
            _ => return Err(UrlRefused::NotHttps),
        }
        if let Some(ip) = literal {
            if !self.allows(ip) {
                return Err(UrlRefused::ForbiddenAddress);
            }
        }
        // 443, or an unprivileged port: the well-known services below 1024 (SMTP, SSH, ...) are never
        // called, so the sender is no port scanner for them.
        let port = url.port_or_known_default().unwrap_or(0);
        if port != 443 && port < 1024 && !(self.allow_loopback && loopback_host) {
            return Err(UrlRefused::Port);
        }
        Ok(url)
    }
}

/// A globally routable unicast address: not private, loopback, link-local (so not the metadata service),
/// shared (CGNAT), multicast, broadcast, documentation, benchmarking, reserved or unspecified; IPv6
/// forms that embed an IPv4 address are judged by it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => is_public_v6(a),
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    !(a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
        || a.is_unspecified()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 192.88.99.0/24 6to4 relay anycast
        || o[0] >= 240) // 240.0.0.0/4 reserved
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = a.segments();
    // Only global unicast (2000::/3) is called at all, so unique-local (fc00::/7, AWS's IMDS at
    // fd00:ec2::254), link-local, site-local, multicast, loopback, the unspecified address, the IPv4-compatible
    // and translated forms (::a.b.c.d, ::ffff:0:a.b.c.d) and local-use NAT64 (64:ff9b:1::/48) are refused.
    (s[0] & 0xe000) == 0x2000
        && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        && !(s[0] == 0x3fff && s[1] < 0x1000) // 3fff::/20 documentation
        && !(s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 protocol assignments (Teredo, ORCHID, ...)
        && s[0] != 0x2002 // 6to4 embeds an IPv4 address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_reference_library_does() {
        // Our own vector, signed by the `standardwebhooks` package from PyPI (the spec's own vector is
        // checked in the integration tests, from ../shared/fixtures).
        let key = key_of("whsec_bmV4LWxvY2FsLXNpZ25pbmcta2V5LTI0Yg==").unwrap();
        let sig = sign(&key, "msg_nex_0001", 1780000000, br#"{"type":"order.created"}"#);
        assert_eq!(sig, "v1,2/uvvBfDy+5eldtqKuVP07kTPzJScY+HVUAPkRoQNIQ=");
        assert_eq!(key_of("bmV4LWxvY2FsLXNpZ25pbmcta2V5LTI0Yg"), Some(key), "prefix and padding optional");
    }

    #[test]
    fn new_secrets_are_random_decodable_and_prefixed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_"));
        assert_eq!(key_of(&a).unwrap().len(), KEY_BYTES);
        assert_eq!(key_of("whsec_"), None);
        assert_eq!(key_of("whsec_not base64!"), None);
    }

    #[test]
    fn two_keys_sign_twice_space_separated() {
        let h = signature_header(&[vec![1; 24], vec![2; 24]], "id", 1, b"{}");
        let parts: Vec<_> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn the_schedule_is_svixs_and_retry_after_only_ever_waits_longer() {
        let waits: Vec<_> = (0..9).map(|n| next_wait(n, None)).collect();
        assert_eq!(
            waits,
            [Some(0), Some(5), Some(300), Some(1800), Some(7200), Some(18000), Some(36000), Some(36000), None]
        );
        assert_eq!(next_wait(1, Some(60)), Some(60));
        assert_eq!(next_wait(2, Some(60)), Some(300), "never sooner than the schedule");
        assert_eq!(parse_retry_after("999999"), Some(MAX_RETRY_AFTER_SECS));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[test]
    fn answers_mean_what_standard_webhooks_says() {
        assert_eq!(verdict(Some(204), None, false), Verdict::Delivered);
        assert_eq!(verdict(Some(410), None, false), Verdict::Gone);
        assert_eq!(verdict(Some(429), Some("30"), false), Verdict::Retry { retry_after: Some(30) });
        assert_eq!(verdict(Some(500), Some("30"), false), Verdict::Retry { retry_after: None });
        assert_eq!(verdict(Some(301), None, false), Verdict::Retry { retry_after: None }, "redirects are not followed");
        assert_eq!(verdict(None, None, false), Verdict::Retry { retry_after: None });
        assert_eq!(verdict(Some(400), None, true), Verdict::Abort);
    }

    #[test]
    fn only_public_addresses_are_called() {
        let refused = [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.170",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2002:a00:1::",
            "ff02::1",
            "::0.0.1.2",
            "::ffff:0:a00:1",
            "64:ff9b:1::a00:1",
            "64:ff9b::a00:1",
            "100::1",
            "192.88.99.1",
            "3fff::1",
        ];
        for ip in refused {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.216.34"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn urls_are_https_without_credentials_and_loopback_only_when_allowed() {
        let prod = AddressPolicy::default();
        let local = AddressPolicy { allow_loopback: true };
        assert!(prod.check_url("https://shop.example/hooks").is_ok());
        assert_eq!(prod.check_url("http://shop.example/hooks"), Err(UrlRefused::NotHttps));
        assert_eq!(prod.check_url("https://u:p@shop.example/"), Err(UrlRefused::Credentials));
        assert_eq!(prod.check_url("https://169.254.169.254/latest"), Err(UrlRefused::ForbiddenAddress));
        assert_eq!(prod.check_url("https://[::ffff:a9fe:a9fe]/"), Err(UrlRefused::ForbiddenAddress));
        assert_eq!(prod.check_url("https://127.0.0.1:8443/"), Err(UrlRefused::ForbiddenAddress));
        assert_eq!(prod.check_url("https://0x7f000001/"), Err(UrlRefused::ForbiddenAddress), "hex IPv4");
        assert_eq!(prod.check_url("ftp://shop.example/"), Err(UrlRefused::NotHttps));
        assert_eq!(prod.check_url("https://shop.example:25/"), Err(UrlRefused::Port));
        assert!(prod.check_url("https://shop.example:8443/hooks").is_ok());
        assert_eq!(prod.check_url("not a url"), Err(UrlRefused::Malformed));
        assert!(local.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert_eq!(local.check_url("http://10.0.0.1/hook"), Err(UrlRefused::NotHttps));
        assert_eq!(local.check_url("https://10.0.0.1/hook"), Err(UrlRefused::ForbiddenAddress));
    }

    #[test]
    fn signing_never_panics_on_any_key_or_body() {
        proptest::proptest!(|(key: Vec<u8>, id: String, ts: i64, body: Vec<u8>)| {
            let _ = sign(&key, &id, ts, &body);
            let _ = key_of(&id);
            let _ = parse_retry_after(&id);
        });
    }
}
