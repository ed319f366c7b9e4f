//! At-least-once delivery (SPEC section 6): each record's outputs are registered with the
//! offset tracker and sent; its changelog writes wait in a stash until those outputs are
//! acknowledged, then go in record order; input offsets are stored once everything a record
//! caused is acknowledged, and auto-commit sends them. Failed deliveries wait in the retry
//! queue and are sent again; nothing is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use rdkafka::message::{Header, Headers};

use super::outbox::{self, Destination, Outbox, RecordOutputs};
use super::Clients;
use crate::kafka::lock;
use crate::kafka::offsets::{Phase, Ticket};
use crate::kafka::sink::{self, OutgoingRef, OutputContext, RetryMessage};
use crate::kafka::source::{self, InputContext};

/// How long one flush waits during the shutdown drain before retries are looked at again.
const DRAIN_STEP: Duration = Duration::from_secs(1);

/// The at-least-once mode's own state.
#[derive(Default)]
pub struct AtLeastOnce {
    /// Changelog writes waiting for their record's outputs to be acknowledged.
    stash: HashMap<Ticket, Vec<RetryMessage>>,
}

/// How many of a record's messages are derived outputs (sent now) and changelog writes
/// (held until those are acknowledged).
pub fn split_counts(messages: &[super::outbox::Outgoing]) -> (u32, u32) {
    let changelog = messages
        .iter()
        .filter(|m| m.destination == Destination::Changelog)
        .count() as u32;
    (messages.len() as u32 - changelog, changelog)
}

impl AtLeastOnce {
    /// Before partitions are revoked, the consumer's context flushes the producer (bounded
    /// by `drain_timeout_ms`) so that what they caused is acknowledged and committable.
    pub fn install_revocation_drain(
        consumer: &rdkafka::consumer::StreamConsumer<InputContext>,
        producer: Arc<ThreadedProducer<OutputContext>>,
        timeout: Duration,
    ) {
        let drain: Box<dyn Fn() + Send + Sync> = Box::new(move || {
            if let Err(error) = producer.flush(timeout) {
                tracing::warn!(%error, "Outputs not all acknowledged within drain_timeout_ms.");
            }
        });
        *lock(&consumer.context().drain) = Some(drain);
    }

    /// Registers the outbox's records with the tracker (one lock), sends their derived
    /// messages straight from the outbox's arena (librdkafka copies them), and stashes their
    /// changelog writes until the tracker releases them (see `kafka::offsets`).
    pub async fn send(&mut self, clients: &Clients, outbox: &Outbox) {
        let tickets: Vec<(Ticket, RecordOutputs)> = {
            let mut tracker = lock(&clients.delivery.tracker);
            outbox
                .records()
                .map(|(record, messages)| {
                    let (outputs, changelog) = split_counts(messages);
                    let ticket =
                        tracker.register(record.partition, record.offset, outputs, changelog);
                    (ticket, record)
                })
                .collect()
        };
        for ((ticket, _), (_, messages)) in tickets.iter().zip(outbox.records()) {
            for message in messages {
                if message.destination == Destination::Changelog {
                    let opaque = sink::ticket_to_opaque(*ticket, Phase::Changelog);
                    let write = outbox
                        .to_send(message, &clients.routes, opaque)
                        .to_retry(None);
                    self.stash.entry(*ticket).or_default().push(write);
                    continue;
                }
                let opaque = sink::ticket_to_opaque(*ticket, Phase::Output);
                clients
                    .send(outbox.to_send(message, &clients.routes, opaque))
                    .await;
            }
        }
        self.release_changelog(clients).await;
    }

    /// Sends the changelog writes of records whose outputs are all acknowledged.
    pub async fn release_changelog(&mut self, clients: &Clients) {
        let released = lock(&clients.delivery.tracker).take_releasable();
        for ticket in released {
            let Some(messages) = self.stash.remove(&ticket) else {
                continue;
            };
            for message in &messages {
                clients.send(OutgoingRef::from(message)).await;
            }
        }
    }

    /// Sends again what failed to be delivered. A dead letter the broker refused for its size
    /// (a dead-letter topic with a smaller `max.message.bytes` than it said, or changed since
    /// start-up) is cut to half its size first, so that it lands and its offset commits.
    pub async fn send_retries(&mut self, clients: &Clients) {
        let retries: VecDeque<RetryMessage> = std::mem::take(&mut *lock(&clients.delivery.retries));
        for mut retry in retries {
            if retry.refused_for_size && retry.topic == clients.routes.dead_letters.topic {
                halve_dead_letter(&mut retry);
            }
            clients.send(OutgoingRef::from(&retry)).await;
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
        self.stash
            .retain(|ticket, _| !partitions.contains(&ticket.0));
    }

    /// Hands committable offsets of the assigned partitions to the consumer; auto-commit
    /// sends them in batches.
    pub fn store_offsets(clients: &Clients, assigned: impl Fn(i32) -> bool) {
        let moved = lock(&clients.delivery.tracker).take_committable();
        if moved.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (partition, offset) in moved {
            if assigned(partition) {
                let _ = list.add_partition_offset(
                    &clients.routes.input_topic,
                    partition,
                    Offset::Offset(offset),
                );
            }
        }
        if let Err(error) = clients.consumer.store_offsets(&list) {
            tracing::debug!(%error, "Could not store offsets (partition revoked meanwhile?).");
        }
    }

    /// The shutdown drain, bounded by `deadline`: retries, released changelog writes and
    /// producer flushes until nothing is outstanding.
    pub async fn drain(&mut self, clients: &Clients, deadline: Instant) {
        loop {
            self.on_tick(clients).await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let flushed = clients.producer.flush(remaining.min(DRAIN_STEP));
            let retries_left = lock(&clients.delivery.retries).len();
            let releasable = lock(&clients.delivery.tracker).has_releasable();
            if flushed.is_ok() && retries_left == 0 && !releasable {
                return;
            }
            if remaining.is_zero() {
                tracing::warn!(
                    in_flight = lock(&clients.delivery.tracker).in_flight(),
                    "Drain timeout: outputs not acknowledged are re-derived after restart."
                );
                return;
            }
        }
    }

    /// After the drain: stores and commits what became committable.
    pub fn commit_final(clients: &Clients) {
        source::store_and_commit(
            clients.consumer.as_ref(),
            &clients.routes.input_topic,
            &clients.delivery,
            None,
        );
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
    use crate::app::outbox::tests::transition;
    use crate::engine::EventSink;
    use crate::kafka::offsets::OffsetTracker;

    /// The release order the tracker gives the stash: a record's changelog writes go only
    /// once its outputs and every earlier record's are acknowledged, in record order.
    #[test]
    fn changelog_writes_are_released_in_record_order_after_their_outputs() {
        let mut outbox = Outbox::new(outbox::DeadLetterLimits {
            max_record_bytes: 1024,
            topic_max_message_bytes: None,
        });
        for offset in 0..3 {
            let mut sink = outbox.partition(0);
            sink.emit(&transition("sess_a"));
            // A tombstone is a changelog write like any state value.
            sink.state_changed("sess_a", None);
            outbox.close_record(0, Some(offset));
        }
        let mut tracker = OffsetTracker::default();
        let tickets: Vec<Ticket> = outbox
            .records()
            .map(|(record, messages)| {
                let (outputs, changelog) = split_counts(messages);
                assert_eq!((outputs, changelog), (1, 1));
                tracker.register(record.partition, record.offset, outputs, changelog)
            })
            .collect();
        // The third record's output is acknowledged first: nothing may be released yet.
        tracker.delivered(tickets[2], Phase::Output);
        assert!(tracker.take_releasable().is_empty());
        tracker.delivered(tickets[0], Phase::Output);
        assert_eq!(tracker.take_releasable(), vec![tickets[0]]);
        tracker.delivered(tickets[1], Phase::Output);
        assert_eq!(tracker.take_releasable(), vec![tickets[1], tickets[2]]);
        // Offsets commit only once the changelog writes are acknowledged too.
        assert!(tracker.take_committable().is_empty());
        for ticket in &tickets {
            tracker.delivered(*ticket, Phase::Changelog);
        }
        assert_eq!(tracker.take_committable(), vec![(0, 3)]);
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
