//! Delivery receipts of an outbound message, as a monotonic state.
//!
//! Statuses arrive out of order, `delivered` may be skipped (read straight away), and `delivered` can
//! follow `failed` on multi-device accounts. The state is the join (maximum) over
//! `sent < failed < delivered < read < played`: a late or repeated status never lowers it, and a
//! later delivery proves a failure wrong. The failure's error code is kept whichever order they came in.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Sent,
    Failed,
    Delivered,
    Read,
    /// Voice messages: played.
    Played,
}

impl Delivery {
    /// Meta's status string; `None` for statuses this model does not know (kept out, not guessed).
    pub fn parse(status: &str) -> Option<Self> {
        Some(match status {
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "played" => Self::Played,
            _ => return None,
        })
    }
}

/// What the receipts of one message established.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub state: Option<Delivery>,
    /// The smallest error code any `failed` status carried (deterministic whatever the order).
    pub error_code: Option<i64>,
}

impl DeliveryState {
    pub fn apply(&mut self, status: Delivery, error_code: Option<i64>) {
        self.state = self.state.max(Some(status));
        if status == Delivery::Failed {
            self.error_code = match (self.error_code, error_code) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_and_repeated_statuses_never_regress() {
        let mut s = DeliveryState::default();
        for st in [Delivery::Read, Delivery::Sent, Delivery::Delivered, Delivery::Read] {
            s.apply(st, None);
        }
        assert_eq!(s.state, Some(Delivery::Read));
    }

    #[test]
    fn a_later_delivery_overrides_a_failure_but_keeps_its_code() {
        let mut s = DeliveryState::default();
        s.apply(Delivery::Failed, Some(131047));
        assert_eq!(s.state, Some(Delivery::Failed));
        s.apply(Delivery::Delivered, None);
        assert_eq!((s.state, s.error_code), (Some(Delivery::Delivered), Some(131047)));
        let mut t = DeliveryState::default();
        t.apply(Delivery::Delivered, None);
        t.apply(Delivery::Failed, Some(131047));
        assert_eq!(s, t, "order of arrival does not matter");
    }

    #[test]
    fn unknown_statuses_are_not_guessed() {
        assert_eq!(Delivery::parse("deleted"), None);
        assert_eq!(Delivery::parse("read"), Some(Delivery::Read));
    }
}
