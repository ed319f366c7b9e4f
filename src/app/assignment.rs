//! What the pipeline does as its partitions come and go: a rebalance's revocations and
//! assignments, restoring an assigned partition from its changelog, stopping one whose
//! changelog is corrupt, exactly-once's rewind after an aborted transaction, and the stop
//! when the input gained partitions while running. Readiness follows from these.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::exactly_once::TRANSACTION_CALL_TIMEOUT;
use super::lanes::PartitionState;
use super::restore::{self, RestoreOutcome};
use super::{Mode, Pipeline};
use crate::kafka::lock;
use crate::kafka::source;

impl Pipeline {
    /// Takes the rebalances seen by the consumer: revoked partitions lose their engine (their
    /// outputs were drained and committed in the callback) and their not yet processed
    /// messages (uncommitted, so the next owner reads them); assigned ones are restored.
    pub(super) async fn apply_changes(&mut self, batch: &mut Vec<BorrowedMessage<'_>>) {
        let changes = std::mem::take(&mut *lock(&self.clients.consumer.context().changes));
        if let (Mode::ExactlyOnce(eos), false) = (&mut self.mode, changes.is_empty()) {
            eos.note_rebalance();
        }
        for change in changes {
            match change {
                source::AssignmentChange::Revoked(partitions) => {
                    for p in &partitions {
                        self.partitions.remove(p);
                        self.stopped.remove(p);
                        self.input_health.forget(*p);
                        self.latency.forget(*p);
                    }
                    self.release_revoked(&partitions);
                    if let Mode::AtLeastOnce(alo) = &mut self.mode {
                        alo.settled().await.forget(&partitions);
                    }
                }
                source::AssignmentChange::Assigned(partitions) => {
                    if let Some(error) = self.beyond_the_input_at_start_up(&partitions) {
                        // Nothing more is restored: the loop stops after this batch.
                        self.fatal = Some(error);
                        continue;
                    }
                    // Not ready while restoring: no input of these partitions is processed
                    // before their state is back.
                    self.handles.ready.store(false, Ordering::Relaxed);
                    let new: Vec<i32> = partitions
                        .into_iter()
                        .filter(|p| !self.partitions.contains_key(p))
                        .collect();
                    self.restore(&new);
                }
            }
        }
        // Input of partitions not held (revoked, stopped, or shut down while restoring) is
        // not processed: it is not committed either, and the owner reads it again.
        batch.retain(|m| self.partitions.contains_key(&m.partition()));
        self.update_readiness();
    }

    /// An assigned input partition beyond the count the input had at start-up (the
    /// changelog's, which start-up held to it) means partitions were added while running.
    /// Kafka places a keyed record by its key's hash modulo the partition count, so most
    /// sessions' records now go to another partition than the engine and changelog partition
    /// holding their state: one engine would see them anew, another infer them expired or
    /// abandoned. No restore can mend that, so the instance stops (as does every other
    /// instance of the group once a partition beyond its count reaches it).
    fn beyond_the_input_at_start_up(&self, assigned: &[i32]) -> Option<anyhow::Error> {
        let at_start_up = self.clients.routes.changelog.partitions;
        let beyond = assigned
            .iter()
            .copied()
            .filter(|&p| p >= at_start_up)
            .max()?;
        let topic = &self.clients.routes.input_topic;
        tracing::error!(
            %topic,
            partition = beyond,
            partitions_at_start_up = at_start_up,
            "The input topic has more partitions than at start-up: sessions now go to other partitions than their state. Stopping; see docs/operations.md, \"Changing the input's partition count\"."
        );
        Some(anyhow::anyhow!(
            "input topic {topic:?} had {at_start_up} partitions at start-up and partition {beyond} was assigned: partitions were added while running, which moves sessions away from the partitions holding their state (a key's partition is its hash modulo the count), so their events would be wrong; stopping (docs/operations.md, \"Changing the input's partition count\")"
        ))
    }

    /// Ready once every assigned partition is restored (none assigned included: a standby
    /// instance is ready, or rolling updates would wait for it), none is stopped and none has
    /// stalled past `pipeline.input_stall_timeout_ms`. Restores and rewinds clear it while
    /// they run.
    pub(super) fn update_readiness(&self) {
        let ready = self.stopped.is_empty() && !self.input_health.is_stalled();
        self.handles.ready.store(ready, Ordering::Relaxed);
    }

    /// Restores partitions from their changelog. Exactly-once: first waits until their
    /// committed offsets are stable (no transaction of a previous owner still open on them),
    /// so that the read_committed changelog holds everything up to those offsets; returns
    /// them.
    pub(super) fn restore(&mut self, partitions: &[i32]) -> Option<TopicPartitionList> {
        if partitions.is_empty() {
            return None;
        }
        let committed = match self.mode {
            Mode::ExactlyOnce(_) => restore::stable_committed_offsets(
                &self.clients.consumer,
                &self.clients.routes.input_topic,
                partitions,
            ),
            Mode::AtLeastOnce(_) => None,
        };
        for &p in partitions {
            match restore::restore_partition(
                &self.clients.config,
                p,
                &self.shutdown,
                &self.handles.heartbeat,
            ) {
                RestoreOutcome::Restored(engine, progress) => {
                    self.partitions
                        .insert(p, PartitionState::new(*engine, progress));
                }
                RestoreOutcome::Stopped(_) => self.stop_partition(p),
                RestoreOutcome::Cancelled => {}
            }
        }
        committed
    }

    /// Pauses a partition whose state cannot be restored: no input of it is processed or
    /// committed until an operator acts and the instance restarts.
    pub(super) fn stop_partition(&mut self, partition: i32) {
        self.stopped.insert(partition);
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.clients.routes.input_topic, partition);
        if let Err(error) = self.clients.consumer.pause(&list) {
            tracing::warn!(partition, %error, "Could not pause the stopped partition.");
        }
    }

    /// Exactly-once, after an aborted transaction: each partition it touched (`touched`) goes
    /// back to its last committed transaction — state from the changelog, input from the
    /// committed offset — and the aborted batch is read and derived again. The others are at
    /// their last commit already: restoring them too would cost a rebalance (whose generation
    /// change aborts the open transaction) a full restore of every partition kept.
    pub(super) fn rewind(&mut self, touched: BTreeSet<i32>) {
        self.handles.ready.store(false, Ordering::Relaxed);
        let partitions: Vec<i32> = touched
            .into_iter()
            .filter(|p| self.partitions.contains_key(p))
            .collect();
        for p in &partitions {
            self.partitions.remove(p);
        }
        self.latency.forget_all();
        lock(&self.clients.delivery.retries).clear();
        if partitions.is_empty() {
            self.update_readiness();
            return;
        }
        let committed = self.restore(&partitions);
        let input = &self.clients.routes.input_topic;
        let mut seek = TopicPartitionList::new();
        for &p in &partitions {
            let offset = committed
                .as_ref()
                .and_then(|list| list.find_partition(input, p))
                .map(|e| e.offset())
                .filter(|o| matches!(o, Offset::Offset(_)))
                .unwrap_or(Offset::Beginning);
            let _ = seek.add_partition_offset(input, p, offset);
        }
        match self
            .clients
            .consumer
            .seek_partitions(seek, TRANSACTION_CALL_TIMEOUT)
        {
            Ok(_) => tracing::info!(
                ?partitions,
                "Rewound to the last committed transaction after an abort."
            ),
            Err(error) => {
                self.fatal = Some(
                    anyhow::Error::new(error).context("seeking back after an aborted transaction"),
                );
            }
        }
        self.update_readiness();
    }
}
