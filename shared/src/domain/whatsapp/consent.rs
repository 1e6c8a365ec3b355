//! The send-time consent rules (policy 001): what may be sent to a person, decided on the template's
//! *current* category and the ledger's current state, never on what was true when a send was requested.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// A template's category as Meta classifies it now (it can change after approval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
}

/// What is to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    Template {
        category: Category,
    },
    /// A free-form (service) message: only inside the customer-service window.
    FreeForm,
}

/// What the consent ledger says about this person and this merchant, now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consent {
    /// A recorded marketing opt-in for this merchant.
    pub opted_in: bool,
    /// Opted out of marketing: by keyword (for every merchant) or by Meta's "Stop promotions".
    pub opted_out: bool,
}

/// Facts about the message and the conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
    /// The message is about the person's own order.
    pub own_order: bool,
    /// That order is still open (not delivered, cancelled or refunded in full).
    pub order_open: bool,
    /// When the person last wrote to this merchant's number (opens the 24-hour window).
    pub last_inbound_at: Option<DateTime<Utc>>,
}

/// Why a send was refused; recorded with the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    NoMarketingOptIn,
    OptedOut,
    NotTheirOrder,
    WindowClosed,
}

/// The customer-service window Meta opens with each inbound message.
pub const SERVICE_WINDOW: Duration = Duration::hours(24);

pub fn decide(outbound: Outbound, consent: Consent, ctx: Context, now: DateTime<Utc>) -> Result<(), Refusal> {
    match outbound {
        Outbound::FreeForm => match ctx.last_inbound_at {
            Some(t) if now < t + SERVICE_WINDOW => Ok(()),
            _ => Err(Refusal::WindowClosed),
        },
        Outbound::Template { category: Category::Marketing } => {
            if consent.opted_out {
                Err(Refusal::OptedOut)
            } else if !consent.opted_in {
                Err(Refusal::NoMarketingOptIn)
            } else {
                Ok(())
            }
        }
        Outbound::Template { category: Category::Utility | Category::Authentication } => {
            if !ctx.own_order {
                Err(Refusal::NotTheirOrder)
            } else if consent.opted_out && !ctx.order_open {
                // After an opt-out, transactional messages may still complete an open order, nothing more.
                Err(Refusal::OptedOut)
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }
    const IN: Consent = Consent { opted_in: true, opted_out: false };
    const OUT: Consent = Consent { opted_in: true, opted_out: true };
    const MARKETING: Outbound = Outbound::Template { category: Category::Marketing };
    const UTILITY: Outbound = Outbound::Template { category: Category::Utility };

    #[test]
    fn marketing_needs_an_opt_in_and_no_opt_out() {
        assert_eq!(decide(MARKETING, IN, Context::default(), now()), Ok(()));
        assert_eq!(decide(MARKETING, Consent::default(), Context::default(), now()), Err(Refusal::NoMarketingOptIn));
        assert_eq!(decide(MARKETING, OUT, Context::default(), now()), Err(Refusal::OptedOut));
    }

    #[test]
    fn after_stop_a_utility_message_may_complete_an_open_order_only() {
        let open = Context { own_order: true, order_open: true, last_inbound_at: None };
        let closed = Context { order_open: false, ..open };
        assert_eq!(decide(UTILITY, OUT, open, now()), Ok(()));
        assert_eq!(decide(UTILITY, OUT, closed, now()), Err(Refusal::OptedOut));
        assert_eq!(decide(UTILITY, Consent::default(), closed, now()), Ok(()), "no marketing opt-in needed");
        let not_theirs = Context { own_order: false, ..open };
        assert_eq!(decide(UTILITY, IN, not_theirs, now()), Err(Refusal::NotTheirOrder));
    }

    #[test]
    fn free_form_text_only_inside_the_24_hour_window() {
        let at = |h| Context { last_inbound_at: Some(now() - Duration::hours(h)), ..Context::default() };
        assert_eq!(decide(Outbound::FreeForm, Consent::default(), at(23), now()), Ok(()));
        assert_eq!(decide(Outbound::FreeForm, Consent::default(), at(24), now()), Err(Refusal::WindowClosed));
        assert_eq!(decide(Outbound::FreeForm, IN, Context::default(), now()), Err(Refusal::WindowClosed));
    }
}
