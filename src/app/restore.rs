//! Restoring a partition's state from its changelog partition (SPEC section 6): the one
//! dispatch of a changelog record into an engine (state values, tombstones, the progress
//! record), used by the Kafka reader here and by the tests, and the exactly-once wait for
//! stable committed offsets before a restore.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio_util::sync::CancellationToken;

use crate::changelog::{self, Addressed, ChangelogError, Progress};
use crate::config::{Config, OnCorrupt};
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
    /// Unreadable records skipped (`state.on_corrupt = "skip"`).
    pub skipped: u64,
    on_corrupt: OnCorrupt,
}

impl Restorer {
    pub fn new(engine: Engine, on_corrupt: OnCorrupt) -> Self {
        Restorer {
            engine,
            progress: Progress::default(),
            skipped: 0,
            on_corrupt,
        }
    }

    /// Applies one changelog record: the progress record restores the watermark and
    /// `applied_through`; a state value restores its session; a tombstone forgets it. A record
    /// that cannot be read is an error, or skipped and counted under `OnCorrupt::Skip`.
    pub fn apply(&mut self, record: ChangelogRecord<'_>) -> Result<(), CorruptRecord> {
        match self.dispatch(record) {
            Ok(()) => Ok(()),
            Err(source) => {
                let error = CorruptRecord {
                    offset: record.offset,
                    source,
                };
                match self.on_corrupt {
                    OnCorrupt::Stop => Err(error),
                    OnCorrupt::Skip => {
                        tracing::warn!(%error, "Skipping an unreadable changelog record (state.on_corrupt = \"skip\").");
                        metrics::counter!(m::STATE_CORRUPT_RECORDS_TOTAL, "action" => m::ACTION_SKIPPED)
                            .increment(1);
                        self.skipped += 1;
                        Ok(())
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, record: ChangelogRecord<'_>) -> Result<(), ChangelogError> {
        match changelog::addressed(record.key, record.value)? {
            Addressed::Progress => {
                if let Some(value) = record.value {
                    let restored = changelog::decode_watermark(value)?;
                    self.engine
                        .restore_watermark(restored.watermark, restored.max_event_time);
                    self.progress = restored;
                }
            }
            Addressed::Session(id) => match record.value {
                None => self.engine.forget(id),
                Some(value) => self.engine.restore(id, &changelog::decode_state(value)?),
            },
        }
        Ok(())
    }
}

/// How a partition's restore ended.
pub enum RestoreOutcome {
    Restored(Box<Engine>, Progress),
    /// A corrupt changelog record under `state.on_corrupt = "stop"`: the partition must not
    /// be processed.
    Stopped(CorruptRecord),
    /// Shut down while the changelog could not be read.
    Cancelled,
}

/// The longest wait between two attempts at reading a changelog partition.
const MAX_RESTORE_BACKOFF: Duration = Duration::from_secs(10);

/// Rebuilds a partition's engine from its changelog partition, up to the end offset seen at
/// the start. The changelog is the partition's only memory, so nothing is guessed: a broker
/// that cannot be reached (or a read that times out) is retried with backoff, counted and
/// logged each time, until it succeeds or `shutdown` is cancelled; a corrupt record stops the
/// partition unless the operator chose to skip such records. Blocking.
pub fn restore_partition(
    config: &Config,
    partition: i32,
    shutdown: &CancellationToken,
    heartbeat: &super::Heartbeat,
) -> RestoreOutcome {
    let mut backoff = config.retry_backoff;
    loop {
        // Waiting for the broker is a choice, not a hang: `/healthz` stays 200.
        heartbeat.beat();
        let started = Instant::now();
        let mut restorer = Restorer::new(Engine::new(config.engine), config.on_corrupt);
        let read =
            source::read_changelog_partition(config, partition, |record| restorer.apply(record));
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
                    skipped = restorer.skipped,
                    applied_through = restorer.progress.applied_through,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "Restored partition state from the changelog."
                );
                return RestoreOutcome::Restored(Box::new(restorer.engine), restorer.progress);
            }
            Ok(Err(corrupt)) => {
                metrics::counter!(m::STATE_CORRUPT_RECORDS_TOTAL, "action" => m::ACTION_STOPPED)
                    .increment(1);
                tracing::error!(
                    topic = %config.topics.changelog,
                    partition,
                    offset = corrupt.offset,
                    error = %corrupt.source,
                    "Corrupt state changelog record: the partition is not processed (set state.on_corrupt = \"skip\" to restore without it)."
                );
                return RestoreOutcome::Stopped(corrupt);
            }
            Err(error) => {
                metrics::counter!(m::STATE_RESTORE_RETRIES_TOTAL).increment(1);
                tracing::warn!(
                    partition,
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "Could not read the state changelog; retrying (the partition is not processed meanwhile)."
                );
                if !sleep_unless_cancelled(backoff, shutdown) {
                    return RestoreOutcome::Cancelled;
                }
                backoff = (backoff * 2).min(MAX_RESTORE_BACKOFF);
            }
        }
    }
}

/// Sleeps `duration` in short steps; false when `shutdown` was cancelled meanwhile.
fn sleep_unless_cancelled(duration: Duration, shutdown: &CancellationToken) -> bool {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if shutdown.is_cancelled() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(duration));
    }
    !shutdown.is_cancelled()
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
        let mut restorer = Restorer::new(Engine::new(EngineConfig::default()), OnCorrupt::Stop);
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
            record(4, changelog::PROGRESS_KEY, Some(&progress_value)),
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
    fn an_unreadable_record_is_an_error_naming_its_offset_unless_skipping_is_chosen() {
        let corrupt = [
            record(3, b"sess_a", Some(&[9, 9])),
            record(4, &[0xff, 0xfe], Some(b"")),
            record(7, changelog::PROGRESS_KEY, Some(&[1, 2, 0])),
        ];
        for r in corrupt {
            let mut stopping = Restorer::new(Engine::new(EngineConfig::default()), OnCorrupt::Stop);
            let error = stopping.apply(r).unwrap_err();
            assert_eq!(error.offset, r.offset);
            assert!(
                error.to_string().contains(&format!("offset {}", r.offset)),
                "{error}"
            );
        }
        let mut skipping = Restorer::new(Engine::new(EngineConfig::default()), OnCorrupt::Skip);
        for r in corrupt {
            skipping.apply(r).unwrap();
        }
        skipping
            .apply(record(8, b"sess_b", Some(&state("active"))))
            .unwrap();
        assert_eq!(skipping.skipped, 3);
        assert_eq!(skipping.engine.len(), 1);
    }
}
