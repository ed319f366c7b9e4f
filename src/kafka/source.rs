//! The input side: the input consumer with all its properties, its context (rebalances,
//! statistics, the drain before a revocation), storing and committing offsets, and the
//! reader of a state changelog partition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;

use super::sink::DeliveryState;
use super::{base_config, client_error, lock, KafkaSetupError};
use crate::config::{Config, Delivery};

/// A change of assignment, seen by the processing loop after the consumer's poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Where librdkafka's statistics say a partition's consumption stands.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchProgress {
    /// The next offset librdkafka will fetch (negative: none yet).
    pub next_offset: i64,
    /// The offset a consumer can read up to: the high watermark, or the last stable offset
    /// under read_committed (negative: unknown).
    pub end_offset: i64,
}

impl FetchProgress {
    /// Behind the end with records to fetch. A fetch position not known yet counts as behind
    /// a non-empty partition: a partition that cannot even start fetching stalls too.
    pub fn behind(self) -> bool {
        self.end_offset > 0 && self.next_offset < self.end_offset
    }
}

/// Consumer context: records rebalances for the processing loop, drains outputs and commits
/// before partitions are revoked, and keeps per-partition lag from statistics.
pub struct InputContext {
    pub topic: String,
    /// The consumer group, a label of the exported statistics.
    pub group: String,
    pub changes: Mutex<Vec<AssignmentChange>>,
    /// Consumer lag per partition from the latest statistics: the end offset (high
    /// watermark, or last stable offset under read_committed) minus the consumer's position,
    /// the next offset handed to the pipeline (-1: unknown). Not librdkafka's
    /// `consumer_lag`, which counts from the committed offset: committed once a second, it
    /// swings with the commit cycle at any steady rate.
    pub lag: Mutex<HashMap<i32, i64>>,
    /// Fetch position and end offset per partition from the latest statistics.
    pub fetch: Mutex<HashMap<i32, FetchProgress>>,
    /// read_committed (exactly-once): a partition's end is its last stable offset.
    pub read_committed: bool,
    pub delivery: Arc<DeliveryState>,
    /// Flushes the producer, bounded; set once the producer exists.
    pub drain: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

/// Records between the consumer's position and the partition's end; -1 when either is not
/// known yet (librdkafka reports negative sentinels until the first fetch).
pub fn position_lag(end_offset: i64, position: i64) -> i64 {
    if end_offset < 0 || position < 0 {
        -1
    } else {
        (end_offset - position).max(0)
    }
}

impl ClientContext for InputContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::forward_log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        super::stats::export(
            super::stats::ClientRole::Consumer,
            &statistics,
            Some(super::stats::InputScope {
                topic: &self.topic,
                group: &self.group,
            }),
        );
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut lag = lock(&self.lag);
        let mut fetch = lock(&self.fetch);
        lag.clear();
        fetch.clear();
        for (id, partition) in &topic.partitions {
            if *id >= 0 {
                let end_offset = if self.read_committed && partition.ls_offset >= 0 {
                    partition.ls_offset
                } else {
                    partition.hi_offset
                };
                // Before the first record of an assignment reaches the pipeline, the position
                // is where consumption starts: the committed offset. (An idle partition after
                // a restart must read as caught up, or its watermark never advances.)
                let position = if partition.app_offset >= 0 {
                    partition.app_offset
                } else {
                    partition.committed_offset
                };
                lag.insert(*id, position_lag(end_offset, position));
                fetch.insert(
                    *id,
                    FetchProgress {
                        next_offset: partition.next_offset,
                        end_offset,
                    },
                );
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka consumer error; librdkafka retries.");
    }
}

impl ConsumerContext for InputContext {
    /// Every offset commit, librdkafka's automatic ones included, counted by outcome (a
    /// commit that fails leaves the records to be read again after a restart).
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        use crate::metrics as m;
        let outcome = match result {
            Ok(()) => m::OUTCOME_COMMITTED,
            // Nothing was stored since the last commit: nothing to count.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => return,
            Err(error) => {
                tracing::debug!(%error, "Offset commit failed.");
                m::OUTCOME_FAILED
            }
        };
        metrics::counter!(m::KAFKA_COMMITS_TOTAL, "outcome" => outcome).increment(1);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "Partitions revoked; draining their outputs.");
            // Every record of these partitions was processed and its outputs sent: wait for
            // their acknowledgements, then commit what they make committable.
            if let Some(drain) = lock(&self.drain).as_ref() {
                drain();
            }
            store_and_commit(
                consumer,
                &self.topic,
                &self.delivery,
                Some(&partitions),
                CommitMode::Sync,
            );
            lock(&self.changes).push(AssignmentChange::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "Partitions assigned.");
                lock(&self.changes).push(AssignmentChange::Assigned(partitions));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "Rebalance error."),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Stores the committable offsets (of `only` these partitions, or all) and commits them.
/// Used on revocation and shutdown; in steady state auto-commit batches them.
pub fn store_and_commit<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    delivery: &DeliveryState,
    only: Option<&[i32]>,
    mode: CommitMode,
) {
    let moved = {
        let mut tracker = lock(&delivery.tracker);
        let moved = tracker.take_committable();
        if let Some(partitions) = only {
            for &p in partitions {
                tracker.remove(p);
            }
        }
        moved
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
    if let Err(error) = consumer.commit(&list, mode) {
        tracing::warn!(%error, "Could not commit offsets; they are committed later or re-read.");
    }
}

/// The input consumer, subscribed to nothing yet. Offsets are stored by the pipeline only once
/// what a record caused is acknowledged (at-least-once: auto-commit sends what was stored;
/// exactly-once: the transactions commit them, and input written by transactional producers
/// is read only once committed). Properties of the `[kafka]` table win, except `group.id`.
pub fn input_consumer(
    config: &Config,
    context: InputContext,
) -> Result<StreamConsumer<InputContext>, KafkaSetupError> {
    let mut consumer_config = base_config(&config.kafka_consumer);
    let (auto_commit, isolation) = match config.delivery {
        Delivery::ExactlyOnce => ("false", "read_committed"),
        Delivery::AtLeastOnce => ("true", "read_uncommitted"),
    };
    for (key, value) in [
        ("enable.auto.commit", auto_commit),
        ("isolation.level", isolation),
        ("auto.commit.interval.ms", "1000"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("statistics.interval.ms", "1000"),
        // Larger fetches keep the local queue full while the broker also takes our writes
        // (measured: about 1.5x the throughput of the 1 MiB default, docs/benchmarks.md).
        ("max.partition.fetch.bytes", "10485760"),
        // When the local queue is over its limits, librdkafka waits this long before it
        // fetches again (default 1 s): a pipeline that drains the queue in less than that
        // then waits for input with nothing to do (measured: the loop idle about a third of
        // the time, and 1.9x the throughput at 10 ms, docs/benchmarks.md).
        ("fetch.queue.backoff.ms", "10"),
    ] {
        super::set_default(&mut consumer_config, key, value);
    }
    consumer_config.set("group.id", &config.group_id);
    if let Some(id) = &config.group_instance_id {
        // Static membership: only the input consumer is a group member.
        consumer_config.set("group.instance.id", id);
    }
    consumer_config
        .create_with_context(context)
        .map_err(|e| client_error("consumer", e))
}

/// One record of a changelog partition, borrowed from the reader.
#[derive(Debug, Clone, Copy)]
pub struct ChangelogRecord<'a> {
    pub offset: i64,
    pub key: &'a [u8],
    /// `None` is a tombstone.
    pub value: Option<&'a [u8]>,
}

/// Why a changelog partition could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogReadError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("reading changelog {topic:?} partition {partition}: {source}")]
    Kafka {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error(
        "reading changelog {topic:?} partition {partition}: no record for {limit:?} at offset {next} of {high} (broker unreachable?)"
    )]
    Stalled {
        topic: String,
        partition: i32,
        next: i64,
        high: i64,
        limit: Duration,
    },
}

/// How long the changelog reader waits for its next record before it gives up (the caller
/// retries): librdkafka reconnects by itself and may never report a broker that is away.
const CHANGELOG_STALL_LIMIT: Duration = Duration::from_secs(15);

/// Reads one changelog partition from its low watermark to the end seen at the start, handing
/// each record in offset order to `each`; returns how many were read. Only committed
/// transactions are read (exactly-once); the end is then the last stable offset, which the
/// partition-EOF event marks (aborted records and transaction markers keep the last offset
/// read below the high watermark). Blocking.
pub fn read_changelog_partition<E>(
    config: &Config,
    partition: i32,
    mut each: impl FnMut(ChangelogRecord<'_>) -> Result<(), E>,
) -> Result<Result<u64, E>, ChangelogReadError> {
    let topic = &config.topics.changelog;
    let kafka_error = |source| ChangelogReadError::Kafka {
        topic: topic.clone(),
        partition,
        source,
    };
    let mut client = base_config(&config.kafka_consumer);
    client.set("enable.auto.commit", "false");
    client.set("group.id", format!("{}.restore", config.group_id));
    client.set("max.partition.fetch.bytes", "10485760");
    client.set("isolation.level", "read_committed");
    client.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<super::LogContext> =
        client
            .create_with_context(super::LogContext)
            .map_err(|e| client_error("restore consumer", e))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, CHANGELOG_STALL_LIMIT)
        .map_err(kafka_error)?;
    if high <= low {
        return Ok(Ok(0));
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(low))
        .map_err(kafka_error)?;
    consumer.assign(&list).map_err(kafka_error)?;
    let mut records = 0;
    let mut next = low;
    let mut last_progress = Instant::now();
    while next < high {
        if last_progress.elapsed() >= CHANGELOG_STALL_LIMIT {
            return Err(ChangelogReadError::Stalled {
                topic: topic.clone(),
                partition,
                next,
                high,
                limit: CHANGELOG_STALL_LIMIT,
            });
        }
        let message = match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(message) => message.map_err(kafka_error)?,
        };
        next = message.offset() + 1;
        records += 1;
        last_progress = Instant::now();
        let record = ChangelogRecord {
            offset: message.offset(),
            key: message.key().unwrap_or(b""),
            value: message.payload(),
        };
        if let Err(error) = each(record) {
            return Ok(Err(error));
        }
    }
    Ok(Ok(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What librdkafka logs within a second of creating a consumer from the consumers'
    /// properties of a configuration with `overrides`, recorded by the client's own context
    /// (whichever thread librdkafka logs from, whenever it hands the line over).
    fn consumer_log(overrides: &[(&str, &str)]) -> String {
        #[derive(Default)]
        struct Recorder(Mutex<Vec<String>>);
        impl ClientContext for Recorder {
            fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, message: &str) {
                lock(&self.0).push(message.to_owned());
            }
        }
        impl ConsumerContext for Recorder {}
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = crate::config::load(None, &overrides).unwrap();
        let consumer: BaseConsumer<Recorder> = base_config(&config.kafka_consumer)
            .set("group.id", "g")
            .create_with_context(Recorder::default())
            .unwrap();
        // librdkafka may hand its log lines over on the next poll of the main queue.
        for _ in 0..10 {
            if lock(&consumer.context().0)
                .iter()
                .any(|l| l.contains("will be ignored"))
            {
                break;
            }
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let lines = lock(&consumer.context().0).join("\n");
        lines
    }

    #[test]
    fn producer_properties_kept_to_their_table_reach_no_consumer_and_librdkafka_says_so_otherwise()
    {
        let kept = consumer_log(&[("kafka.producer.linger.ms", "20")]);
        assert!(!kept.contains("will be ignored"), "{kept}");
        let shared = consumer_log(&[("kafka.linger.ms", "20")]);
        assert!(
            shared.contains("queue.buffering.max.ms is a producer property and will be ignored"),
            "librdkafka warns of a producer property given to a consumer: {shared}"
        );
    }

    #[test]
    fn lag_counts_from_the_position_to_the_end_and_is_unknown_before_the_first_fetch() {
        assert_eq!(position_lag(1_000, 960), 40);
        assert_eq!(position_lag(1_000, 1_000), 0);
        // librdkafka's sentinels (-1001: invalid) until the first fetch.
        assert_eq!(position_lag(1_000, -1001), -1);
        assert_eq!(position_lag(-1, 5), -1);
    }
}
