//! At-least-once delivery (SPEC section 6): each partition's records of a batch are one unit
//! of the offset tracker; its outputs are sent at once, and its changelog writes (each
//! session's last of the batch, and the progress record) wait in a stash until those outputs
//! are acknowledged, then go in batch order; the unit's input offsets are stored once
//! everything it caused is acknowledged, and auto-commit sends them. Failed deliveries wait
//! in the retry queue and are sent again; nothing is dropped. A partition whose changelog
//! write failed sends no later changelog write (its progress records included) until the
//! failed one is acknowledged, so that a retry never lands behind a later write
//! ([`ChangelogOrder`]).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, Headers};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use self::order::ChangelogOrder;
use self::stash::Stash;
use super::lanes::Lanes;
use super::outbox::{self, Destination, KeyScratch, Outbox};
use super::Clients;
use crate::kafka::lock;
use crate::kafka::offsets::{OffsetTracker, Phase, Ticket};
use crate::kafka::sink::{self, OutgoingRef, OutputContext, RetryMessage, UntimedTopic};
use crate::kafka::source::{self, InputContext};
use crate::kafka::KafkaSetupError;

mod order;
mod stash;

/// How long one flush waits during the shutdown drain before retries are looked at again.
const DRAIN_STEP: Duration = Duration::from_secs(1);

/// The at-least-once mode's own state.
pub struct AtLeastOnce {
    /// Changelog writes waiting for their unit's outputs to be acknowledged.
    stash: Stash,
    /// For each send's choice of changelog writes.
    latest_writes: KeyScratch,
    order: ChangelogOrder,
    /// Changelog writes never time out, whatever `message.timeout.ms` is (held while the
    /// mode lasts).
    _untimed_changelog: UntimedTopic,
}

/// One partition's share of an outbox, as the offset tracker takes it: all its records in
/// one unit, whose input offsets commit together once its outputs and its changelog writes
/// are acknowledged. So a session's changelog write that a later one of the same batch
/// supersedes need not be sent: nothing commits the earlier record alone, without the later
/// write that holds its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionUnit {
    pub partition: i32,
    /// The offset of its last input record (`None` when it holds only idle firings and
    /// progress records).
    pub offset: Option<i64>,
    /// Derived events and dead letters, sent at once.
    pub outputs: u32,
    /// Changelog writes sent (once the outputs are acknowledged): each session's last in the
    /// outbox, and the partition's last progress record.
    pub changelog: u32,
}

/// The outbox's partitions in the order they first appear; `send` marks the changelog writes
/// that go (`Outbox::latest_writes_only`).
pub fn partition_units(outbox: &Outbox, send: &[bool]) -> Vec<PartitionUnit> {
    let mut units: Vec<PartitionUnit> = Vec::new();
    let mut sends = send.iter();
    for (record, messages) in outbox.records() {
        // An outbox holds a few partitions: a linear search beats hashing.
        let unit = match units.iter().position(|u| u.partition == record.partition) {
            Some(found) => &mut units[found],
            None => {
                units.push(PartitionUnit {
                    partition: record.partition,
                    offset: None,
                    outputs: 0,
                    changelog: 0,
                });
                units.last_mut().expect("just pushed")
            }
        };
        unit.offset = record.offset.or(unit.offset);
        for (message, &send) in messages.iter().zip(sends.by_ref()) {
            if message.destination != Destination::Changelog {
                unit.outputs += 1;
            } else if send {
                unit.changelog += 1;
            }
        }
    }
    units
}

impl AtLeastOnce {
    /// Before anything is sent: the changelog topic's writes are made never to time out, so
    /// that only a broker's refusal can fail one (see [`ChangelogOrder`]).
    pub fn new(
        producer: &Arc<ThreadedProducer<OutputContext>>,
        changelog_topic: &str,
    ) -> Result<Self, KafkaSetupError> {
        Ok(AtLeastOnce {
            stash: Stash::default(),
            latest_writes: KeyScratch::default(),
            order: ChangelogOrder::default(),
            _untimed_changelog: UntimedTopic::new(producer, changelog_topic)?,
        })
    }

    /// Before partitions are revoked, the consumer's context waits for the step being sent
    /// ([`SendInFlight`]), then flushes the producer (both bounded by `drain_timeout_ms`), so
    /// that what they caused is handed to the producer, acknowledged and committable, and
    /// nothing of theirs is sent once they are gone.
    pub fn install_revocation_drain(
        consumer: &rdkafka::consumer::StreamConsumer<InputContext>,
        producer: Arc<ThreadedProducer<OutputContext>>,
        in_flight: Arc<SendInFlight>,
        timeout: Duration,
    ) {
        let drain: Box<dyn Fn() + Send + Sync> = Box::new(move || {
            let deadline = Instant::now() + timeout;
            if !in_flight.wait_until_idle(deadline) {
                tracing::warn!("The step being sent did not finish within drain_timeout_ms.");
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if let Err(error) = producer.flush(remaining) {
                tracing::warn!(%error, "Outputs not all acknowledged within drain_timeout_ms.");
            }
        });
        *lock(&consumer.context().drain) = Some(drain);
    }

    /// Registers each outbox's partitions with the tracker, one unit each ([`PartitionUnit`],
    /// one lock for all), sends their derived messages straight from the outboxes' arenas
    /// (librdkafka copies them), and stashes each session's last changelog write until the
    /// tracker releases its unit (see `kafka::offsets`). Each partition's records are in one
    /// outbox, in order.
    pub async fn send(&mut self, clients: &Clients, outboxes: &[Outbox]) {
        let sends: Vec<Vec<bool>> = outboxes
            .iter()
            .map(|outbox| outbox.latest_writes_only(&mut self.latest_writes))
            .collect();
        let tickets: Vec<Vec<(i32, Ticket)>> = {
            let mut tracker = lock(&clients.delivery.tracker);
            outboxes
                .iter()
                .zip(&sends)
                .map(|(outbox, send)| {
                    partition_units(outbox, send)
                        .into_iter()
                        .map(|u| {
                            let ticket =
                                tracker.register(u.partition, u.offset, u.outputs, u.changelog);
                            (u.partition, ticket)
                        })
                        .collect()
                })
                .collect()
        };
        for ((outbox, send), tickets) in outboxes.iter().zip(&sends).zip(&tickets) {
            let ticket_of = |partition: i32| {
                tickets
                    .iter()
                    .find(|(p, _)| *p == partition)
                    .map(|&(_, ticket)| ticket)
                    .expect("every partition of the outbox is registered")
            };
            for (message, &send) in outbox.messages().iter().zip(send) {
                let ticket = ticket_of(message.partition);
                if message.destination == Destination::Changelog {
                    if send {
                        let opaque = sink::ticket_to_opaque(ticket, Phase::Changelog);
                        let write = outbox.to_send(message, &clients.routes, opaque);
                        self.stash.push(ticket, &write);
                    }
                    continue;
                }
                let opaque = sink::ticket_to_opaque(ticket, Phase::Output);
                clients
                    .send(outbox.to_send(message, &clients.routes, opaque))
                    .await;
            }
        }
        self.release_changelog(clients).await;
    }

    /// Sends the changelog writes of records whose outputs are all acknowledged, except
    /// those of partitions with a failed changelog write outstanding (see
    /// [`ChangelogOrder`]).
    pub async fn release_changelog(&mut self, clients: &Clients) {
        for retry in lock(&clients.delivery.retries).iter() {
            if let (ticket, Phase::Changelog) = sink::opaque_to_ticket(retry.opaque) {
                self.order.failed(ticket);
            }
        }
        let released = {
            let mut tracker = lock(&clients.delivery.tracker);
            self.order
                .settle(|ticket| tracker.changelog_acknowledged(ticket));
            tracker.take_releasable()
        };
        for ticket in self.order.admit(released) {
            let Some(writes) = self.stash.take(ticket) else {
                continue;
            };
            // Released before its partition was revoked, by a send that outlived the drain.
            if !lock(&clients.delivery.tracker).is_current(ticket) {
                continue;
            }
            for message in writes.messages(&clients.routes.changelog.topic) {
                clients.send(message).await;
            }
            self.stash.recycle(writes);
        }
    }

    /// Sends again what failed to be delivered. A dead letter the broker refused for its size
    /// (a dead-letter topic with a smaller `max.message.bytes` than it said, or changed since
    /// start-up) is cut to half its size first, so that it lands and its offset commits.
    /// Retries of a partition no longer held (or of its earlier assignment) are dropped: its
    /// records were not committed, the owner derives them again, and a stale changelog write
    /// sent now could land over a newer one.
    pub async fn send_retries(&mut self, clients: &Clients) {
        let mut retries: VecDeque<RetryMessage> =
            std::mem::take(&mut *lock(&clients.delivery.retries));
        let dropped = keep_current(&mut retries, &lock(&clients.delivery.tracker));
        if dropped > 0 {
            tracing::info!(
                dropped,
                "Failed writes of revoked partitions not retried; their owner derives them again."
            );
        }
        while let Some(mut retry) = retries.pop_front() {
            if let (ticket, Phase::Changelog) = sink::opaque_to_ticket(retry.opaque) {
                self.order.failed(ticket);
            }
            if retry.refused_for_size && retry.topic == clients.routes.dead_letters.topic {
                halve_dead_letter(&mut retry);
            }
            let sent = sink::send_or_refuse(
                &clients.producer,
                OutgoingRef::from(&retry),
                clients.config.retry_backoff,
                &clients.delivery,
            )
            .await;
            if let Err(refused) = sent {
                // Refused outright (the topic gone, say): the rest would be refused alike,
                // each at once, every tick. They wait for the next tick in their order, ahead
                // of what failed since this pass began.
                clients
                    .delivery
                    .refused(&refused.error, &retry.topic, retry.opaque);
                let mut waiting = lock(&clients.delivery.retries);
                retries.push_front(retry);
                while let Some(later) = retries.pop_back() {
                    waiting.push_front(later);
                }
                break;
            }
        }
    }

    /// Once a second: retries and released changelog writes.
    pub async fn on_tick(&mut self, clients: &Clients) {
        self.send_retries(clients).await;
        self.release_changelog(clients).await;
    }

    /// Revoked partitions: their unwritten changelog writes go with them (their records are
    /// not committed, so the next owner re-derives them).
    pub fn forget(&mut self, partitions: &[i32]) {
        self.stash.forget(partitions);
        self.order.forget(partitions);
    }

    /// Hands committable offsets of the assigned partitions to the consumer; auto-commit
    /// sends them in batches.
    /// Returns the offsets stored: every input record before them is acknowledged.
    pub fn store_offsets(clients: &Clients, assigned: impl Fn(i32) -> bool) -> Vec<(i32, i64)> {
        let mut moved = lock(&clients.delivery.tracker).take_committable();
        moved.retain(|&(partition, _)| assigned(partition));
        if moved.is_empty() {
            return moved;
        }
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in &moved {
            let _ = list.add_partition_offset(
                &clients.routes.input_topic,
                partition,
                Offset::Offset(offset),
            );
        }
        if let Err(error) = clients.consumer.store_offsets(&list) {
            tracing::debug!(%error, "Could not store offsets (partition revoked meanwhile?).");
        }
        moved
    }

    /// The shutdown drain, bounded by `deadline`: retries, released changelog writes and
    /// producer flushes until nothing is outstanding. Returns whether everything was
    /// acknowledged.
    pub async fn drain(&mut self, clients: &Clients, deadline: Instant) -> bool {
        loop {
            self.on_tick(clients).await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let flushed = clients.producer.flush(remaining.min(DRAIN_STEP));
            let retries_left = lock(&clients.delivery.retries).len();
            let releasable = lock(&clients.delivery.tracker).has_releasable();
            if flushed.is_ok() && retries_left == 0 && !releasable && !self.order.is_waiting() {
                return true;
            }
            if remaining.is_zero() {
                tracing::warn!(
                    in_flight = lock(&clients.delivery.tracker).in_flight(),
                    "Drain timeout: outputs not acknowledged are re-derived after restart."
                );
                return false;
            }
        }
    }

    /// After a complete drain: stores and commits what became committable, waiting for the
    /// commit.
    pub fn commit_final(clients: &Clients) {
        source::store_and_commit(
            clients.consumer.as_ref(),
            &clients.routes.input_topic,
            &clients.delivery,
            None,
            CommitMode::Sync,
        );
    }

    /// After a drain cut short (the broker is likely away): stores what became committable
    /// and asks for a commit without waiting for it; a synchronous commit would wait for the
    /// group coordinator as long as it stays away.
    pub fn commit_final_unacknowledged(clients: &Clients) {
        source::store_and_commit(
            clients.consumer.as_ref(),
            &clients.routes.input_topic,
            &clients.delivery,
            None,
            CommitMode::Async,
        );
    }
}

/// Keeps the retries whose ticket is of a partition held now (see
/// `AtLeastOnce::send_retries`); returns how many were dropped.
fn keep_current(retries: &mut VecDeque<RetryMessage>, tracker: &OffsetTracker) -> usize {
    let before = retries.len();
    retries.retain(|retry| tracker.is_current(sink::opaque_to_ticket(retry.opaque).0));
    before - retries.len()
}

/// At-least-once with its sends beside the loop: a step's outboxes are sent by a task on the
/// runtime's workers while the loop takes and applies the next step (the loop's thread was
/// the bottleneck, doing both one after the other). One send runs at a time, in step order,
/// and everything else the mode does (retries, released changelog writes on the tick,
/// revocations, the shutdown drain) first waits for it ([`Overlapped::settled`]), so the
/// order of every partition's outputs and changelog writes is that of the steps. Offsets
/// stay safe: a step's units are registered with the tracker by its send, and nothing
/// unregistered is committable.
pub struct Overlapped {
    /// The mode's state while no send runs.
    idle: Option<AtLeastOnce>,
    running: Option<tokio::task::JoinHandle<(AtLeastOnce, Vec<Outbox>)>>,
    /// The outboxes of the last finished send, for the lanes to fill again.
    returned: Option<Vec<Outbox>>,
    in_flight: Arc<SendInFlight>,
}

impl Overlapped {
    pub fn new(state: AtLeastOnce) -> Self {
        Overlapped {
            idle: Some(state),
            running: None,
            returned: None,
            in_flight: Arc::default(),
        }
    }

    /// What the revocation drain waits for.
    pub fn in_flight(&self) -> Arc<SendInFlight> {
        self.in_flight.clone()
    }

    /// The mode's state once the running send (if any) has finished.
    pub async fn settled(&mut self) -> &mut AtLeastOnce {
        if let Some(running) = self.running.take() {
            match running.await {
                Ok((state, outboxes)) => {
                    self.idle = Some(state);
                    self.returned = Some(outboxes);
                }
                // A panic in the send is a bug: it ends the process as it would on the loop.
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        }
        self.idle
            .as_mut()
            .expect("the state is back once no send runs")
    }

    /// Starts sending the lanes' filled outboxes (see [`AtLeastOnce::send`]) once the send
    /// before has finished, leaving the lanes that send's outboxes to fill next; returns
    /// without waiting for this one.
    pub async fn start(&mut self, clients: &Arc<Clients>, lanes: &mut Lanes) {
        self.settled().await;
        let mut state = self.idle.take().expect("settled");
        let outboxes = lanes.take_outboxes(self.returned.take());
        let clients = Arc::clone(clients);
        let sending = self.in_flight.begin();
        self.running = Some(tokio::spawn(async move {
            let _sending = sending;
            state.send(&clients, &outboxes).await;
            (state, outboxes)
        }));
    }
}

/// Whether a step's send is running (see [`Overlapped`]); the revocation drain waits for it
/// from the consumer's callback, outside the runtime.
#[derive(Default)]
pub struct SendInFlight {
    running: Mutex<bool>,
    finished: Condvar,
}

/// Marks a send as running until dropped (a send that panics included).
struct Sending(Arc<SendInFlight>);

impl SendInFlight {
    fn begin(self: &Arc<Self>) -> Sending {
        *lock(&self.running) = true;
        Sending(Arc::clone(self))
    }

    /// Waits until no send runs, or `deadline`; whether none runs.
    pub fn wait_until_idle(&self, deadline: Instant) -> bool {
        let mut running = lock(&self.running);
        while *running {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            running = self
                .finished
                .wait_timeout(running, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        *lock(&self.0.running) = false;
        self.0.finished.notify_all();
    }
}

/// Cuts a refused dead letter's value to half, keeping (or adding) the header that gives
/// the original size.
pub fn halve_dead_letter(retry: &mut RetryMessage) {
    let Some(payload) = retry.payload.as_mut() else {
        return;
    };
    let original = payload.len();
    payload.truncate(original / 2);
    retry.refused_for_size = false;
    let headers = retry.headers.take().unwrap_or_default();
    let has_original = headers
        .iter()
        .any(|h| h.key == outbox::ORIGINAL_BYTES_HEADER);
    retry.headers = Some(if has_original {
        headers
    } else {
        headers.insert(Header {
            key: outbox::ORIGINAL_BYTES_HEADER,
            value: Some(&original.to_string()),
        })
    });
    tracing::warn!(
        topic = %retry.topic,
        from = original,
        to = payload.len(),
        "A dead letter was refused for its size; sending its first bytes."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revocation_drain_waits_for_a_running_send_until_it_ends_or_the_deadline() {
        let in_flight = Arc::new(SendInFlight::default());
        assert!(
            in_flight.wait_until_idle(Instant::now()),
            "no send: idle at once"
        );
        let sending = in_flight.begin();
        assert!(
            !in_flight.wait_until_idle(Instant::now() + Duration::from_millis(20)),
            "a send that runs past the deadline"
        );
        let ends = std::thread::spawn(move || drop(sending));
        assert!(in_flight.wait_until_idle(Instant::now() + Duration::from_secs(60)));
        ends.join().unwrap();
    }

    use crate::app::outbox::tests::transition;
    use crate::changelog;
    use crate::engine::EventSink;
    use crate::kafka::offsets::OffsetTracker;

    /// A batch of three records of partition 0 (each changing `sess_a`, the last also
    /// `sess_b`) and one of partition 1, with partition 0's progress record: each partition is
    /// one unit, sending each session's last write and the progress record.
    fn batch(outbox: &mut Outbox, first_offset: i64) -> Vec<PartitionUnit> {
        for offset in first_offset..first_offset + 3 {
            let mut sink = outbox.partition(0);
            sink.emit(&transition("sess_a"));
            // A tombstone is a changelog write like any state value.
            sink.state_changed("sess_a", None);
            if offset == first_offset + 2 {
                sink.state_changed("sess_b", None);
            }
            outbox.close_record(0, Some(offset));
            if offset == first_offset {
                outbox.partition(1).state_changed("sess_a", None);
                outbox.close_record(1, Some(offset));
            }
        }
        let progress = changelog::Progress {
            applied_through: Some(first_offset + 2),
            ..changelog::Progress::default()
        };
        outbox.queue_progress(0, progress, &mut changelog::Progress::default());
        let send = outbox.latest_writes_only(&mut KeyScratch::default());
        partition_units(outbox, &send)
    }

    #[test]
    fn each_partition_of_a_batch_is_one_unit_with_each_sessions_last_changelog_write() {
        let mut outbox = Outbox::new(outbox::DeadLetterLimits {
            max_record_bytes: 1024,
            topic_max_message_bytes: None,
        });
        let units = batch(&mut outbox, 10);
        assert_eq!(
            units,
            [
                PartitionUnit {
                    partition: 0,
                    offset: Some(12),
                    outputs: 3,
                    // sess_a's third write, sess_b's, the progress record.
                    changelog: 3,
                },
                PartitionUnit {
                    partition: 1,
                    offset: Some(10),
                    outputs: 0,
                    changelog: 1,
                },
            ]
        );
    }

    /// The release order the tracker gives the stash: a unit's changelog writes go only once
    /// its outputs and every earlier unit's of its partition are acknowledged, and its input
    /// offsets commit once its changelog writes are acknowledged too.
    #[test]
    fn a_units_changelog_writes_are_released_in_order_after_its_outputs() {
        let mut tracker = OffsetTracker::default();
        let mut register = |first_offset| {
            let mut outbox = Outbox::new(outbox::DeadLetterLimits {
                max_record_bytes: 1024,
                topic_max_message_bytes: None,
            });
            let unit = batch(&mut outbox, first_offset)[0];
            tracker.register(unit.partition, unit.offset, unit.outputs, unit.changelog)
        };
        let (first, second) = (register(0), register(3));
        // The second batch's outputs are acknowledged first: nothing may be released yet.
        for _ in 0..3 {
            tracker.delivered(second, Phase::Output);
        }
        assert!(tracker.take_releasable().is_empty());
        tracker.delivered(first, Phase::Output);
        tracker.delivered(first, Phase::Output);
        assert!(
            tracker.take_releasable().is_empty(),
            "one output outstanding"
        );
        tracker.delivered(first, Phase::Output);
        assert_eq!(tracker.take_releasable(), vec![first, second]);
        // Offsets commit only once the changelog writes are acknowledged too.
        assert!(tracker.take_committable().is_empty());
        for _ in 0..3 {
            tracker.delivered(first, Phase::Changelog);
        }
        assert_eq!(tracker.take_committable(), vec![(0, 3)]);
        for _ in 0..3 {
            tracker.delivered(second, Phase::Changelog);
        }
        assert_eq!(tracker.take_committable(), vec![(0, 6)]);
    }

    #[test]
    fn a_changelog_write_is_acknowledged_once_none_of_its_writes_is_outstanding() {
        let mut tracker = OffsetTracker::default();
        let first = tracker.register(0, Some(0), 0, 2);
        let second = tracker.register(0, Some(1), 0, 1);
        assert_eq!(tracker.take_releasable(), vec![first, second]);
        tracker.delivered(second, Phase::Changelog);
        assert!(tracker.changelog_acknowledged(second));
        tracker.delivered(first, Phase::Changelog);
        assert!(!tracker.changelog_acknowledged(first), "one write of two");
        tracker.delivered(first, Phase::Changelog);
        assert!(tracker.changelog_acknowledged(first));
        // Revoked partitions have nothing outstanding.
        assert!(tracker.changelog_acknowledged((9, 0)));
    }

    #[test]
    fn retries_of_a_revoked_partition_or_its_earlier_assignment_are_dropped() {
        let mut tracker = OffsetTracker::default();
        let earlier = tracker.register(0, Some(5), 1, 1);
        tracker.remove(0);
        let now = tracker.register(0, Some(5), 1, 1);
        let held = tracker.register(1, Some(9), 1, 0);
        let revoked = tracker.register(2, Some(3), 1, 0);
        tracker.remove(2);
        let retry = |ticket: Ticket, phase| RetryMessage {
            topic: "t".to_owned(),
            partition: ticket.0,
            key: None,
            payload: None,
            headers: None,
            opaque: sink::ticket_to_opaque(ticket, phase),
            refused_for_size: false,
        };
        let mut retries: VecDeque<RetryMessage> = [
            retry(earlier, Phase::Changelog),
            retry(now, Phase::Output),
            retry(revoked, Phase::Output),
            retry(held, Phase::Output),
            retry(now, Phase::Changelog),
        ]
        .into();
        assert_eq!(keep_current(&mut retries, &tracker), 2);
        let kept: Vec<_> = retries
            .iter()
            .map(|r| sink::opaque_to_ticket(r.opaque))
            .collect();
        assert_eq!(
            kept,
            [
                (now, Phase::Output),
                (held, Phase::Output),
                (now, Phase::Changelog)
            ]
        );
    }

    #[test]
    fn a_dead_letter_refused_for_its_size_is_halved_and_says_its_original_size() {
        let mut retry = RetryMessage {
            topic: "dlq".to_owned(),
            partition: 0,
            key: Some(b"k".to_vec()),
            payload: Some(vec![b'x'; 1000]),
            headers: None,
            opaque: 7,
            refused_for_size: true,
        };
        halve_dead_letter(&mut retry);
        assert_eq!(retry.payload.as_ref().map(Vec::len), Some(500));
        assert!(!retry.refused_for_size);
        let original = |retry: &RetryMessage| {
            let headers = retry.headers.as_ref().unwrap();
            headers
                .iter()
                .filter(|h| h.key == outbox::ORIGINAL_BYTES_HEADER)
                .map(|h| String::from_utf8(h.value.unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(original(&retry), vec!["1000"]);
        // Halved again, it keeps the first original size, once.
        halve_dead_letter(&mut retry);
        assert_eq!(retry.payload.as_ref().map(Vec::len), Some(250));
        assert_eq!(original(&retry), vec!["1000"]);
        assert_eq!((retry.key.as_deref(), retry.opaque), (Some(&b"k"[..]), 7));
    }
}
