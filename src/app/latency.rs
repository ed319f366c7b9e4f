//! Processing latency: from an input record's timestamp to the broker's acknowledgement of
//! everything it caused. Sampled once per batch and partition with the batch's oldest record
//! (its worst case), recorded when the partition's committable offset passes the batch
//! (at-least-once: outputs acknowledged; exactly-once: the transaction committed).

use std::collections::{HashMap, VecDeque};

use crate::metrics as m;

/// A batch's part of one partition, waiting for its outputs to be acknowledged.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Waiting {
    /// The offset after the batch's last record of the partition.
    next_offset: i64,
    /// The oldest input record timestamp of that part, in milliseconds since the epoch.
    oldest_timestamp_ms: i64,
}

/// Batches waiting for acknowledgement, by input partition.
#[derive(Default)]
pub struct PendingLatency {
    by_partition: HashMap<i32, VecDeque<Waiting>>,
}

impl PendingLatency {
    /// A batch read `partition` up to `next_offset`, its oldest record stamped
    /// `oldest_timestamp_ms`.
    pub fn note_batch(&mut self, partition: i32, next_offset: i64, oldest_timestamp_ms: i64) {
        self.by_partition
            .entry(partition)
            .or_default()
            .push_back(Waiting {
                next_offset,
                oldest_timestamp_ms,
            });
    }

    /// Everything of `partition` before `next_offset` is acknowledged at `now_ms`: records
    /// the latency of each batch that ends there or before.
    pub fn acknowledged(&mut self, partition: i32, next_offset: i64, now_ms: i64) {
        self.take_acknowledged(partition, next_offset, now_ms, |latency_ms| {
            metrics::histogram!(m::PROCESSING_LATENCY_SECONDS).record(latency_ms as f64 / 1000.0);
        });
    }

    /// Removes the batches of `partition` that end at or before `next_offset`, handing each
    /// one's latency in milliseconds (never below 0) to `record`.
    fn take_acknowledged(
        &mut self,
        partition: i32,
        next_offset: i64,
        now_ms: i64,
        mut record: impl FnMut(i64),
    ) {
        let Some(waiting) = self.by_partition.get_mut(&partition) else {
            return;
        };
        while let Some(batch) = waiting.front().copied() {
            if batch.next_offset > next_offset {
                break;
            }
            waiting.pop_front();
            record((now_ms - batch.oldest_timestamp_ms).max(0));
        }
    }

    /// A partition revoked, or re-read after an aborted transaction: its waiting batches are
    /// not acknowledged by this instance (a re-read records them again).
    pub fn forget(&mut self, partition: i32) {
        self.by_partition.remove(&partition);
    }

    pub fn forget_all(&mut self) {
        self.by_partition.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_recorded_once_its_last_offset_is_acknowledged() {
        let mut pending = PendingLatency::default();
        let acknowledged = |pending: &mut PendingLatency, partition, next, now| {
            let mut recorded = Vec::new();
            pending.take_acknowledged(partition, next, now, |ms| recorded.push(ms));
            recorded
        };
        pending.note_batch(0, 10, 1_000);
        pending.note_batch(0, 20, 2_000);
        pending.note_batch(1, 5, 1_500);
        assert_eq!(
            acknowledged(&mut pending, 0, 9, 3_000),
            Vec::<i64>::new(),
            "not yet"
        );
        assert_eq!(acknowledged(&mut pending, 0, 10, 3_000), vec![2_000]);
        assert_eq!(acknowledged(&mut pending, 0, 25, 4_000), vec![2_000]);
        assert_eq!(
            acknowledged(&mut pending, 0, 30, 5_000),
            Vec::<i64>::new(),
            "recorded once"
        );
        pending.forget(1);
        assert_eq!(acknowledged(&mut pending, 1, 5, 5_000), Vec::<i64>::new());
        // A record stamped in the future (a producer's clock) counts as 0, not negative.
        pending.note_batch(2, 1, 9_000);
        assert_eq!(acknowledged(&mut pending, 2, 1, 5_000), vec![0]);
    }
}
