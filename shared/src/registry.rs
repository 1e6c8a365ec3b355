//! Every function of the suite, once: its name (crate, binary and `template.yaml` build), its trigger and
//! how it is built. The local runner builds what `template.yaml` deploys from here, the test harness checks
//! the two agree, and `nexctl functions` lists it. A function's `main.rs` names its type directly, so a
//! Lambda binary links only its own function.

use std::collections::HashMap;

use crate::adapters::aws::Aws;
use crate::apps::{insights, merchant_api, messaging, orders, payments, privacy, webhooks};
use crate::config::{ConfigError, InitError};
use crate::function::{BoxFuture, Function, Http, Invocation, Kind, Schedule, Sqs, Trigger};
use crate::ports::SharedClock;

/// The suite's functions.
pub const FUNCTIONS: &[Entry] = &[
    Entry::of::<Http<payments::StripeWebhook>>(),
    Entry::of::<Sqs<payments::PaymentsWorker>>(),
    Entry::of::<Http<messaging::WhatsAppWebhook>>(),
    Entry::of::<Sqs<messaging::MessagingWorker>>(),
    Entry::of::<Sqs<messaging::NotificationsSender>>(),
    Entry::of::<Http<merchant_api::MerchantApi>>(),
    Entry::of::<Schedule<privacy::RetentionSweep>>(),
    Entry::of::<Sqs<privacy::DataRequestsWorker>>(),
    Entry::of::<Sqs<privacy::AuditAppender>>(),
    Entry::of::<Schedule<orders::MarketplaceScheduler>>(),
    Entry::of::<Sqs<orders::MarketplacePoller>>(),
    Entry::of::<Http<orders::EbayAccountDeletion>>(),
    Entry::of::<Sqs<webhooks::WebhookDispatcher>>(),
    Entry::of::<Sqs<webhooks::WebhookSender>>(),
    Entry::of::<Schedule<webhooks::WebhookScheduler>>(),
    Entry::of::<Schedule<insights::InsightsScheduler>>(),
    Entry::of::<Sqs<insights::InsightsPuller>>(),
];

/// A built function, handed events as JSON the way Lambda hands them.
pub trait Handler: Send + Sync {
    fn invoke<'a>(
        &'a self, event: serde_json::Value, invocation: &'a Invocation,
    ) -> BoxFuture<'a, Result<serde_json::Value, lambda_runtime::Error>>;
}

struct Built<T: Trigger>(T::Function);

impl<T: Trigger> Handler for Built<T> {
    fn invoke<'a>(
        &'a self, event: serde_json::Value, invocation: &'a Invocation,
    ) -> BoxFuture<'a, Result<serde_json::Value, lambda_runtime::Error>> {
        T::invoke(&self.0, event, invocation)
    }
}

type Build =
    for<'a> fn(&'a Aws, &'a HashMap<String, String>, SharedClock) -> BoxFuture<'a, Result<Box<dyn Handler>, InitError>>;

/// One function: its name, trigger and constructor.
#[derive(Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub trigger: Kind,
    build: Build,
    check: fn(&HashMap<String, String>) -> Result<(), ConfigError>,
}

impl Entry {
    pub const fn of<T: Trigger>() -> Self {
        Self { name: T::Function::NAME, trigger: T::KIND, build: build::<T>, check: check::<T> }
    }

    /// Whether `env` holds a configuration this function can read (nothing is built).
    pub fn check(&self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        (self.check)(env)
    }

    /// Builds the function from its environment variables, as Lambda's init does.
    pub async fn build(
        &self, aws: &Aws, env: &HashMap<String, String>, clock: SharedClock,
    ) -> Result<Box<dyn Handler>, InitError> {
        (self.build)(aws, env, clock).await
    }
}

fn build<'a, T: Trigger>(
    aws: &'a Aws, env: &'a HashMap<String, String>, clock: SharedClock,
) -> BoxFuture<'a, Result<Box<dyn Handler>, InitError>> {
    Box::pin(async move {
        let config = T::Function::config(env)?;
        let app = T::Function::build(aws, config, clock).await?;
        Ok(Box::new(Built::<T>(app)) as Box<dyn Handler>)
    })
}

fn check<T: Trigger>(env: &HashMap<String, String>) -> Result<(), ConfigError> {
    T::Function::config(env).map(|_| ())
}

/// The function named `name`, if the suite has it.
pub fn find(name: &str) -> Option<&'static Entry> {
    FUNCTIONS.iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = super::FUNCTIONS.iter().map(|e| e.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), super::FUNCTIONS.len());
    }
}
