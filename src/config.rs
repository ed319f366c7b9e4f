//! Configuration for `sessionflow run`: defaults < file (`--config`) < environment
//! (`SESSIONFLOW__SECTION__KEY`) < CLI flags, strict (an unknown key is an error naming it),
//! and validated once into a typed [`Config`] that is passed explicitly.
//!
//! Every key, its default and its meaning are documented in `config/sessionflow.toml`.
//!
//! Inside: `kafka` (the `[kafka]` tables of librdkafka properties and their secrets), `ingest`
//! (the `[ingest]` section). This file keeps the other sections, the layering and the checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::engine::{
    DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_MAX_CLOCK_SKEW_MS, DEFAULT_TERMINAL_RETENTION_MS,
};
use crate::parse::{Limits, DEFAULT_MAX_DEPTH, DEFAULT_MAX_RECORD_BYTES};

mod ingest;
mod kafka;
#[cfg(test)]
mod tests;
pub use ingest::{Ingest, IngestTls, RawIngest};
pub use kafka::{is_secret, redacted, RawKafka};
use kafka::{kafka_from_env, kafka_property, property_value, resolve_files};

/// SPEC section 3: a caught-up partition idle this long advances its watermark (live only).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30_000;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file, variable or flag could not be read into the schema (unknown key, wrong type).
    #[error("{0}")]
    Load(String),
    /// A key has a value of the right type but outside what it accepts.
    #[error("`{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// The configuration as written: every key with its default.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Kafka bootstrap servers (`bootstrap.servers`), `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group; also names the changelog topic.
    pub group_id: String,
    /// `at_least_once` (default) or `exactly_once`.
    pub delivery: String,
    pub topics: RawTopics,
    pub lifecycle: RawLifecycle,
    pub limits: RawLimits,
    pub pipeline: RawPipeline,
    pub state: RawState,
    pub http: RawHttp,
    pub ingest: RawIngest,
    pub log: RawLog,
    /// librdkafka properties passed through (`"linger.ms" = 5` or `"linger.ms" = "5"`:
    /// numbers and booleans are written as librdkafka reads them), with the consumers' and
    /// the producers' own in `[kafka.consumer]` and `[kafka.producer]`.
    pub kafka: RawKafka,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopics {
    pub input: String,
    pub transitions: String,
    pub anomalies: String,
    pub dead_letters: String,
    /// Compacted state changelog; empty means `<group_id>.state`.
    pub changelog: String,
    pub create_topics: bool,
    /// Partitions of the input topic when `create_topics` creates it.
    pub create_partitions: i32,
    pub create_replication_factor: i32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLifecycle {
    pub allowed_lateness_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_clock_skew_ms: u64,
    pub terminal_retention_ms: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_record_bytes: u64,
    pub max_depth: u64,
    pub max_sessions_per_partition: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    pub batch_size: u64,
    pub drain_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    /// Exactly-once: the producer's `transactional.id`; empty means `<group_id>-<hostname>`.
    pub transactional_id: String,
    /// Exactly-once: most records in one transaction (the batch size in that mode).
    pub transaction_max_records: u64,
    /// The input consumer's `group.instance.id` (static membership); empty means none.
    pub group_instance_id: String,
    /// An input partition behind its end offset whose fetch position has not moved for this
    /// long makes the instance not ready; 0 only reports it.
    pub input_stall_timeout_ms: u64,
    /// `/healthz` fails once the processing loop has shown no sign of life for this long;
    /// 0: never.
    pub liveness_timeout_ms: u64,
    /// Processing threads the assigned partitions are spread over (each partition on one).
    pub workers: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `stop` (default) or `skip`: what a changelog record that cannot be read does.
    pub on_corrupt: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json` (one JSON object a line, for log shippers).
    pub format: String,
}

/// How log lines are written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "sessionflow".into(),
            delivery: "at_least_once".into(),
            topics: RawTopics {
                input: "clerk.sessions".into(),
                transitions: "clerk.session.transitions".into(),
                anomalies: "clerk.session.anomalies".into(),
                dead_letters: "clerk.sessions.dlq".into(),
                changelog: String::new(),
                create_topics: false,
                create_partitions: 4,
                create_replication_factor: 1,
            },
            lifecycle: RawLifecycle {
                allowed_lateness_ms: DEFAULT_ALLOWED_LATENESS_MS as u64,
                idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
                max_clock_skew_ms: DEFAULT_MAX_CLOCK_SKEW_MS as u64,
                terminal_retention_ms: DEFAULT_TERMINAL_RETENTION_MS as u64,
            },
            state: RawState {
                on_corrupt: "stop".into(),
            },
            limits: RawLimits {
                max_record_bytes: DEFAULT_MAX_RECORD_BYTES as u64,
                max_depth: DEFAULT_MAX_DEPTH as u64,
                max_sessions_per_partition: 0,
            },
            pipeline: RawPipeline {
                batch_size: 16_384,
                drain_timeout_ms: 10_000,
                retry_backoff_ms: 500,
                transactional_id: String::new(),
                group_instance_id: String::new(),
                transaction_max_records: 10_000,
                input_stall_timeout_ms: 60_000,
                liveness_timeout_ms: 60_000,
                workers: 1,
            },
            http: RawHttp {
                listen: "127.0.0.1:9464".into(),
            },
            ingest: RawIngest::default(),
            log: RawLog {
                format: "text".into(),
            },
            kafka: RawKafka::default(),
        }
    }
}

/// Delivery guarantee (SPEC section 6).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    AtLeastOnce,
    ExactlyOnce,
}

/// What a corrupt changelog record does (`state.on_corrupt`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OnCorrupt {
    /// The partition stops (is not processed) with an error naming topic, partition and
    /// offset: restoring past it would be a guess.
    Stop,
    /// The record is skipped and counted; the partition goes on without it.
    Skip,
}

/// Topic names and creation settings.
#[derive(Clone, Debug)]
pub struct Topics {
    pub input: String,
    pub transitions: String,
    pub anomalies: String,
    pub dead_letters: String,
    /// The state changelog topic (compacted, co-partitioned with the input).
    pub changelog: String,
    pub create: bool,
    pub create_partitions: i32,
    pub create_replication_factor: i32,
    /// The dead-letter topic's `max.message.bytes` when the host already knows it (the demo's
    /// embedded cluster, which answers no configuration requests); `None`: asked of the
    /// broker at start-up. Not a configuration key.
    pub dead_letters_max_message_bytes: Option<usize>,
}

/// The validated configuration. Its `Debug` form redacts secrets.
#[derive(Clone)]
pub struct Config {
    pub group_id: String,
    pub delivery: Delivery,
    pub topics: Topics,
    pub engine: EngineConfig,
    /// `None` turns the idle-partition advance off.
    pub idle_timeout: Option<Duration>,
    pub limits: Limits,
    pub batch_size: usize,
    /// Processing threads a batch's partitions are spread over (`pipeline.workers`).
    pub workers: usize,
    pub drain_timeout: Duration,
    pub retry_backoff: Duration,
    /// The transactional producer's id (exactly-once); stable across restarts of one
    /// instance so that a restart aborts what its crashed predecessor left open.
    pub transactional_id: String,
    /// Exactly-once: the most records per transaction.
    pub transaction_max_records: usize,
    /// Static membership: the input consumer's `group.instance.id`. A restarted instance
    /// with the same id gets its partitions back at once instead of after
    /// `session.timeout.ms`.
    pub group_instance_id: Option<String>,
    /// What a changelog record that cannot be read does to its partition's restore.
    pub on_corrupt: OnCorrupt,
    /// `None`: a stalled input partition is reported but does not make the instance not
    /// ready.
    pub input_stall_timeout: Option<Duration>,
    /// `None`: `/healthz` always answers 200 while the process serves.
    pub liveness_timeout: Option<Duration>,
    pub http_listen: SocketAddr,
    pub ingest: Ingest,
    pub log_format: LogFormat,
    /// librdkafka properties for every client, `bootstrap.servers` included (the admin
    /// client takes these alone).
    pub kafka: BTreeMap<String, String>,
    /// Properties for the consumers (input, changelog): `[kafka]`, then `[kafka.consumer]`.
    pub kafka_consumer: BTreeMap<String, String>,
    /// Properties for the producers: `[kafka]`, then `[kafka.producer]`.
    pub kafka_producer: BTreeMap<String, String>,
}

/// Loads the layers: defaults, then `file` if given, then the environment, then `overrides`
/// (`key=value` pairs with dotted keys, values in TOML syntax or bare strings).
pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = file {
        // Figment reads a path that is not a readable file as empty: the defaults would run
        // in silence (a ConfigMap mounted as a directory at the file's path, say).
        if !path.exists() {
            return Err(ConfigError::Load(format!(
                "configuration file {} does not exist",
                path.display()
            )));
        }
        if !path.is_file() {
            return Err(ConfigError::Load(format!(
                "configuration file {} is not a file (a directory? mount the file itself, or name the file inside it)",
                path.display()
            )));
        }
        if let Err(error) = std::fs::File::open(path) {
            return Err(ConfigError::Load(format!(
                "configuration file {} cannot be read: {error}",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file(path));
    }
    // librdkafka property names are dotted, which environment variable names cannot be:
    // SESSIONFLOW__KAFKA__SASL_PASSWORD is `sasl.password`, and
    // SESSIONFLOW__KAFKA__SASL_PASSWORD_FILE is `sasl.password_file`.
    figment = figment.merge(Env::prefixed("SESSIONFLOW__").split("__").filter(|key| {
        let key = key.as_str().to_ascii_lowercase();
        !key.starts_with("kafka__") && !key.starts_with("kafka.")
    }));
    for (kind, properties) in kafka_from_env(std::env::vars()) {
        figment = match kind {
            None => figment.merge(("kafka", properties)),
            Some(kind) => figment.merge(("kafka", BTreeMap::from([(kind, properties)]))),
        };
    }
    for (key, value) in overrides {
        match kafka_property(key) {
            // A librdkafka property's name is dotted itself: `kafka.linger.ms` is the
            // property `linger.ms`, not a table `linger` with a key `ms`.
            Some((None, property)) => {
                figment =
                    figment.merge(("kafka", BTreeMap::from([(property, property_value(value))])));
            }
            Some((Some(kind), property)) => {
                let table = BTreeMap::from([(property, property_value(value))]);
                figment = figment.merge(("kafka", BTreeMap::from([(kind, table)])));
            }
            None => figment = figment.merge(Toml::string(&override_toml(key, value))),
        }
    }
    let raw: RawConfig = figment
        .extract()
        .map_err(|e| ConfigError::Load(describe(e)))?;
    raw.validate()
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("group_id", &self.group_id)
            .field("delivery", &self.delivery)
            .field("topics", &self.topics)
            .field("engine", &self.engine)
            .field("idle_timeout", &self.idle_timeout)
            .field("limits", &self.limits)
            .field("batch_size", &self.batch_size)
            .field("workers", &self.workers)
            .field("drain_timeout", &self.drain_timeout)
            .field("retry_backoff", &self.retry_backoff)
            .field("transactional_id", &self.transactional_id)
            .field("group_instance_id", &self.group_instance_id)
            .field("on_corrupt", &self.on_corrupt)
            .field("input_stall_timeout", &self.input_stall_timeout)
            .field("liveness_timeout", &self.liveness_timeout)
            .field("transaction_max_records", &self.transaction_max_records)
            .field("http_listen", &self.http_listen)
            .field("ingest", &self.ingest)
            .field("log_format", &self.log_format)
            .field("kafka", &redacted(&self.kafka))
            .field("kafka_consumer", &redacted(&self.kafka_consumer))
            .field("kafka_producer", &redacted(&self.kafka_producer))
            .finish()
    }
}

/// `key = value` as TOML; a value that is not TOML is taken as a string.
fn override_toml(key: &str, value: &str) -> String {
    let candidate = format!("{key} = {value}");
    let parses = Figment::from(Toml::string(&candidate))
        .extract::<figment::value::Dict>()
        .is_ok();
    if parses {
        candidate
    } else {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("{key} = \"{escaped}\"")
    }
}

/// One line per problem, naming the key and where its value came from.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!(" (key `{}`)", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .map(|s| format!(" in {s}"))
                .unwrap_or_default();
            // A type error quotes the value: not under a secret key, whatever its type.
            let problem = if e.path.iter().any(|segment| is_secret(segment)) {
                "a value of a type this key does not take (the value of a secret is not shown)"
                    .to_owned()
            } else {
                e.kind.to_string()
            };
            format!("invalid configuration{key}{source}: {problem}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// This machine's host name (the default `transactional.id` suffix).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn positive(key: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::Invalid {
            key,
            problem: "must be a positive integer".into(),
        });
    }
    Ok(value)
}

/// The most processing threads: more than cores only adds switching, and a batch of
/// `batch_size` records spread this thin no longer pays for the threads.
pub const MAX_WORKERS: u64 = 64;

/// `pipeline.workers`: 1 to [`MAX_WORKERS`].
fn workers(value: u64) -> Result<usize, ConfigError> {
    let key = "pipeline.workers";
    if value > MAX_WORKERS {
        return Err(ConfigError::Invalid {
            key,
            problem: format!("{value} is more than {MAX_WORKERS}"),
        });
    }
    Ok(positive(key, value)? as usize)
}

fn millis(key: &'static str, value: u64) -> Result<i64, ConfigError> {
    i64::try_from(value).map_err(|_| ConfigError::Invalid {
        key,
        problem: format!("must be at most {} milliseconds", i64::MAX),
    })
}

fn non_empty(key: &'static str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::Invalid {
            key,
            problem: "must not be empty".into(),
        });
    }
    Ok(value)
}

impl RawConfig {
    /// Checks every value and builds the typed configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let delivery = match self.delivery.as_str() {
            "at_least_once" => Delivery::AtLeastOnce,
            "exactly_once" => Delivery::ExactlyOnce,
            other => {
                return Err(ConfigError::Invalid {
                    key: "delivery",
                    problem: format!(
                        "must be \"at_least_once\" or \"exactly_once\", got {other:?}"
                    ),
                })
            }
        };
        let on_corrupt = match self.state.on_corrupt.as_str() {
            "stop" => OnCorrupt::Stop,
            "skip" => OnCorrupt::Skip,
            other => {
                return Err(ConfigError::Invalid {
                    key: "state.on_corrupt",
                    problem: format!("must be \"stop\" or \"skip\", got {other:?}"),
                })
            }
        };
        let log_format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    key: "log.format",
                    problem: format!("is {other:?}; expected \"text\" or \"json\""),
                })
            }
        };
        let http_listen = self.http.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "http.listen",
            problem: format!(
                "must be an address like 127.0.0.1:9464, got {:?}",
                self.http.listen
            ),
        })?;
        let t = self.topics;
        if t.create_partitions < 1 {
            return Err(ConfigError::Invalid {
                key: "topics.create_partitions",
                problem: "must be at least 1".into(),
            });
        }
        if t.create_replication_factor < 1 {
            return Err(ConfigError::Invalid {
                key: "topics.create_replication_factor",
                problem: "must be at least 1".into(),
            });
        }
        let topics = Topics {
            input: non_empty("topics.input", t.input)?,
            transitions: non_empty("topics.transitions", t.transitions)?,
            anomalies: non_empty("topics.anomalies", t.anomalies)?,
            dead_letters: non_empty("topics.dead_letters", t.dead_letters)?,
            changelog: if t.changelog.trim().is_empty() {
                format!("{}.state", self.group_id)
            } else {
                t.changelog
            },
            create: t.create_topics,
            create_partitions: t.create_partitions,
            create_replication_factor: t.create_replication_factor,
            dead_letters_max_message_bytes: None,
        };
        // An output that is the input loops: a bad record dead-lettered into the input is read
        // again and dead-lettered again, for ever (and derived events would be read as input).
        for (key, output) in [
            ("topics.transitions", &topics.transitions),
            ("topics.anomalies", &topics.anomalies),
            ("topics.dead_letters", &topics.dead_letters),
            ("topics.changelog", &topics.changelog),
        ] {
            if output.trim() == topics.input.trim() {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!(
                        "is the input topic {:?}: an output must be another topic",
                        topics.input
                    ),
                });
            }
        }
        let l = self.lifecycle;
        let engine = EngineConfig {
            allowed_lateness_ms: millis("lifecycle.allowed_lateness_ms", l.allowed_lateness_ms)?,
            terminal_retention_ms: millis(
                "lifecycle.terminal_retention_ms",
                l.terminal_retention_ms,
            )?,
            max_clock_skew_ms: millis("lifecycle.max_clock_skew_ms", l.max_clock_skew_ms)?,
            max_sessions: match self.limits.max_sessions_per_partition {
                0 => None,
                n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            },
        };
        let limits = Limits {
            max_record_bytes: positive("limits.max_record_bytes", self.limits.max_record_bytes)?
                as usize,
            max_depth: positive("limits.max_depth", self.limits.max_depth)? as usize,
        };
        let transactional_id = if self.pipeline.transactional_id.trim().is_empty() {
            format!("{}-{}", self.group_id, hostname())
        } else {
            self.pipeline.transactional_id
        };
        let group_instance_id =
            Some(self.pipeline.group_instance_id.trim().to_owned()).filter(|id| !id.is_empty());
        let RawKafka {
            shared: mut kafka,
            consumer: mut consumer_only,
            producer: mut producer_only,
        } = self.kafka;
        resolve_files("kafka", &mut kafka)?;
        resolve_files("kafka.consumer", &mut consumer_only)?;
        resolve_files("kafka.producer", &mut producer_only)?;
        kafka
            .entry("bootstrap.servers".into())
            .or_insert(non_empty("brokers", self.brokers)?);
        let for_kind = |only: BTreeMap<String, String>| {
            let mut merged = kafka.clone();
            merged.extend(only);
            merged
        };
        let kafka_consumer = for_kind(consumer_only);
        let kafka_producer = for_kind(producer_only);
        Ok(Config {
            group_id: non_empty("group_id", self.group_id)?,
            delivery,
            topics,
            engine,
            idle_timeout: (l.idle_timeout_ms > 0).then(|| Duration::from_millis(l.idle_timeout_ms)),
            limits,
            batch_size: positive("pipeline.batch_size", self.pipeline.batch_size)? as usize,
            workers: workers(self.pipeline.workers)?,
            drain_timeout: Duration::from_millis(positive(
                "pipeline.drain_timeout_ms",
                self.pipeline.drain_timeout_ms,
            )?),
            retry_backoff: Duration::from_millis(positive(
                "pipeline.retry_backoff_ms",
                self.pipeline.retry_backoff_ms,
            )?),
            transactional_id,
            group_instance_id,
            on_corrupt,
            input_stall_timeout: (self.pipeline.input_stall_timeout_ms > 0)
                .then(|| Duration::from_millis(self.pipeline.input_stall_timeout_ms)),
            liveness_timeout: (self.pipeline.liveness_timeout_ms > 0)
                .then(|| Duration::from_millis(self.pipeline.liveness_timeout_ms)),
            transaction_max_records: positive(
                "pipeline.transaction_max_records",
                self.pipeline.transaction_max_records,
            )? as usize,
            http_listen,
            ingest: self.ingest.validate()?,
            log_format,
            kafka,
            kafka_consumer,
            kafka_producer,
        })
    }
}
