//! eBay Marketplace Account Deletion: the endpoint check (`GET ?challenge_code=`) and the signed
//! notification (`POST`, header `X-EBAY-SIGNATURE`).
//!
//! The header is base64 of `{"alg":"ecdsa","kid":...,"signature":<base64 DER>,"digest":"SHA1"}`. The
//! signature is ECDSA P-256 over SHA-1 of the **compact** JSON of the message: the body with every
//! whitespace outside strings removed, key order and escapes as sent (eBay's SDK re-serialises the
//! message without whitespace; the pretty-printed bytes do not verify). The key is fetched by `kid`.
//!
//! Nothing is parsed for use before the signature holds: the body is only scanned for whitespace.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The only topic this endpoint acts on.
pub const TOPIC: &str = "MARKETPLACE_ACCOUNT_DELETION";

/// `hex(SHA-256(challenge_code + verification_token + endpoint_url))`, the answer to eBay's endpoint check.
pub fn challenge_response(challenge_code: &str, verification_token: &str, endpoint_url: &str) -> String {
    let mut h = Sha256::new();
    h.update(challenge_code.as_bytes());
    h.update(verification_token.as_bytes());
    h.update(endpoint_url.as_bytes());
    hex::encode(h.finalize())
}

/// The decoded `X-EBAY-SIGNATURE` header.
#[derive(Debug, Clone, Deserialize)]
pub struct SignatureHeader {
    pub alg: String,
    pub kid: String,
    pub signature: String,
    pub digest: String,
}

/// Why a notification was refused. None names a value from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no X-EBAY-SIGNATURE header")]
    NoSignature,
    #[error("the signature header is not base64 JSON with alg, kid, signature and digest")]
    BadHeader,
    #[error("only ecdsa over SHA1 is accepted")]
    Algorithm,
    #[error("the key id is not an id")]
    BadKeyId,
    #[error("the body is not JSON")]
    BadBody,
    #[error("the signature does not verify")]
    Mismatch,
    #[error("the public key cannot be read")]
    BadKey,
}

/// Decodes the header and checks what it claims before any key is fetched.
pub fn parse_header(header: Option<&str>) -> Result<SignatureHeader, Refused> {
    let raw = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(Refused::NoSignature)?;
    if raw.len() > 4096 {
        return Err(Refused::BadHeader);
    }
    let json = STANDARD.decode(raw).map_err(|_| Refused::BadHeader)?;
    let h: SignatureHeader = serde_json::from_slice(&json).map_err(|_| Refused::BadHeader)?;
    if !h.alg.eq_ignore_ascii_case("ecdsa") || !h.digest.eq_ignore_ascii_case("sha1") {
        return Err(Refused::Algorithm);
    }
    // It becomes part of a URL path: letters, digits and dashes only.
    let ok = !h.kid.is_empty() && h.kid.len() <= 64 && h.kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(Refused::BadKeyId);
    }
    Ok(h)
}

/// The body without whitespace outside strings: what eBay signs. `None` if it is not one well-formed
/// JSON value.
pub fn compact(body: &[u8]) -> Option<Vec<u8>> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
    let mut out = Vec::with_capacity(body.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    Some(out)
}

/// A public key as eBay's Notification API gives it (`key`: a PEM, possibly on one line).
pub fn public_key(pem: &str) -> Result<VerifyingKey, Refused> {
    let b64: String = pem
        .replace("-----BEGIN PUBLIC KEY-----", "")
        .replace("-----END PUBLIC KEY-----", "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(b64).map_err(|_| Refused::BadKey)?;
    VerifyingKey::from_public_key_der(&der).map_err(|_| Refused::BadKey)
}

/// What a notice is checked against once its key is known: its compact message and its signature. Made
/// before any key is fetched, so a notice that could never verify costs no call to eBay.
pub struct Signed {
    message: Vec<u8>,
    signature: Signature,
}

/// Decodes what can be checked without the key: a well-formed body and a DER signature.
pub fn prepare(header: &SignatureHeader, body: &[u8]) -> Result<Signed, Refused> {
    let message = compact(body).ok_or(Refused::BadBody)?;
    let der = STANDARD.decode(header.signature.trim()).map_err(|_| Refused::BadHeader)?;
    let signature = Signature::from_der(&der).map_err(|_| Refused::Mismatch)?;
    Ok(Signed { message, signature })
}

impl Signed {
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), Refused> {
        key.verify_prehash(&Sha1::digest(&self.message), &self.signature).map_err(|_| Refused::Mismatch)
    }
}

/// Verifies `body` against the header's signature with `key`.
pub fn verify(key: &VerifyingKey, header: &SignatureHeader, body: &[u8]) -> Result<(), Refused> {
    prepare(header, body)?.verify(key)
}

/// A verified notification, as far as this suite reads it.
#[derive(Deserialize)]
pub struct Notification {
    pub metadata: Metadata,
    pub notification: Body,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub topic: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Body {
    pub notification_id: String,
    pub data: Data,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Never prints the user's names.
impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification").field("topic", &self.metadata.topic).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey;

    /// A key pair of this test's own, and a header for `body` signed the way eBay signs.
    fn signed(body: &str) -> (VerifyingKey, String) {
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let digest = Sha1::digest(compact(body.as_bytes()).unwrap());
        let sig: Signature = sk.sign_prehash(&digest).unwrap();
        let header =
            serde_json::json!({"alg":"ecdsa","kid":"k-1","signature":STANDARD.encode(sig.to_der()),"digest":"SHA1"});
        (*sk.verifying_key(), STANDARD.encode(header.to_string()))
    }

    const MESSAGE: &str = "{\n  \"metadata\" : { \"topic\" : \"MARKETPLACE_ACCOUNT_DELETION\" },\n  \"notification\" : {\"notificationId\":\"n-1\",\"data\":{\"username\":\"a b\\\" c\",\"userId\":\"u1\"}}\n}";

    #[test]
    fn the_challenge_answer_is_the_sha256_of_code_token_and_endpoint() {
        let got = challenge_response("abc", "token", "https://x.example/e");
        assert_eq!(got, hex::encode(Sha256::digest(b"abctokenhttps://x.example/e")));
    }

    #[test]
    fn whitespace_is_removed_outside_strings_only() {
        assert_eq!(
            compact(MESSAGE.as_bytes()).unwrap(),
            br#"{"metadata":{"topic":"MARKETPLACE_ACCOUNT_DELETION"},"notification":{"notificationId":"n-1","data":{"username":"a b\" c","userId":"u1"}}}"#
        );
        assert_eq!(compact(b"{\"a\":1"), None);
        assert_eq!(compact(b"{} {}"), None);
    }

    #[test]
    fn a_signed_message_verifies_and_a_changed_one_does_not() {
        let (key, header) = signed(MESSAGE);
        let h = parse_header(Some(&header)).unwrap();
        assert_eq!(verify(&key, &h, MESSAGE.as_bytes()), Ok(()));
        let tampered = MESSAGE.replace("u1", "u2");
        assert_eq!(verify(&key, &h, tampered.as_bytes()), Err(Refused::Mismatch));
        // Re-indenting does not change what was signed.
        let reindented = MESSAGE.replace("\n  ", "\n\t\t");
        assert_eq!(verify(&key, &h, reindented.as_bytes()), Ok(()));
    }

    #[test]
    fn a_key_round_trips_through_ebays_one_line_pem() {
        let (key, _) = signed(MESSAGE);
        let der = key.to_public_key_der().unwrap();
        let pem = format!("-----BEGIN PUBLIC KEY-----{}-----END PUBLIC KEY-----", STANDARD.encode(der.as_bytes()));
        assert_eq!(public_key(&pem).unwrap(), key);
        assert_eq!(public_key("-----BEGIN PUBLIC KEY-----AAAA-----END PUBLIC KEY-----"), Err(Refused::BadKey));
    }

    #[test]
    fn headers_that_are_not_what_they_claim_are_refused_before_any_fetch() {
        let enc = |v: serde_json::Value| STANDARD.encode(v.to_string());
        assert_eq!(parse_header(None).unwrap_err(), Refused::NoSignature);
        assert_eq!(parse_header(Some("%%%")).unwrap_err(), Refused::BadHeader);
        let rsa = enc(serde_json::json!({"alg":"rsa","kid":"k","signature":"x","digest":"SHA1"}));
        assert_eq!(parse_header(Some(&rsa)).unwrap_err(), Refused::Algorithm);
        let path = enc(serde_json::json!({"alg":"ecdsa","kid":"../../x","signature":"x","digest":"SHA1"}));
        assert_eq!(parse_header(Some(&path)).unwrap_err(), Refused::BadKeyId);
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(header in proptest::option::of(".{0,200}"), body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let (key, _) = signed(MESSAGE);
            if let Ok(h) = parse_header(header.as_deref()) {
                let _ = verify(&key, &h, &body);
            }
            let _ = compact(&body);
        }
    }
}

/// eBay's own SDK test vector (`../shared/fixtures/ebay/account_deletion/`).
#[cfg(all(test, fixtures))]
mod conformance {
    use super::*;

    fn read(name: &str) -> String {
        std::fs::read_to_string(format!("{}/ebay/account_deletion/{name}", env!("NEX_FIXTURES_DIR"))).unwrap()
    }

    #[test]
    fn ebays_test_vector_verifies_and_its_tampered_message_does_not() {
        let case: serde_json::Value = serde_json::from_str(&read("signature_case.json")).unwrap();
        let key: serde_json::Value = serde_json::from_str(&read("public_key_response.json")).unwrap();
        let key = public_key(key["key"].as_str().unwrap()).unwrap();
        let header = parse_header(case["x_ebay_signature"].as_str()).unwrap();
        assert_eq!(header.kid, "9936261a-7d7b-4621-a0f1-96ccb428af49");
        assert_eq!(verify(&key, &header, read("message.json").as_bytes()), Ok(()));
        assert_eq!(verify(&key, &header, read("tampered_message.json").as_bytes()), Err(Refused::Mismatch));
        let n: Notification = serde_json::from_str(&read("message.json")).unwrap();
        assert_eq!(n.metadata.topic, TOPIC);
        assert_eq!(n.notification.data.username.as_deref(), Some("test_user"));
    }
}
