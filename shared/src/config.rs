//! Typed configuration, read once at init from the environment (or, in the local stack and tests, from
//! the function's own variables in `template.yaml`). A missing or bad variable fails fast with its name.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// Where variables come from: the process environment in Lambda, a map elsewhere.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.var(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing(name))
    }

    fn optional(&self, name: &'static str) -> Option<String> {
        self.var(name).filter(|v| !v.trim().is_empty())
    }

    fn parsed_or<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                why: e.to_string(),
            }),
        }
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct Env;

impl Vars for Env {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Vars for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Vars for std::collections::BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why a function could not start: every function's init fails with this, once, with the cause.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Infra(#[from] crate::ports::InfraError),
    /// A secret or setting that was read but cannot be used (e.g. an empty secret list).
    #[error("{0}")]
    Unusable(String),
}

/// The table of every store, from `PAYMENTS_TABLE`, `MESSAGING_TABLE`, `DATA_REQUESTS_TABLE` and
/// `ORDERS_TABLE`: what the sweep, data-subject requests and the operator CLI work across.
pub fn store_tables(
    v: &impl Vars,
) -> Result<std::collections::BTreeMap<crate::domain::inventory::Store, String>, ConfigError> {
    use crate::domain::inventory::Store;
    Ok(std::collections::BTreeMap::from([
        (Store::Payments, v.required("PAYMENTS_TABLE")?),
        (Store::Messaging, v.required("MESSAGING_TABLE")?),
        (Store::DataRequests, v.required("DATA_REQUESTS_TABLE")?),
        (Store::Orders, v.required("ORDERS_TABLE")?),
    ]))
}
