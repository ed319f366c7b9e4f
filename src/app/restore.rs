//! Restoring a partition's state from its changelog partition (SPEC section 6): the one
//! dispatch of a changelog record into an engine (state values, tombstones, the progress
//! record), used by the Kafka reader here and by the tests, and the exactly-once wait for
//! stable committed offsets before a restore.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::changelog::{self, ChangelogError, Progress};
use crate::config::Config;
use crate::engine::Engine;
use crate::kafka::source::{self, ChangelogRecord, InputContext};
use crate::metrics as m;

/// Bound on reading committed offsets before a restore.
const COMMITTED_OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

/// A changelog record that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("changelog record at offset {offset}: {source}")]
pub struct CorruptRecord {
    pub offset: i64,
    pub source: ChangelogError,
}

/// An engine being rebuilt from changelog records in offset order.
pub struct Restorer {
    pub engine: Engine,
    /// The last progress record read.
    pub progress: Progress,
    /// State values that could not be read and were skipped.
    pub skipped: u64,
}

impl Restorer {
    pub fn new(engine: Engine) -> Self {
        Restorer {
            engine,
            progress: Progress::default(),
            skipped: 0,
        }
    }

    /// Applies one changelog record: the progress record restores the watermark and
    /// `applied_through`; a state value restores its session; a tombstone forgets it. An
    /// unreadable progress record is an error (the partition cannot know where it stands); an
    /// unreadable state value, or a key that is not UTF-8, is skipped and counted.
    pub fn apply(&mut self, record: ChangelogRecord<'_>) -> Result<(), CorruptRecord> {
        let corrupt = |source| CorruptRecord {
            offset: record.offset,
            source,
        };
        if record.key == changelog::WATERMARK_KEY {
            if let Some(value) = record.value {
                let restored = changelog::decode_watermark(value).map_err(corrupt)?;
                self.engine
                    .restore_watermark(restored.watermark, restored.max_event_time);
                self.progress = restored;
            }
            return Ok(());
        }
        let Ok(id) = std::str::from_utf8(record.key) else {
            self.skipped += 1;
            return Ok(());
        };
        match record.value {
            None => self.engine.forget(id),
            Some(value) => match changelog::decode_state(value) {
                Ok(state) => self.engine.restore(id, &state),
                Err(error) => {
                    tracing::warn!(offset = record.offset, %error, "Skipping an unreadable changelog record.");
                    self.skipped += 1;
                }
            },
        }
        Ok(())
    }
}

/// Rebuilds a partition's engine from its changelog partition, up to the end offset seen at
/// the start. An unreadable changelog is logged and the partition starts empty.
pub fn restore_partition(config: &Config, partition: i32) -> (Engine, Progress) {
    let started = Instant::now();
    let mut restorer = Restorer::new(Engine::new(config.engine));
    let read = source::read_changelog_partition(config, partition, |record| restorer.apply(record));
    match read {
        Ok(Ok(records)) => {
            let elapsed = started.elapsed();
            metrics::histogram!(m::STATE_RESTORE_SECONDS).record(elapsed.as_secs_f64());
            metrics::counter!(m::STATE_RESTORED_SESSIONS_TOTAL)
                .increment(restorer.engine.len() as u64);
            tracing::info!(
                partition,
                records,
                sessions = restorer.engine.len(),
                elapsed_ms = elapsed.as_millis() as u64,
                "Restored partition state from the changelog."
            );
            (restorer.engine, restorer.progress)
        }
        Ok(Err(error)) => starting_empty(config, partition, &error),
        Err(error) => starting_empty(config, partition, &error),
    }
}

fn starting_empty(
    config: &Config,
    partition: i32,
    error: &dyn std::error::Error,
) -> (Engine, Progress) {
    tracing::error!(partition, %error, "Could not restore partition state; starting empty.");
    (Engine::new(config.engine), Progress::default())
}

/// Exactly-once, before restoring `partitions`: their committed offsets, read with
/// `require_stable` semantics (librdkafka waits out a previous owner's open transaction), so
/// that the read_committed changelog holds everything up to them. `None` when they could not
/// be read.
pub fn stable_committed_offsets(
    consumer: &StreamConsumer<InputContext>,
    input_topic: &str,
    partitions: &[i32],
) -> Option<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition(input_topic, p);
    }
    match consumer.committed_offsets(list, COMMITTED_OFFSETS_TIMEOUT) {
        Ok(list) => Some(list),
        Err(error) => {
            tracing::warn!(%error, "Could not read committed offsets before restoring.");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, StateRecord};

    fn state(status: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        changelog::encode_state(
            &mut bytes,
            &StateRecord {
                status,
                since: 10,
                updated_at: 20,
                created_at: None,
                expire_at: None,
                abandon_at: None,
                user_id: Some("user_1"),
                client_id: None,
                impersonated: false,
                inferred: false,
            },
        );
        bytes
    }

    fn record<'a>(offset: i64, key: &'a [u8], value: Option<&'a [u8]>) -> ChangelogRecord<'a> {
        ChangelogRecord { offset, key, value }
    }

    #[test]
    fn states_tombstones_and_progress_are_dispatched_in_order() {
        let mut restorer = Restorer::new(Engine::new(EngineConfig::default()));
        let (active, ended) = (state("active"), state("ended"));
        let progress = Progress {
            watermark: Some(5),
            max_event_time: Some(7),
            applied_through: Some(41),
        };
        let mut progress_value = Vec::new();
        changelog::encode_watermark(&mut progress_value, &progress);
        for r in [
            record(0, b"sess_a", Some(&active)),
            record(1, b"sess_b", Some(&active)),
            record(2, b"sess_a", Some(&ended)),
            record(3, b"sess_b", None),
            record(4, changelog::WATERMARK_KEY, Some(&progress_value)),
        ] {
            restorer.apply(r).unwrap();
        }
        assert_eq!(restorer.progress, progress);
        assert_eq!(restorer.engine.watermark(), Some(5));
        assert_eq!(restorer.engine.len(), 1);
        assert_eq!(restorer.engine.session("sess_a").unwrap().status, "ended");
        assert!(restorer.engine.session("sess_b").is_none());
    }

    #[test]
    fn unreadable_states_are_skipped_and_an_unreadable_progress_record_is_an_error() {
        let mut restorer = Restorer::new(Engine::new(EngineConfig::default()));
        restorer.apply(record(0, b"sess_a", Some(&[9, 9]))).unwrap();
        restorer
            .apply(record(1, &[0xff, 0xfe], Some(&state("active"))))
            .unwrap();
        assert_eq!(restorer.skipped, 2);
        assert!(restorer.engine.is_empty());
        let error = restorer
            .apply(record(7, changelog::WATERMARK_KEY, Some(&[1, 2, 0])))
            .unwrap_err();
        assert_eq!(error.offset, 7);
        assert!(error.to_string().contains("offset 7"), "{error}");
    }
}
