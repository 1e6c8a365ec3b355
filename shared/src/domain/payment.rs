//! An order's payment state, built so that it never regresses.
//!
//! Stripe neither orders nor de-duplicates its deliveries. Instead of a transition table that must guess
//! what a late event means, an order keeps the *facts* its payment events established ([`PaymentFacts`]),
//! merged with a join that is commutative, associative and idempotent; the status is a pure function of the
//! facts. So any permutation of a set of events, with any duplicates, yields the same state as the ordered
//! sequence (a property test checks it), and a late `payment_intent.processing` after `succeeded` changes
//! nothing while a refund or dispute after payment does.

use serde::{Deserialize, Serialize};

/// One thing a payment event tells us about the order's payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentFact {
    /// The customer finished Checkout; `paid` is false for delayed (async) payment methods.
    CheckoutCompleted { paid: bool },
    /// Payment succeeded (PaymentIntent succeeded, or an async Checkout payment cleared).
    Succeeded,
    /// A payment attempt failed; the customer may still retry.
    Failed,
    /// A payment attempt is being processed.
    Processing,
    /// The PaymentIntent was canceled.
    Canceled,
    /// The Checkout Session expired unpaid.
    Expired,
    /// Cumulative amount refunded so far (Stripe's `amount_refunded`).
    Refunded { amount_refunded: i64 },
    /// A dispute was opened.
    DisputeOpened,
    /// A dispute was closed with this outcome.
    DisputeClosed { outcome: DisputeOutcome },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeOutcome {
    /// An inquiry (`warning_closed`) closed without a chargeback.
    WarningClosed,
    Won,
    Lost,
}

/// Dispute progress: later stages dominate earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "stage", content = "outcome")]
pub enum DisputeState {
    #[default]
    None,
    Open,
    Closed(DisputeOutcome),
}

/// The latest non-terminal attempt state, ordered by the event's `created` time (ties: failure wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    Processing,
    Failed,
}

/// Everything the order's payment events established, as a join-semilattice.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaymentFacts {
    #[serde(default)]
    pub checkout_completed: bool,
    #[serde(default)]
    pub paid: bool,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default)]
    pub expired: bool,
    /// `(event created, state)` of the latest attempt that neither succeeded nor ended the payment.
    #[serde(default)]
    pub last_attempt: Option<(i64, AttemptState)>,
    #[serde(default)]
    pub refunded_amount: i64,
    #[serde(default)]
    pub dispute: DisputeState,
}

/// The status an order shows, derived from its facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    AwaitingPayment,
    PaymentFailed,
    Expired,
    Canceled,
    Paid,
    PartiallyRefunded,
    Refunded,
    Disputed,
    DisputeWon,
    DisputeLost,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingPayment => "awaiting_payment",
            Self::PaymentFailed => "payment_failed",
            Self::Expired => "expired",
            Self::Canceled => "canceled",
            Self::Paid => "paid",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Disputed => "disputed",
            Self::DisputeWon => "dispute_won",
            Self::DisputeLost => "dispute_lost",
        }
    }
}

impl PaymentFacts {
    /// Adds what one event (created at `created`, epoch seconds) established.
    pub fn record(&mut self, fact: &PaymentFact, created: i64) {
        let mut one = PaymentFacts::default();
        match *fact {
            PaymentFact::CheckoutCompleted { paid } => {
                one.checkout_completed = true;
                one.paid = paid;
                if !paid {
                    one.last_attempt = Some((created, AttemptState::Processing));
                }
            }
            PaymentFact::Succeeded => one.paid = true,
            PaymentFact::Failed => one.last_attempt = Some((created, AttemptState::Failed)),
            PaymentFact::Processing => one.last_attempt = Some((created, AttemptState::Processing)),
            PaymentFact::Canceled => one.canceled = true,
            PaymentFact::Expired => one.expired = true,
            PaymentFact::Refunded { amount_refunded } => {
                // A refund implies the payment had succeeded, even if that event is still on its way.
                one.paid = true;
                one.refunded_amount = amount_refunded.max(0);
            }
            PaymentFact::DisputeOpened => {
                one.paid = true;
                one.dispute = DisputeState::Open;
            }
            PaymentFact::DisputeClosed { outcome } => {
                one.paid = true;
                one.dispute = DisputeState::Closed(outcome);
            }
        }
        self.merge(&one);
    }

    /// The join: commutative, associative and idempotent.
    pub fn merge(&mut self, other: &PaymentFacts) {
        self.checkout_completed |= other.checkout_completed;
        self.paid |= other.paid;
        self.canceled |= other.canceled;
        self.expired |= other.expired;
        self.last_attempt = self.last_attempt.max(other.last_attempt);
        self.refunded_amount = self.refunded_amount.max(other.refunded_amount);
        self.dispute = self.dispute.max(other.dispute);
    }

    /// The status, given the order's amount (needed to tell a full refund from a partial one).
    pub fn status(&self, amount: Option<i64>) -> PaymentStatus {
        match self.dispute {
            DisputeState::Closed(DisputeOutcome::Lost) => return PaymentStatus::DisputeLost,
            DisputeState::Closed(_) => return PaymentStatus::DisputeWon,
            DisputeState::Open => return PaymentStatus::Disputed,
            DisputeState::None => {}
        }
        if self.refunded_amount > 0 {
            return match amount {
                Some(a) if self.refunded_amount < a => PaymentStatus::PartiallyRefunded,
                _ => PaymentStatus::Refunded,
            };
        }
        if self.paid {
            return PaymentStatus::Paid;
        }
        if self.canceled {
            return PaymentStatus::Canceled;
        }
        if self.expired {
            return PaymentStatus::Expired;
        }
        match self.last_attempt {
            Some((_, AttemptState::Failed)) => PaymentStatus::PaymentFailed,
            Some((_, AttemptState::Processing)) => PaymentStatus::AwaitingPayment,
            None => PaymentStatus::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(events: &[(PaymentFact, i64)]) -> PaymentFacts {
        let mut f = PaymentFacts::default();
        for (fact, created) in events {
            f.record(fact, *created);
        }
        f
    }

    #[test]
    fn a_late_processing_event_after_success_changes_nothing() {
        let f = facts(&[(PaymentFact::Succeeded, 10), (PaymentFact::Processing, 5)]);
        assert_eq!(f.status(Some(2000)), PaymentStatus::Paid);
    }

    #[test]
    fn refunds_and_disputes_after_payment_do_change_the_status() {
        let mut f = facts(&[(PaymentFact::Succeeded, 10)]);
        f.record(&PaymentFact::Refunded { amount_refunded: 500 }, 20);
        assert_eq!(f.status(Some(2000)), PaymentStatus::PartiallyRefunded);
        f.record(&PaymentFact::Refunded { amount_refunded: 2000 }, 30);
        assert_eq!(f.status(Some(2000)), PaymentStatus::Refunded);
        f.record(&PaymentFact::DisputeOpened, 40);
        assert_eq!(f.status(Some(2000)), PaymentStatus::Disputed);
        f.record(&PaymentFact::DisputeClosed { outcome: DisputeOutcome::Won }, 50);
        assert_eq!(f.status(Some(2000)), PaymentStatus::DisputeWon);
    }

    #[test]
    fn a_failed_attempt_followed_by_success_is_paid_and_the_latest_attempt_decides_otherwise() {
        assert_eq!(facts(&[(PaymentFact::Failed, 1), (PaymentFact::Succeeded, 2)]).status(None), PaymentStatus::Paid);
        assert_eq!(
            facts(&[(PaymentFact::Processing, 3), (PaymentFact::Failed, 1)]).status(None),
            PaymentStatus::AwaitingPayment
        );
        assert_eq!(
            facts(&[(PaymentFact::Processing, 1), (PaymentFact::Failed, 3)]).status(None),
            PaymentStatus::PaymentFailed
        );
    }

    #[test]
    fn an_unpaid_checkout_waits_for_its_async_payment() {
        let f = facts(&[(PaymentFact::CheckoutCompleted { paid: false }, 1)]);
        assert_eq!(f.status(None), PaymentStatus::AwaitingPayment);
    }

    /// A valid lifecycle of one order, in order, each event with its `created` time.
    fn valid_sequence() -> impl Strategy<Value = Vec<(PaymentFact, i64)>> {
        let attempts =
            prop::collection::vec(prop_oneof![Just(PaymentFact::Processing), Just(PaymentFact::Failed)], 0..4);
        let ending = prop_oneof![
            Just(vec![PaymentFact::Canceled]),
            Just(vec![PaymentFact::Expired]),
            Just(vec![PaymentFact::CheckoutCompleted { paid: true }, PaymentFact::Succeeded]),
            (1i64..=2000).prop_map(|r| vec![
                PaymentFact::Succeeded,
                PaymentFact::Refunded { amount_refunded: r / 2 },
                PaymentFact::Refunded { amount_refunded: r },
            ]),
            prop_oneof![Just(DisputeOutcome::Won), Just(DisputeOutcome::Lost), Just(DisputeOutcome::WarningClosed)]
                .prop_map(|o| vec![
                    PaymentFact::Succeeded,
                    PaymentFact::DisputeOpened,
                    PaymentFact::DisputeClosed { outcome: o },
                ]),
        ];
        (attempts, ending)
            .prop_map(|(a, e)| a.into_iter().chain(e).enumerate().map(|(i, f)| (f, i as i64 * 10)).collect())
    }

    proptest! {
        #[test]
        fn any_permutation_with_duplicates_ends_in_the_state_of_the_ordered_sequence(
            seq in valid_sequence(),
            extra in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            seed in any::<u64>(),
        ) {
            let ordered = facts(&seq);
            let mut shuffled = seq.clone();
            for idx in &extra {
                shuffled.push(seq[idx.index(seq.len())].clone());
            }
            // Deterministic Fisher-Yates from the seed, so failures shrink and replay.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let permuted = facts(&shuffled);
            prop_assert_eq!(&permuted, &ordered);
            prop_assert_eq!(permuted.status(Some(2000)), ordered.status(Some(2000)));
        }
    }
}
