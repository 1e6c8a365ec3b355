//! Meta's webhook verification handshake (`GET` with `hub.mode`, `hub.verify_token`, `hub.challenge`). It
//! carries no signature, by Meta's design: the verify token is the only proof, compared in constant time.

use subtle::ConstantTimeEq;

/// The challenge to echo, when `mode` is `subscribe`, `token` is the configured one and the challenge looks
/// like Meta's (1 to 64 digits, so the echo can never be markup or script); `None` refuses.
pub fn answer<'a>(
    mode: Option<&str>, token: Option<&str>, challenge: Option<&'a str>, expected: &str,
) -> Option<&'a str> {
    let token_ok: bool = token.unwrap_or("").as_bytes().ct_eq(expected.as_bytes()).into();
    let challenge = challenge.unwrap_or("");
    let looks_like_meta = (1..=64).contains(&challenge.len()) && challenge.bytes().all(|b| b.is_ascii_digit());
    (mode == Some("subscribe") && token_ok && looks_like_meta && !expected.is_empty()).then_some(challenge)
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn only_the_right_token_and_a_numeric_challenge_are_echoed() {
        assert_eq!(answer(Some("subscribe"), Some("t"), Some("123"), "t"), Some("123"));
        assert_eq!(answer(Some("subscribe"), Some("x"), Some("123"), "t"), None);
        assert_eq!(answer(Some("unsubscribe"), Some("t"), Some("123"), "t"), None);
        assert_eq!(answer(Some("subscribe"), Some("t"), Some("<b>"), "t"), None);
        assert_eq!(answer(Some("subscribe"), Some("t"), None, "t"), None);
        assert_eq!(answer(Some("subscribe"), Some(""), Some("1"), ""), None);
    }
}
