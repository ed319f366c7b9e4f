//! At-least-once backpressure on failed writes: while any write waits for a retry (its topic
//! deleted, or the broker refusing it: permissions, size), the assigned input partitions are
//! paused, so that memory holds what was in flight when the failures began rather than
//! everything read while they last (none of it could commit before them anyway). The tick
//! sends the waiting writes again; the partitions resume after a whole tick with no write
//! waiting and no new delivery failure (a write sent again fails, if it does, only once the
//! broker answers). librdkafka resumes a paused partition from the record after the last one
//! it handed to the pipeline.

use std::sync::atomic::Ordering;

use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::{Mode, Pipeline};
use crate::kafka::lock;

/// The input held while failed writes wait (see the module's text).
#[derive(Debug, Default)]
pub struct InputHold {
    /// Partitions paused for it.
    partitions: std::collections::BTreeSet<i32>,
    /// `sessionflow_delivery_errors_total` at the first tick that found no write waiting:
    /// the input resumes at a later tick that finds the same.
    quiet_from: Option<u64>,
}

impl InputHold {
    /// Whether `partition` is paused for failed writes (not a stalled partition).
    pub fn holds(&self, partition: i32) -> bool {
        self.partitions.contains(&partition)
    }
}

impl Pipeline {
    /// Pauses the assigned input partitions while writes wait for a retry; on a `tick`,
    /// resumes them after a quiet one (at-least-once; exactly-once aborts a transaction
    /// instead).
    pub(super) fn hold_input_while_retries_wait(&mut self, tick: bool) {
        if !matches!(self.mode, Mode::AtLeastOnce(_)) {
            return;
        }
        let waiting = lock(&self.clients.delivery.retries).len();
        if waiting > 0 {
            self.hold.quiet_from = None;
            let newly: Vec<i32> = self
                .partitions
                .keys()
                .copied()
                .filter(|&p| !self.hold.holds(p) && !self.stopped.contains(&p))
                .collect();
            if newly.is_empty() {
                return;
            }
            if self.hold.partitions.is_empty() {
                tracing::warn!(
                    waiting,
                    "Writes wait for a retry: input paused until they are delivered (see sessionflow_delivery_errors_total and the log's delivery failures)."
                );
            }
            self.pause_input(&newly, true);
            for p in newly {
                self.hold.partitions.insert(p);
                // Held on purpose: not a stalled partition.
                self.input_health.forget(p);
            }
            return;
        }
        if !tick || self.hold.partitions.is_empty() {
            return;
        }
        let errors = self
            .clients
            .delivery
            .delivery_errors
            .load(Ordering::Relaxed);
        if self.hold.quiet_from != Some(errors) {
            self.hold.quiet_from = Some(errors);
            return;
        }
        self.hold.quiet_from = None;
        // Every held partition is still assigned and not stopped: revocations release theirs
        // (`release_revoked`), and only a newly assigned partition's restore stops one.
        let resume: Vec<i32> = std::mem::take(&mut self.hold.partitions)
            .into_iter()
            .collect();
        self.pause_input(&resume, false);
        tracing::info!(partitions = ?resume, "Failed writes delivered: input resumed.");
    }

    /// Revoked partitions held for retries are resumed, or librdkafka would keep them
    /// paused should they come back.
    pub(super) fn release_revoked(&mut self, revoked: &[i32]) {
        let held: Vec<i32> = revoked
            .iter()
            .copied()
            .filter(|p| self.hold.partitions.remove(p))
            .collect();
        self.pause_input(&held, false);
    }

    fn pause_input(&self, partitions: &[i32], pause: bool) {
        if partitions.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for &p in partitions {
            list.add_partition(&self.clients.routes.input_topic, p);
        }
        let consumer = &self.clients.consumer;
        let result = if pause {
            consumer.pause(&list)
        } else {
            consumer.resume(&list)
        };
        if let Err(error) = result {
            tracing::warn!(?partitions, pause, %error, "Could not pause or resume input partitions.");
        }
    }
}
