//! Kafka plumbing for the live pipeline. This module keeps only what every client shares:
//! the `[kafka]` properties as a librdkafka configuration and the set-up error type. The
//! input side is in `source`, the output side in `sink`, start-up checks in `admin`, and the
//! at-least-once bookkeeping in `offsets`.

pub mod admin;
pub mod offsets;
pub mod sink;
pub mod source;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

pub use offsets::{OffsetTracker, Phase, Ticket};

/// Errors of the Kafka layer, wrapped, never stringified early.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// Never carries a property's value: librdkafka's own message would (secrets included).
    #[error("cannot create the Kafka {role}: {detail}")]
    Client { role: &'static str, detail: String },
    #[error("cannot read topic metadata from {brokers}: {source}{}", broker_said(.detail))]
    Metadata {
        brokers: String,
        source: Box<KafkaError>,
        /// What librdkafka last reported about the connection (authentication or TLS
        /// failures surface only there).
        detail: Option<String>,
    },
    #[error("topic {0:?} does not exist (create it, or set topics.create_topics = true)")]
    MissingTopic(String),
    #[error(
        "topic {0:?} was created but is not in the cluster's metadata after {1:?}; start again"
    )]
    NotVisible(String, std::time::Duration),
    #[error("cannot create topic {topic:?}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("changelog topic {topic:?} has {found} partitions but the input has {expected}: they must match (state of input partition p lives in changelog partition p); if partitions were added to the input, its sessions moved away from their state and adding changelog partitions would not bring it back (docs/operations.md, \"Changing the input's partition count\")")]
    ChangelogPartitions {
        topic: String,
        found: i32,
        expected: i32,
    },
}

/// A client that could not be created; a bad property is named, its value left out.
pub fn client_error(role: &'static str, source: KafkaError) -> KafkaSetupError {
    let detail = match source {
        KafkaError::ClientConfig(_, description, key, _value) => {
            format!("property `{key}`: {description}")
        }
        other => other.to_string(),
    };
    KafkaSetupError::Client { role, detail }
}

fn broker_said(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(" (last connection error: {d})"))
        .unwrap_or_default()
}

/// librdkafka properties for every client, from the configuration's `[kafka]` table.
/// `client.id` defaults to `sessionflow-<hostname>`, so that brokers' logs, quotas and
/// request metrics name the instance (librdkafka's default is `rdkafka`).
pub fn base_config(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    set_default(
        &mut config,
        "client.id",
        &format!("sessionflow-{}", crate::config::hostname()),
    );
    config.set_log_level(log_level(properties));
    config
}

/// The level below which librdkafka drops its own lines before they reach [`forward_log`]:
/// warnings, or everything once `debug` names librdkafka's debug contexts (the operator asked
/// for them; they are logged at debug level, target `sessionflow::kafka`).
fn log_level(properties: &BTreeMap<String, String>) -> RDKafkaLogLevel {
    if properties.contains_key("debug") {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    }
}

/// librdkafka's own log lines (configuration warnings, broker connection trouble) into the
/// process log. Without this they go to the `log` crate, which nothing here reads.
pub fn forward_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Error as i32) {
        tracing::error!(facility, message, "librdkafka");
    } else if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
        tracing::warn!(facility, message, "librdkafka");
    } else {
        tracing::debug!(facility, message, "librdkafka");
    }
}

/// A context that only forwards librdkafka's log (see [`forward_log`]), for clients with
/// nothing else to report (the changelog reader).
pub struct LogContext;

impl rdkafka::client::ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }
}

impl rdkafka::consumer::ConsumerContext for LogContext {}

/// Sets `key` unless the `[kafka]` table already did (the operator's word wins).
pub fn set_default(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

/// Locks state shared between the processing loop and librdkafka's callbacks. Every such
/// lock is held briefly and never across an await. A poisoned lock means a thread panicked
/// while holding it: a bug, surfaced here as a panic (the process restarts and re-derives
/// what was not committed) instead of a batch or a callback silently skipped.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(_) => panic!("a lock shared with the Kafka callbacks was poisoned by an earlier panic"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_debug_lines_reach_the_log_only_when_debug_is_set() {
        let level = |properties: &[(&str, &str)]| {
            let properties = properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            base_config(&properties).log_level as i32
        };
        assert_eq!(level(&[]), RDKafkaLogLevel::Warning as i32);
        assert_eq!(
            level(&[("debug", "eos,broker")]),
            RDKafkaLogLevel::Debug as i32
        );
    }
}
