//! What callers may send, checked before anything is stored. The rule: nothing free-form from a caller
//! enters the audit log or a log line, so every caller-chosen string that is stored or logged is a short
//! token of a documented alphabet; identifiers of people are checked for their syntax (and then only
//! their keyed hashes are kept).

use chrono::{DateTime, TimeZone, Utc};

/// A caller's id for a thing (an opt-in id, a ticket reference): 1 to 64 characters of
/// `A-Z a-z 0-9 . _ : -`, so it cannot carry a sentence, an email address or a phone number in clear.
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// A short code naming where or how something happened (`checkout_page`, `account_settings`,
/// `corrected`): 1 to 40 characters, lower-case letters, digits and `_`, starting with a letter.
pub fn is_token(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An E.164 phone number, as people write it: an optional `+`, then 8 to 15 digits not starting with 0;
/// spaces, dots, dashes and parentheses between them are allowed.
pub fn is_e164(s: &str) -> bool {
    let s = s.trim();
    let body = s.strip_prefix('+').unwrap_or(s);
    if !body.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')')) {
        return false;
    }
    let digits: Vec<char> = body.chars().filter(char::is_ascii_digit).collect();
    (8..=15).contains(&digits.len()) && digits[0] != '0'
}

/// An email address's syntax: one `@`, a non-empty local part, a domain with a dot and no empty label,
/// no spaces, at most 254 characters.
pub fn is_email(s: &str) -> bool {
    let s = s.trim();
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && !local.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A time a caller says something happened: not before 2000 and not in the future (5 minutes of clock
/// skew allowed).
pub fn is_plausible_time(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let floor = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
    floor.is_some_and(|f| at >= f) && at <= now + chrono::Duration::minutes(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_cannot_carry_free_text() {
        assert!(is_id("o-1") && is_id("TICKET:2026.11_04"));
        assert!(!is_id("") && !is_id(&"x".repeat(65)) && !is_id("jane.doe@example.com") && !is_id("a b"));
        assert!(is_token("checkout_page") && is_token("corrected"));
        for bad in ["jane.doe@example.com said yes", "Checkout", "_x", "", "a-b", &"a".repeat(41)] {
            assert!(!is_token(bad), "{bad}");
        }
    }

    #[test]
    fn phone_numbers_and_emails_are_checked_for_their_syntax() {
        for ok in ["+31612345678", "+31 6 1234 5678", "16505551234", "+1 (650) 555-1234"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in ["+316", "0612345678", "+31612345678901234", "call me", "+31-6-abc", ""] {
            assert!(!is_e164(bad), "{bad}");
        }
        assert!(is_email("Jo@Example.com") && is_email("a.b+c@mail.example.co.uk"));
        for bad in ["jo", "jo@", "@x.com", "jo@localhost", "jo@x..com", "j o@x.com", "a@b@c.com"] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn times_before_2000_or_in_the_future_are_not_plausible() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        assert!(is_plausible_time(now, now) && is_plausible_time(now + chrono::Duration::minutes(4), now));
        assert!(!is_plausible_time(now + chrono::Duration::hours(1), now));
        assert!(!is_plausible_time(Utc.with_ymd_and_hms(1999, 12, 31, 0, 0, 0).unwrap(), now));
    }
}
