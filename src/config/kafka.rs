//! The `[kafka]` table and its overrides: librdkafka properties for every client or one kind
//! of client, values as TOML or a `--set` spells them, `_file` keys read from files, and which
//! properties are secrets.

use std::collections::BTreeMap;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use super::{override_toml, ConfigError};

/// The `[kafka]` table: properties for every client, and two sub-tables for one kind of
/// client each (librdkafka warns of a consumer property given to a producer and back).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RawKafka {
    #[serde(flatten)]
    pub shared: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub consumer: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub producer: BTreeMap<String, String>,
}

/// An entry of the `[kafka]` table: a property, or one of the two sub-tables.
#[derive(Deserialize)]
#[serde(untagged)]
enum KafkaEntry {
    Property(PropertyValue),
    Table(BTreeMap<String, PropertyValue>),
}

impl<'de> Deserialize<'de> for RawKafka {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let entries = BTreeMap::<String, KafkaEntry>::deserialize(deserializer)?;
        let mut kafka = RawKafka::default();
        for (key, entry) in entries {
            match (key.as_str(), entry) {
                (_, KafkaEntry::Property(value)) if !is_client_kind(&key) => {
                    kafka.shared.insert(key, value.into_text());
                }
                ("consumer" | "producer", KafkaEntry::Table(table)) => {
                    let target = if key == "consumer" {
                        &mut kafka.consumer
                    } else {
                        &mut kafka.producer
                    };
                    target.extend(table.into_iter().map(|(k, v)| (k, v.into_text())));
                }
                (_, KafkaEntry::Table(_)) => {
                    return Err(D::Error::custom(format!(
                        "`kafka.{key}` is a table; the only tables in [kafka] are [kafka.consumer] and [kafka.producer] (a dotted librdkafka property is quoted: \"{key}.…\" = …)"
                    )))
                }
                (_, KafkaEntry::Property(_)) => {
                    return Err(D::Error::custom(format!(
                        "`kafka.{key}` must be a table of librdkafka properties ([kafka.{key}])"
                    )))
                }
            }
        }
        Ok(kafka)
    }
}

/// `consumer` and `producer` name the sub-tables of `[kafka]`, not properties.
fn is_client_kind(key: &str) -> bool {
    key == "consumer" || key == "producer"
}

/// A librdkafka property value as TOML (or a `--set`) may spell it.
#[derive(Deserialize)]
#[serde(untagged)]
enum PropertyValue {
    Text(String),
    Whole(i64),
    Fraction(f64),
    Flag(bool),
}

impl PropertyValue {
    fn into_text(self) -> String {
        match self {
            PropertyValue::Text(text) => text,
            PropertyValue::Whole(n) => n.to_string(),
            PropertyValue::Fraction(x) => x.to_string(),
            PropertyValue::Flag(b) => b.to_string(),
        }
    }
}

/// The librdkafka property an override key names, and the kind of client it is for (`None`:
/// every client): `kafka.linger.ms` and `kafka."linger.ms"` are both `linger.ms`,
/// `kafka.consumer.fetch.min.bytes` is the consumers' `fetch.min.bytes` (no librdkafka
/// property starts with `consumer.` or `producer.`).
pub(super) fn kafka_property(key: &str) -> Option<(Option<String>, String)> {
    let rest = key.strip_prefix("kafka.")?.trim();
    let (kind, rest) = match rest.split_once('.') {
        Some((kind, property)) if is_client_kind(kind) => (Some(kind.to_owned()), property),
        _ => (None, rest),
    };
    let unquoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(rest);
    Some((kind, unquoted.to_owned()))
}

/// An override's value for a librdkafka property, read like every other override (see
/// [`override_toml`]): a TOML string's contents (`"5"` is `5`), a number or boolean as
/// librdkafka reads it, a bare word as written (`SASL_SSL`).
pub(super) fn property_value(value: &str) -> String {
    Figment::from(Toml::string(&override_toml("value", value)))
        .extract_inner::<PropertyValue>("value")
        .map_or_else(|_| value.trim().to_owned(), PropertyValue::into_text)
}

/// `[kafka]` properties from `SESSIONFLOW__KAFKA__*` variables (see [`load`]), by the
/// kind of client they are for: `SESSIONFLOW__KAFKA__CONSUMER__FETCH_MIN_BYTES` is
/// `[kafka.consumer]`'s `fetch.min.bytes`.
pub(super) fn kafka_from_env(
    vars: impl Iterator<Item = (String, String)>,
) -> BTreeMap<Option<String>, BTreeMap<String, String>> {
    const PREFIX: &str = "SESSIONFLOW__KAFKA__";
    let mut by_kind: BTreeMap<Option<String>, BTreeMap<String, String>> = BTreeMap::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let (kind, rest) = match rest.split_once("__") {
            Some((kind, property)) if is_client_kind(kind) => (Some(kind.to_owned()), property),
            _ => (None, rest.as_str()),
        };
        let key = match rest.strip_suffix("_file") {
            Some(base) => format!("{}{FILE_SUFFIX}", base.replace('_', ".")),
            None => rest.replace('_', "."),
        };
        by_kind.entry(kind).or_default().insert(key, value);
    }
    by_kind
}

/// A `[kafka]` key ending in this reads the value of the key without it from a file.
const FILE_SUFFIX: &str = "_file";

/// Whether a librdkafka property holds a secret (never logged, printed or exported).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "ssl.key.pem",
        "oauthbearer.config",
        "token",
    ]
    .iter()
    .any(|marker| key.contains(marker))
}

/// `properties` with secret values replaced, for anything that shows them.
pub fn redacted(properties: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    properties
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret(k) {
                "<redacted>".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// Replaces every `key_file = PATH` with `key = <the file's contents>` (a trailing newline
/// dropped). Errors name the key and the path, never the contents.
pub(super) fn resolve_files(
    table: &str,
    kafka: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let file_keys: Vec<String> = kafka
        .keys()
        .filter(|k| k.ends_with(FILE_SUFFIX))
        .cloned()
        .collect();
    for file_key in file_keys {
        let path = kafka.remove(&file_key).unwrap_or_default();
        let key = file_key[..file_key.len() - FILE_SUFFIX.len()].to_owned();
        if kafka.contains_key(&key) {
            return Err(ConfigError::Load(format!(
                "invalid configuration: both `{table}.\"{key}\"` and `{table}.\"{file_key}\"` are set; keep one"
            )));
        }
        let contents = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::Load(format!(
                "invalid configuration (key `{table}.\"{file_key}\"`): cannot read {path}: {e}"
            ))
        })?;
        let value = contents.strip_suffix('\n').unwrap_or(&contents);
        let value = value.strip_suffix('\r').unwrap_or(value);
        kafka.insert(key, value.to_owned());
    }
    Ok(())
}
