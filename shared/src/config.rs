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
        self.var(name).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing(name))
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
            Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { name, why: e.to_string() }),
        }
    }
}

/// A configuration read from variables: what [`config!`](crate::config!) declares.
pub trait FromVars: Sized {
    fn from_vars(v: &impl Vars) -> Result<Self, ConfigError>;
}

/// A value one variable holds: a `String` is required, an `Option<String>` optional.
pub trait FromVar: Sized {
    fn from_var(v: &impl Vars, name: &'static str) -> Result<Self, ConfigError>;
}

impl FromVar for String {
    fn from_var(v: &impl Vars, name: &'static str) -> Result<Self, ConfigError> {
        v.required(name)
    }
}

impl FromVar for Option<String> {
    fn from_var(v: &impl Vars, name: &'static str) -> Result<Self, ConfigError> {
        Ok(v.optional(name))
    }
}

/// Declares a function's configuration: each field and the variable `template.yaml` sets for it, read once
/// at init. `field: String = "VAR"` is required, `field: Option<String> = "VAR"` optional,
/// `field: u64 = "VAR" or 300` parsed with a default, and `field: T = reader` is `reader(vars)?`.
#[macro_export]
macro_rules! config {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty = $var:tt $(or $default:expr)?),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $crate::config::FromVars for $name {
            fn from_vars(v: &impl $crate::config::Vars) -> Result<Self, $crate::config::ConfigError> {
                Ok(Self { $($field: $crate::config!(@read v, $var $(, $default)?),)* })
            }
        }
    };
    (@read $v:ident, $var:literal) => { $crate::config::FromVar::from_var($v, $var)? };
    (@read $v:ident, $var:literal, $default:expr) => { $v.parsed_or($var, $default)? };
    (@read $v:ident, $reader:ident) => { $reader($v)? };
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

/// Every store's table.
pub type Tables = std::collections::BTreeMap<crate::domain::data_inventory::Store, String>;

/// The table of every store, from `PAYMENTS_TABLE`, `MESSAGING_TABLE`, `DATA_REQUESTS_TABLE` and
/// `ORDERS_TABLE`: what the sweep, data-subject requests and the operator CLI work across.
pub fn store_tables(v: &impl Vars) -> Result<Tables, ConfigError> {
    use crate::domain::data_inventory::Store;
    Ok(std::collections::BTreeMap::from([
        (Store::Payments, v.required("PAYMENTS_TABLE")?),
        (Store::Messaging, v.required("MESSAGING_TABLE")?),
        (Store::DataRequests, v.required("DATA_REQUESTS_TABLE")?),
        (Store::Orders, v.required("ORDERS_TABLE")?),
    ]))
}
