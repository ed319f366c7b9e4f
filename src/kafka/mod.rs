//! Kafka plumbing for the live pipeline: client configuration, the consumer context that
//! reports rebalances and statistics, the producer whose delivery reports drive the offset
//! tracker, failed outputs queued for retry, and topic checks at start-up.

pub mod offsets;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

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
    #[error("cannot create topic {topic:?}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("changelog topic {topic:?} has {found} partitions but the input has {expected}: they must match (state of input partition p lives in changelog partition p)")]
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

/// Admin client context: keeps the last connection error librdkafka reported, so that a
/// failed start-up names the cause (wrong password, untrusted certificate) rather than a
/// bare transport failure.
#[derive(Default)]
pub struct SetupContext {
    last_error: Mutex<Option<String>>,
}

impl SetupContext {
    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl ClientContext for SetupContext {
    /// librdkafka reports authentication and TLS failures as log lines from its broker
    /// threads (the error events are not served during a blocking metadata request).
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            tracing::warn!(facility, message, "librdkafka");
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(message.to_owned());
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka connection error.");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.to_owned());
        }
    }
}

impl ConsumerContext for SetupContext {}

type Admin = AdminClient<SetupContext>;

/// Reads topic metadata with a client whose error events can be served afterwards: a failed
/// request then names what the broker connection reported.
struct MetadataProbe {
    client: BaseConsumer<SetupContext>,
    /// `bootstrap.servers`, for error messages.
    brokers: String,
}

impl MetadataProbe {
    fn new(properties: &BTreeMap<String, String>) -> Result<Self, KafkaSetupError> {
        let client = base_config(properties)
            .create_with_context(SetupContext::default())
            .map_err(|source| client_error("metadata client", source))?;
        let brokers = properties
            .get("bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        Ok(MetadataProbe { client, brokers })
    }

    fn fetch(&self, topic: Option<&str>) -> Result<rdkafka::metadata::Metadata, KafkaSetupError> {
        self.client
            .fetch_metadata(topic, Duration::from_secs(10))
            .map_err(|source| {
                // Serve the queued error events (authentication, TLS) into the context.
                let _ = self.client.poll(Duration::from_millis(200));
                KafkaSetupError::Metadata {
                    brokers: self.brokers.clone(),
                    source: Box::new(source),
                    detail: self.client.context().last_error(),
                }
            })
    }
}

/// Checks the state changelog topic: it must have the input's partition count; created
/// compacted when missing.
pub async fn ensure_changelog(
    properties: &BTreeMap<String, String>,
    topic: &str,
    input_partitions: i32,
    replication: i32,
) -> Result<(), KafkaSetupError> {
    let admin = admin_client(properties)?;
    let probe = MetadataProbe::new(properties)?;
    let partitions = || -> Result<Option<i32>, KafkaSetupError> {
        let metadata = probe.fetch(Some(topic))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    };
    match partitions()? {
        Some(found) if found == input_partitions => return Ok(()),
        Some(found) => {
            return Err(KafkaSetupError::ChangelogPartitions {
                topic: topic.to_owned(),
                found,
                expected: input_partitions,
            })
        }
        None => {}
    }
    let new = NewTopic::new(
        topic,
        input_partitions,
        TopicReplication::Fixed(replication),
    )
    .set("cleanup.policy", "compact");
    create_topics(&admin, &[new]).await?;
    tracing::info!(
        topic,
        partitions = input_partitions,
        "Created the compacted state changelog."
    );
    for _ in 0..50 {
        if partitions()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// librdkafka properties for every client, from the configuration's `[kafka]` table.
pub fn base_config(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// The phase bit of an opaque (set for changelog writes).
const CHANGELOG_BIT: u64 = 1 << 47;
const SEQ_MASK: u64 = CHANGELOG_BIT - 1;

/// Packs a ticket and its phase into the producer's per-message opaque without allocating:
/// 16 bits of partition, 1 bit of phase, 47 bits of sequence number.
pub fn ticket_to_opaque((partition, seq): Ticket, phase: Phase) -> usize {
    let bit = if phase == Phase::Changelog {
        CHANGELOG_BIT
    } else {
        0
    };
    ((partition as u64 & 0xffff) << 48 | bit | (seq & SEQ_MASK)) as usize
}

pub fn opaque_to_ticket(opaque: usize) -> (Ticket, Phase) {
    let raw = opaque as u64;
    let phase = if raw & CHANGELOG_BIT != 0 {
        Phase::Changelog
    } else {
        Phase::Output
    };
    (((raw >> 48) as i32, raw & SEQ_MASK), phase)
}

/// A message whose delivery failed, kept for another try: nothing is dropped.
#[derive(Debug)]
pub struct RetryMessage {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Option<OwnedHeaders>,
    pub opaque: usize,
}

/// What delivery reports update: the offset tracker and the retry queue.
pub struct DeliveryState {
    pub tracker: Mutex<OffsetTracker>,
    pub retries: Mutex<VecDeque<RetryMessage>>,
    pub delivery_errors: AtomicU64,
}

impl DeliveryState {
    pub fn new() -> Arc<Self> {
        Arc::new(DeliveryState {
            tracker: Mutex::new(OffsetTracker::default()),
            retries: Mutex::new(VecDeque::new()),
            delivery_errors: AtomicU64::new(0),
        })
    }
}

/// Producer context: acknowledged outputs complete their record's ticket; failed ones are
/// queued for retry with their original bytes. A transactional producer's failed message
/// makes its transaction abort instead (the batch is then derived again from restored
/// state), so it is only counted.
pub struct OutputContext {
    pub state: Arc<DeliveryState>,
    pub transactional: bool,
}

impl ClientContext for OutputContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka producer error.");
    }
}

impl ProducerContext for OutputContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        match result {
            Ok(_) => {
                if let Ok(mut tracker) = self.state.tracker.lock() {
                    let (ticket, phase) = opaque_to_ticket(opaque);
                    tracker.delivered(ticket, phase);
                }
            }
            Err((error, message)) => {
                self.state.delivery_errors.fetch_add(1, Ordering::Relaxed);
                if self.transactional {
                    tracing::warn!(%error, topic = message.topic(), "Output delivery failed; its transaction will be aborted.");
                    return;
                }
                tracing::warn!(%error, topic = message.topic(), "Output delivery failed; it will be retried.");
                let headers = message.headers().map(|h| {
                    h.iter().fold(OwnedHeaders::new(), |acc, header| {
                        acc.insert(Header {
                            key: header.key,
                            value: header.value,
                        })
                    })
                });
                let retry = RetryMessage {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    headers,
                    opaque,
                };
                if let Ok(mut retries) = self.state.retries.lock() {
                    retries.push_back(retry);
                }
            }
        }
    }
}

/// The output producer: idempotent, lz4. At-least-once: deliveries retried by librdkafka
/// without a local timeout (a broker that is down makes outputs wait, never fail by time).
/// Exactly-once (`transactional_id` given): a transactional producer, whose messages time out
/// with their transaction (librdkafka requires `message.timeout.ms` <=
/// `transaction.timeout.ms`).
pub fn output_producer(
    properties: &BTreeMap<String, String>,
    state: Arc<DeliveryState>,
    max_record_bytes: usize,
    transactional_id: Option<&str>,
) -> Result<ThreadedProducer<OutputContext>, KafkaSetupError> {
    let mut config = base_config(properties);
    set_default(&mut config, "enable.idempotence", "true");
    set_default(&mut config, "compression.type", "lz4");
    set_default(&mut config, "linger.ms", "5");
    if let Some(id) = transactional_id {
        set_default(&mut config, "transactional.id", id);
        // A crashed instance's open transaction holds back read_committed readers until the
        // broker aborts it (or the instance restarts with the same id): keep that short.
        set_default(&mut config, "transaction.timeout.ms", "30000");
    } else {
        set_default(&mut config, "message.timeout.ms", "0");
    }
    let max_message = max_message_bytes(max_record_bytes);
    set_default(&mut config, "message.max.bytes", &max_message.to_string());
    config
        .create_with_context(OutputContext {
            state,
            transactional: transactional_id.is_some(),
        })
        .map_err(|source| client_error("producer", source))
}

/// The largest output message: a dead letter carries an input record of up to
/// `max_record_bytes`, plus its key and headers.
pub fn max_message_bytes(max_record_bytes: usize) -> usize {
    (max_record_bytes + 64 * 1024).max(1_000_000)
}

fn set_default(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

/// A change of assignment, seen by the processing loop after the consumer's poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Consumer context: records rebalances for the processing loop, drains outputs and commits
/// before partitions are revoked, and keeps per-partition lag from statistics.
pub struct InputContext {
    pub topic: String,
    pub changes: Mutex<Vec<AssignmentChange>>,
    /// Consumer lag per partition from the latest statistics (-1: unknown).
    pub lag: Mutex<HashMap<i32, i64>>,
    pub delivery: Arc<DeliveryState>,
    /// Flushes the producer, bounded; set once the producer exists.
    pub drain: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl ClientContext for InputContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        if let Ok(mut lag) = self.lag.lock() {
            lag.clear();
            for (id, partition) in &topic.partitions {
                if *id >= 0 {
                    lag.insert(*id, partition.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka consumer error; librdkafka retries.");
    }
}

impl ConsumerContext for InputContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "Partitions revoked; draining their outputs.");
            // Every record of these partitions was processed and its outputs sent: wait for
            // their acknowledgements, then commit what they make committable.
            if let Ok(drain) = self.drain.lock() {
                if let Some(drain) = drain.as_ref() {
                    drain();
                }
            }
            store_and_commit(consumer, &self.topic, &self.delivery, Some(&partitions));
            if let Ok(mut changes) = self.changes.lock() {
                changes.push(AssignmentChange::Revoked(partitions));
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "Partitions assigned.");
                if let Ok(mut changes) = self.changes.lock() {
                    changes.push(AssignmentChange::Assigned(partitions));
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "Rebalance error."),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Stores the committable offsets (of `only` these partitions, or all) and commits them
/// synchronously. Used on revocation and shutdown; in steady state auto-commit batches them.
pub fn store_and_commit<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    delivery: &DeliveryState,
    only: Option<&[i32]>,
) {
    let moved = match delivery.tracker.lock() {
        Ok(mut tracker) => {
            let moved = tracker.take_committable();
            if let Some(partitions) = only {
                for &p in partitions {
                    tracker.remove(p);
                }
            }
            moved
        }
        Err(_) => return,
    };
    let mut list = TopicPartitionList::new();
    for (partition, offset) in moved {
        if only.is_none_or(|ps| ps.contains(&partition)) {
            let _ = list.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
    }
    if list.count() == 0 {
        return;
    }
    if let Err(error) = consumer.store_offsets(&list) {
        tracing::warn!(%error, "Could not store offsets.");
    }
    if let Err(error) = consumer.commit(&list, rdkafka::consumer::CommitMode::Sync) {
        tracing::warn!(%error, "Could not commit offsets; they are committed later or re-read.");
    }
}

fn admin_client(properties: &BTreeMap<String, String>) -> Result<Admin, KafkaSetupError> {
    base_config(properties)
        .create_with_context(SetupContext::default())
        .map_err(|source| client_error("admin client", source))
}

/// Creates topics; one that already exists (another instance was quicker) is fine.
async fn create_topics(admin: &Admin, topics: &[NewTopic<'_>]) -> Result<(), KafkaSetupError> {
    let names = || topics.iter().map(|t| t.name).collect::<Vec<_>>().join(", ");
    let results = admin
        .create_topics(topics, &AdminOptions::new())
        .await
        .map_err(|e| KafkaSetupError::CreateTopic {
            topic: names(),
            reason: e.to_string(),
        })?;
    for result in results {
        if let Err((topic, code)) = result {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(KafkaSetupError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Partition counts of the topics the pipeline uses; creates missing ones when allowed.
/// Outputs are created with the input's partition count (co-partitioned with it), and
/// accept messages of `max_message_bytes` (a dead letter carries a whole input record).
pub async fn ensure_topics(
    properties: &BTreeMap<String, String>,
    input: &str,
    outputs: &[&str],
    create: Option<(i32, i32)>,
    max_message_bytes: usize,
) -> Result<HashMap<String, i32>, KafkaSetupError> {
    let admin = admin_client(properties)?;
    let probe = MetadataProbe::new(properties)?;
    let counts = || -> Result<HashMap<String, i32>, KafkaSetupError> {
        let metadata = probe.fetch(None)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect())
    };
    let mut known = counts()?;
    let missing_input = !known.contains_key(input);
    let missing: Vec<&str> = std::iter::once(input)
        .chain(outputs.iter().copied())
        .filter(|t| !known.contains_key(*t))
        .collect();
    if missing.is_empty() {
        return Ok(known);
    }
    let Some((partitions, replication)) = create else {
        return Err(KafkaSetupError::MissingTopic(missing[0].to_owned()));
    };
    let input_partitions = if missing_input {
        partitions
    } else {
        known[input]
    };
    let max_message = max_message_bytes.to_string();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            NewTopic::new(t, input_partitions, TopicReplication::Fixed(replication))
                .set("max.message.bytes", &max_message)
        })
        .collect();
    create_topics(&admin, &new_topics).await?;
    tracing::info!(topics = ?missing, partitions = input_partitions, "Created missing topics.");
    // Metadata may lag creation briefly.
    for _ in 0..50 {
        known = counts()?;
        if missing.iter().all(|t| known.contains_key(*t)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_through_the_opaque() {
        for ticket in [(0, 0), (3, 12345), (65_535, (1 << 47) - 1)] {
            for phase in [Phase::Output, Phase::Changelog] {
                assert_eq!(
                    opaque_to_ticket(ticket_to_opaque(ticket, phase)),
                    (ticket, phase)
                );
            }
        }
    }
}
