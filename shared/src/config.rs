//! Pieces of configuration handling shared by the binaries.

use std::borrow::Cow;

/// A configuration value that is wrong, with the flag and variable that carry it
/// (`--slot/CDC_SLOT: "Bad-Slot" is not a valid slot name`).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: Cow<'static, str>,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// True if `s` may be part of a Kafka topic or group name (a-z, A-Z, 0-9, `.`, `_`, `-`).
pub fn is_kafka_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
