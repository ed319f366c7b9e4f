//! The outputs of one batch before they are sent: derived events, dead letters, changelog
//! writes and progress records, their bytes in one arena, and which input record caused
//! which of them (the at-least-once tracker needs that attribution). Also where each kind of
//! output goes: topic and partition.

use std::ops::Range;

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use rdkafka::message::{Header, OwnedHeaders};

use crate::changelog;
use crate::engine::{EventSink, StateRecord};
use crate::kafka::sink::OutgoingRef;
use crate::metrics as m;
use crate::model::{DerivedEvent, StatusCode};
use crate::output::write_event;
use crate::parse::{ErrorKind, ParseError};

/// Which output a message goes to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Transitions,
    Anomalies,
    DeadLetters,
    /// The state changelog (SPEC section 6).
    Changelog,
}

/// Where a destination's messages go: the topic, and how many partitions it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub topic: String,
    pub partitions: i32,
}

/// The four output routes, and the input topic dead letters name as their source.
#[derive(Clone, Debug)]
pub struct Routes {
    pub input_topic: String,
    pub transitions: Route,
    pub anomalies: Route,
    pub dead_letters: Route,
    pub changelog: Route,
}

impl Routes {
    pub fn route(&self, destination: Destination) -> &Route {
        match destination {
            Destination::Transitions => &self.transitions,
            Destination::Anomalies => &self.anomalies,
            Destination::DeadLetters => &self.dead_letters,
            Destination::Changelog => &self.changelog,
        }
    }

    /// Co-partitioned: output partition p holds what input partition p caused (modulo a
    /// smaller output topic).
    pub fn partition(&self, destination: Destination, input_partition: i32) -> i32 {
        input_partition % self.route(destination).partitions.max(1)
    }
}

/// What a dead letter says about its record (SPEC section 1 headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub kind: ErrorKind,
    pub reason: String,
    /// The input offset of the record.
    pub offset: i64,
    /// The value's full size, when it was cut to the limit.
    pub original_bytes: Option<usize>,
}

/// One output message, its bytes in the outbox's arena.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub destination: Destination,
    /// The input partition whose record caused it.
    pub partition: i32,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
    pub dead_letter: Option<DeadLetter>,
    /// A changelog write's hash of (partition, key), taken while the key was being written
    /// (see [`Outbox::latest_writes_only`]); 0 for other messages.
    key_hash: u64,
}

/// The messages one input record (or one idle firing, offset `None`) caused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordOutputs {
    pub partition: i32,
    pub offset: Option<i64>,
    /// How many messages, in order from the end of the previous record's.
    pub messages: u32,
}

/// Room left in a dead letter for everything but its value: the record's framing, the
/// headers' names and small values, the input topic's name (at most 249 bytes).
const DEAD_LETTER_OVERHEAD: usize = 1024;

/// How large a dead letter's value may be.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterLimits {
    /// `limits.max_record_bytes`.
    pub max_record_bytes: usize,
    /// The dead-letter topic's `max.message.bytes`, when the broker said.
    pub topic_max_message_bytes: Option<usize>,
}

impl DeadLetterLimits {
    /// The most value bytes a dead letter with this key and reason may carry.
    pub fn value_limit(&self, key_bytes: usize, reason_bytes: usize) -> usize {
        let topic = self.topic_max_message_bytes.map_or(usize::MAX, |max| {
            max.saturating_sub(DEAD_LETTER_OVERHEAD + key_bytes + reason_bytes)
        });
        self.max_record_bytes.min(topic)
    }
}

/// The table [`Outbox::latest_writes_only`] fills, kept by the sender across batches: a
/// table for a batch's messages allocated per send came with fresh pages for the kernel to
/// clear (~1% of the process in a profile of bench-e2e's traffic).
#[derive(Default)]
pub struct KeyScratch(HashTable<usize>);

/// The outputs of the records of one batch, and which record caused which.
#[derive(Default)]
pub struct Outbox {
    arena: Vec<u8>,
    messages: Vec<Outgoing>,
    records: Vec<RecordOutputs>,
    /// Messages already attributed to a closed record.
    closed: usize,
    /// Dead-letter values are cut to these limits.
    dead_letter_limits: DeadLetterLimits,
    /// Hashes changelog keys (`Outgoing::key_hash`).
    hasher: DefaultHashBuilder,
    lifetimes: LifetimeHistograms,
}

/// `sessionflow_session_lifetime_seconds` of each terminal status, registered when the outbox
/// is made (after the recorder is installed): looking the labelled histogram up for every
/// terminal transition built and hashed its key, with an allocation (about 1.5% of the loop
/// thread's time).
struct LifetimeHistograms([metrics::Histogram; LifetimeHistograms::TERMINAL]);

impl LifetimeHistograms {
    /// Terminal status codes run from `ENDED` to `ABANDONED`.
    const TERMINAL: usize = (StatusCode::ABANDONED.0 - StatusCode::ENDED.0 + 1) as usize;

    fn of(&self, code: StatusCode) -> Option<&metrics::Histogram> {
        let index = code.0.checked_sub(StatusCode::ENDED.0)? as usize;
        self.0.get(index)
    }
}

impl Default for LifetimeHistograms {
    fn default() -> Self {
        LifetimeHistograms(std::array::from_fn(|index| {
            let code = StatusCode(StatusCode::ENDED.0 + index as u32);
            debug_assert!(code.is_terminal());
            metrics::histogram!(m::SESSION_LIFETIME_SECONDS, "end" => code.label())
        }))
    }
}

impl Outbox {
    pub fn new(dead_letter_limits: DeadLetterLimits) -> Self {
        Outbox {
            dead_letter_limits,
            ..Outbox::default()
        }
    }

    pub fn clear(&mut self) {
        self.arena.clear();
        self.messages.clear();
        self.records.clear();
        self.closed = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every message, in the order they were queued.
    pub fn messages(&self) -> &[Outgoing] {
        &self.messages
    }

    /// Each record with its messages, in processing order.
    pub fn records(&self) -> impl Iterator<Item = (RecordOutputs, &[Outgoing])> + '_ {
        let mut first = 0;
        self.records.iter().map(move |&record| {
            let messages = &self.messages[first..first + record.messages as usize];
            first += record.messages as usize;
            (record, messages)
        })
    }

    /// Drops the records that caused nothing (idle firings that fired no timer).
    pub fn drop_empty_records(&mut self) {
        self.records.retain(|r| r.messages > 0);
    }

    /// A sink for the engine of `partition`: what it emits is attributed to that partition.
    pub fn partition(&mut self, partition: i32) -> PartitionSink<'_> {
        PartitionSink {
            outbox: self,
            partition,
        }
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        start..self.arena.len()
    }

    fn push(
        &mut self,
        destination: Destination,
        partition: i32,
        key: Option<Range<usize>>,
        payload: Option<Range<usize>>,
    ) {
        let key_hash = match (&key, destination) {
            (Some(key), Destination::Changelog) => {
                self.hasher.hash_one((partition, &self.arena[key.clone()]))
            }
            _ => 0,
        };
        self.messages.push(Outgoing {
            destination,
            partition,
            key,
            payload,
            dead_letter: None,
            key_hash,
        });
    }

    /// Closes the current record: every message since the last close is its.
    pub fn close_record(&mut self, partition: i32, offset: Option<i64>) {
        let messages = (self.messages.len() - self.closed) as u32;
        self.closed = self.messages.len();
        self.records.push(RecordOutputs {
            partition,
            offset,
            messages,
        });
    }

    /// Queues a partition's progress record when it moved since the one last written
    /// (`written`, updated). It is a record of its own, released after every earlier record
    /// of the partition, so `applied_through` holds.
    pub fn queue_progress(
        &mut self,
        partition: i32,
        now: changelog::Progress,
        written: &mut changelog::Progress,
    ) {
        if now == *written {
            return;
        }
        *written = now;
        let key = self.push_bytes(changelog::PROGRESS_KEY);
        let start = self.arena.len();
        changelog::encode_watermark(&mut self.arena, &now);
        let payload = start..self.arena.len();
        self.push(Destination::Changelog, partition, Some(key), Some(payload));
        self.close_record(partition, None);
    }

    /// A dead letter keeps the record's key and value bytes. A value beyond
    /// `max_record_bytes` (a `too_large` record), or beyond what the dead-letter topic
    /// accepts, is cut to fit, and the header `sessionflow-original-bytes` gives its size: a
    /// dead letter that can never be written would block its partition's offsets for good.
    pub fn dead_letter(
        &mut self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        error: &ParseError,
    ) {
        let reason = error.to_string();
        let limit = self
            .dead_letter_limits
            .value_limit(key.map_or(0, <[u8]>::len), reason.len());
        let key = key.map(|k| self.push_bytes(k));
        let original_bytes = value.filter(|v| v.len() > limit).map(<[u8]>::len);
        let payload = value.map(|v| self.push_bytes(&v[..v.len().min(limit)]));
        self.messages.push(Outgoing {
            destination: Destination::DeadLetters,
            partition,
            key,
            payload,
            dead_letter: Some(DeadLetter {
                kind: error.kind,
                reason,
                offset,
                original_bytes,
            }),
            key_hash: 0,
        });
    }

    /// Which messages to send when the whole outbox goes in one transaction (exactly-once):
    /// all but the changelog writes a later write of the same key and partition supersedes.
    /// The changelog is compacted and restored last-write-wins, and the transaction makes
    /// the batch's writes visible at once, so an earlier state of a session in the same
    /// batch is never read: one write per session per batch, its last state.
    pub fn latest_writes_only(&self, scratch: &mut KeyScratch) -> Vec<bool> {
        // The keys were hashed as they were written, while in cache: here, on the sending
        // thread, they are not (hashing them here took about a sixth of its time). Sized up
        // front: no growth while it fills.
        let seen = &mut scratch.0;
        seen.clear();
        seen.reserve(self.messages.len(), |&other| self.messages[other].key_hash);
        let same_key = |a: &Outgoing, b: &Outgoing| {
            a.partition == b.partition
                && a.key.clone().map(|k| &self.arena[k]) == b.key.clone().map(|k| &self.arena[k])
        };
        let mut send = vec![true; self.messages.len()];
        for (index, message) in self.messages.iter().enumerate().rev() {
            if message.destination != Destination::Changelog || message.key.is_none() {
                continue;
            }
            let later = seen.entry(
                message.key_hash,
                |&other| same_key(&self.messages[other], message),
                |&other| self.messages[other].key_hash,
            );
            match later {
                hashbrown::hash_table::Entry::Occupied(_) => send[index] = false,
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(index);
                }
            }
        }
        send
    }

    /// One message as the producer takes it: topic and partition of its output, its bytes,
    /// the dead-letter headers.
    pub fn to_send<'a>(
        &'a self,
        message: &'a Outgoing,
        routes: &'a Routes,
        opaque: usize,
    ) -> OutgoingRef<'a> {
        let bytes = |range: &Option<Range<usize>>| range.clone().map(|r| &self.arena[r]);
        OutgoingRef {
            topic: &routes.route(message.destination).topic,
            partition: routes.partition(message.destination, message.partition),
            key: bytes(&message.key),
            payload: bytes(&message.payload),
            headers: message
                .dead_letter
                .as_ref()
                .map(|d| dead_letter_headers(d, &routes.input_topic, message.partition)),
            opaque,
        }
    }
}

/// The header that gives a cut dead letter's original value size (SPEC section 1).
pub const ORIGINAL_BYTES_HEADER: &str = "sessionflow-original-bytes";

/// The SPEC section 1 headers of a dead letter.
pub fn dead_letter_headers(
    dead_letter: &DeadLetter,
    input_topic: &str,
    partition: i32,
) -> OwnedHeaders {
    let partition = partition.to_string();
    let offset = dead_letter.offset.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "sessionflow-error-kind",
            value: Some(dead_letter.kind.as_str()),
        })
        .insert(Header {
            key: "sessionflow-error",
            value: Some(&dead_letter.reason),
        })
        .insert(Header {
            key: "sessionflow-source-topic",
            value: Some(input_topic),
        })
        .insert(Header {
            key: "sessionflow-source-partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "sessionflow-source-offset",
            value: Some(&offset),
        });
    match dead_letter.original_bytes {
        Some(n) => headers.insert(Header {
            key: ORIGINAL_BYTES_HEADER,
            value: Some(&n.to_string()),
        }),
        None => headers,
    }
}

/// The engine's sink for one partition's records: events and state changes go to the
/// outbox, attributed to that partition.
pub struct PartitionSink<'a> {
    outbox: &'a mut Outbox,
    partition: i32,
}

impl EventSink for PartitionSink<'_> {
    fn wants_state(&self) -> bool {
        true
    }

    fn state_changed(&mut self, session_id: &str, state: Option<&StateRecord<'_>>) {
        let outbox = &mut *self.outbox;
        let key = outbox.push_bytes(session_id.as_bytes());
        let payload = state.map(|s| {
            let start = outbox.arena.len();
            changelog::encode_state(&mut outbox.arena, s);
            start..outbox.arena.len()
        });
        outbox.push(Destination::Changelog, self.partition, Some(key), payload);
    }

    fn emit(&mut self, event: &DerivedEvent<'_>) {
        let (destination, session_id) = match event {
            DerivedEvent::Transition(t) => {
                if let (Some(age), Some(code)) = (t.session_age_ms, StatusCode::known(t.to)) {
                    if let Some(lifetime) = self.outbox.lifetimes.of(code) {
                        lifetime.record(age.max(0) as f64 / 1000.0);
                    }
                }
                (Destination::Transitions, t.session_id)
            }
            DerivedEvent::Anomaly(a) => (Destination::Anomalies, a.session_id),
        };
        let outbox = &mut *self.outbox;
        let key = outbox.push_bytes(session_id.as_bytes());
        let start = outbox.arena.len();
        write_event(&mut outbox.arena, event);
        let payload = start..outbox.arena.len();
        outbox.push(destination, self.partition, Some(key), Some(payload));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{Anomaly, AnomalyKind, Cause, Transition};
    use crate::parse::Problem;

    /// A first-sighting transition of session `id` (also used by `at_least_once`'s tests).
    pub(in crate::app) fn transition(id: &str) -> DerivedEvent<'_> {
        DerivedEvent::Transition(Transition {
            session_id: id,
            user_id: None,
            client_id: None,
            from: None,
            to: "active",
            cause: Cause::Observed,
            at: 1,
            in_state_ms: None,
            session_age_ms: None,
            impersonated: false,
            source: None,
        })
    }

    fn anomaly(id: &str) -> DerivedEvent<'_> {
        DerivedEvent::Anomaly(Anomaly {
            kind: AnomalyKind::Resurrection,
            session_id: id,
            user_id: None,
            status: Some("ended"),
            observed: "active",
            at: 2,
            source: None,
        })
    }

    fn limits(max_record_bytes: usize) -> DeadLetterLimits {
        DeadLetterLimits {
            max_record_bytes,
            topic_max_message_bytes: None,
        }
    }

    #[test]
    fn dead_letter_values_fit_the_topic_with_their_key_and_reason() {
        let limits = DeadLetterLimits {
            max_record_bytes: 1 << 20,
            topic_max_message_bytes: Some(2048),
        };
        assert_eq!(limits.value_limit(10, 14), 2048 - 1024 - 24);
        assert_eq!(limits.value_limit(4000, 0), 0, "a huge key leaves no room");
        let unknown = DeadLetterLimits {
            topic_max_message_bytes: None,
            ..limits
        };
        assert_eq!(unknown.value_limit(10, 14), 1 << 20);
    }

    fn routes() -> Routes {
        let route = |topic: &str, partitions| Route {
            topic: topic.to_owned(),
            partitions,
        };
        Routes {
            input_topic: "in".to_owned(),
            transitions: route("t", 4),
            anomalies: route("a", 2),
            dead_letters: route("d", 1),
            changelog: route("c", 4),
        }
    }

    #[test]
    fn in_one_transaction_only_each_sessions_last_changelog_write_goes() {
        let mut outbox = Outbox::new(limits(1024));
        let mut written = changelog::Progress::default();
        {
            let mut sink = outbox.partition(0);
            sink.emit(&transition("sess_a"));
            sink.state_changed("sess_a", None);
            sink.state_changed("sess_b", None);
        }
        outbox.close_record(0, Some(0));
        {
            // The same session id on another partition is another key of the changelog.
            let mut sink = outbox.partition(1);
            sink.state_changed("sess_a", None);
        }
        outbox.close_record(1, Some(0));
        {
            let mut sink = outbox.partition(0);
            sink.emit(&transition("sess_a"));
            sink.state_changed("sess_a", None);
        }
        outbox.close_record(0, Some(1));
        let progress = changelog::Progress {
            applied_through: Some(1),
            ..changelog::Progress::default()
        };
        outbox.queue_progress(0, progress, &mut written);
        let send = outbox.latest_writes_only(&mut KeyScratch::default());
        let kinds: Vec<(Destination, i32, bool)> = outbox
            .messages()
            .iter()
            .zip(&send)
            .map(|(m, &send)| (m.destination, m.partition, send))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Destination::Transitions, 0, true),
                (Destination::Changelog, 0, false), // sess_a, superseded below
                (Destination::Changelog, 0, true),  // sess_b
                (Destination::Changelog, 1, true),  // sess_a of partition 1
                (Destination::Transitions, 0, true),
                (Destination::Changelog, 0, true), // sess_a's last state
                (Destination::Changelog, 0, true), // the progress record
            ]
        );
    }

    fn invalid() -> ParseError {
        ParseError {
            kind: ErrorKind::InvalidJson,
            place: crate::parse::Place::Root,
            problem: Problem::Json("syntax error", 3),
        }
    }

    #[test]
    fn each_record_owns_the_messages_queued_since_the_previous_one() {
        let mut outbox = Outbox::new(limits(1024));
        outbox.partition(1).emit(&transition("sess_a"));
        outbox.partition(1).state_changed("sess_a", None);
        outbox.close_record(1, Some(10));
        outbox.close_record(1, Some(11)); // caused nothing (a duplicate, say)
        outbox.partition(3).emit(&anomaly("sess_b"));
        outbox.dead_letter(3, 12, Some(b"k"), Some(b"{"), &invalid());
        outbox.close_record(3, Some(12));
        let records: Vec<(RecordOutputs, Vec<Destination>)> = outbox
            .records()
            .map(|(r, m)| (r, m.iter().map(|m| m.destination).collect()))
            .collect();
        let record = |partition, offset, messages| RecordOutputs {
            partition,
            offset: Some(offset),
            messages,
        };
        assert_eq!(
            records,
            vec![
                (
                    record(1, 10, 2),
                    vec![Destination::Transitions, Destination::Changelog]
                ),
                (record(1, 11, 0), vec![]),
                (
                    record(3, 12, 2),
                    vec![Destination::Anomalies, Destination::DeadLetters]
                ),
            ]
        );
        outbox.drop_empty_records();
        assert_eq!(outbox.records().count(), 2);
        outbox.clear();
        assert!(outbox.is_empty() && outbox.messages().is_empty());
    }

    #[test]
    fn a_progress_record_is_queued_only_when_it_moved() {
        let mut outbox = Outbox::new(limits(1024));
        let mut written = changelog::Progress::default();
        outbox.queue_progress(0, written, &mut written);
        assert!(outbox.is_empty(), "unchanged progress writes nothing");
        let moved = changelog::Progress {
            watermark: Some(5),
            max_event_time: Some(6),
            applied_through: Some(7),
        };
        outbox.queue_progress(2, moved, &mut written);
        assert_eq!(written, moved);
        let (record, messages) = outbox.records().next().unwrap();
        assert_eq!(record.offset, None, "a record of its own, with no offset");
        let routes = routes();
        let sent = outbox.to_send(&messages[0], &routes, 0);
        assert_eq!(sent.key, Some(changelog::PROGRESS_KEY));
        assert_eq!(
            changelog::decode_watermark(sent.payload.unwrap()).unwrap(),
            moved
        );
        outbox.queue_progress(2, moved, &mut written);
        assert_eq!(outbox.records().count(), 1, "not queued twice");
    }

    #[test]
    fn dead_letters_keep_key_and_bytes_cut_to_the_limit_with_their_original_size() {
        let mut outbox = Outbox::new(limits(8));
        outbox.dead_letter(2, 41, Some(b"key"), Some(b"0123456789abc"), &invalid());
        outbox.dead_letter(2, 42, None, Some(b"short"), &invalid());
        let routes = routes();
        let [cut, whole] = outbox.messages() else {
            panic!("two dead letters")
        };
        let sent = outbox.to_send(cut, &routes, 9);
        assert_eq!(sent.key, Some(&b"key"[..]));
        assert_eq!(sent.payload, Some(&b"01234567"[..]));
        assert_eq!((sent.topic, sent.partition, sent.opaque), ("d", 0, 9));
        let headers = sent.headers.unwrap();
        let header = |name: &str| {
            use rdkafka::message::Headers;
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(
            header("sessionflow-error-kind").as_deref(),
            Some("invalid_json")
        );
        assert_eq!(header("sessionflow-source-topic").as_deref(), Some("in"));
        assert_eq!(header("sessionflow-source-partition").as_deref(), Some("2"));
        assert_eq!(header("sessionflow-source-offset").as_deref(), Some("41"));
        assert_eq!(header("sessionflow-original-bytes").as_deref(), Some("13"));
        assert!(header("sessionflow-error").unwrap().contains("byte 3"));
        let sent = outbox.to_send(whole, &routes, 0);
        assert_eq!(sent.payload, Some(&b"short"[..]));
        assert_eq!(sent.key, None);
        let headers = sent.headers.unwrap();
        use rdkafka::message::Headers;
        assert!(headers
            .iter()
            .all(|h| h.key != "sessionflow-original-bytes"));
    }

    #[test]
    fn outputs_of_input_partition_p_go_to_partition_p_modulo_the_topic_size() {
        let routes = routes();
        assert_eq!(routes.partition(Destination::Transitions, 3), 3);
        assert_eq!(routes.partition(Destination::Anomalies, 3), 1);
        assert_eq!(routes.partition(Destination::DeadLetters, 3), 0);
        assert_eq!(routes.partition(Destination::Changelog, 2), 2);
        let mut outbox = Outbox::new(limits(1024));
        outbox.partition(3).emit(&transition("sess_a"));
        outbox.partition(3).state_changed("sess_a", None);
        let sent: Vec<(&str, i32, Option<&[u8]>)> = outbox
            .messages()
            .iter()
            .map(|m| {
                let s = outbox.to_send(m, &routes, 0);
                (s.topic, s.partition, s.payload)
            })
            .collect();
        assert_eq!(sent[0].0, "t");
        assert_eq!(sent[0].1, 3);
        assert!(sent[0]
            .2
            .unwrap()
            .starts_with(b"{\"type\":\"session.transition\""));
        assert_eq!(sent[1], ("c", 3, None), "a tombstone has no value");
    }
}
