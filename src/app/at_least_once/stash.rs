//! The at-least-once mode's stash: each unit's changelog writes, copied out of the outbox,
//! waiting until the unit's outputs are acknowledged; emptied buffers are kept for later units.

use std::collections::HashMap;
use std::ops::Range;

use crate::kafka::offsets::Ticket;
use crate::kafka::sink::OutgoingRef;

/// Emptied stashes kept for reuse, at most: the units in flight at a time are one per
/// partition of the few batches not yet acknowledged, and a spare holds a unit's changelog
/// bytes.
const MAX_SPARES: usize = 32;

/// Changelog writes waiting for their unit's outputs to be acknowledged, by unit.
#[derive(Default)]
pub struct Stash {
    waiting: HashMap<Ticket, StashedWrites>,
    /// Emptied stashes, their buffers kept for the next units: a stash grown afresh for
    /// every unit had the kernel clear its new pages (~3% of the process in a profile of
    /// bench-e2e's traffic) and was copied at each doubling.
    spares: Vec<StashedWrites>,
}

impl Stash {
    /// Copies a changelog write of `ticket`'s unit in, after those stashed before it.
    pub fn push(&mut self, ticket: Ticket, write: &OutgoingRef<'_>) {
        self.waiting
            .entry(ticket)
            .or_insert_with(|| self.spares.pop().unwrap_or_default())
            .push(write);
    }

    /// Takes a released unit's writes out; give them back with [`Stash::recycle`] once sent.
    pub fn take(&mut self, ticket: Ticket) -> Option<StashedWrites> {
        self.waiting.remove(&ticket)
    }

    /// Keeps a sent unit's buffers for a later unit (as many as were in use at once, up to
    /// [`MAX_SPARES`]).
    pub fn recycle(&mut self, mut writes: StashedWrites) {
        if self.spares.len() < MAX_SPARES {
            writes.clear();
            self.spares.push(writes);
        }
    }

    /// Revoked partitions: their units' writes are dropped (their records are not committed,
    /// so the next owner derives them again).
    pub fn forget(&mut self, partitions: &[i32]) {
        self.waiting
            .retain(|&(partition, _), _| !partitions.contains(&partition));
    }
}

/// One unit's changelog writes while they wait, their bytes in one buffer: copied out of the
/// outbox (which the lanes fill again meanwhile) with two allocations per unit instead of a
/// key and a value buffer per write.
#[derive(Default)]
pub struct StashedWrites {
    bytes: Vec<u8>,
    writes: Vec<StashedWrite>,
}

/// A changelog write in [`StashedWrites::bytes`].
struct StashedWrite {
    /// The changelog partition.
    partition: i32,
    key: Option<Range<usize>>,
    /// `None`: a tombstone.
    payload: Option<Range<usize>>,
    opaque: usize,
}

impl StashedWrites {
    /// Copies a changelog write in. Its topic is not kept (the changelog's is given again
    /// when sent), nor headers (changelog writes have none).
    fn push(&mut self, message: &OutgoingRef<'_>) {
        let mut copy = |bytes: Option<&[u8]>| {
            bytes.map(|b| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(b);
                start..self.bytes.len()
            })
        };
        let key = copy(message.key);
        let payload = copy(message.payload);
        self.writes.push(StashedWrite {
            partition: message.partition,
            key,
            payload,
            opaque: message.opaque,
        });
    }

    /// Empties it, keeping its buffers.
    fn clear(&mut self) {
        self.bytes.clear();
        self.writes.clear();
    }

    /// The writes as the producer takes them, to `topic` (the changelog's), in order.
    pub fn messages<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = OutgoingRef<'a>> + 'a {
        let bytes = |range: &Option<Range<usize>>| range.clone().map(|r| &self.bytes[r]);
        self.writes.iter().map(move |write| OutgoingRef {
            topic,
            partition: write.partition,
            key: bytes(&write.key),
            payload: bytes(&write.payload),
            headers: None,
            opaque: write.opaque,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write<'a>(
        partition: i32,
        key: &'a [u8],
        payload: Option<&'a [u8]>,
        opaque: usize,
    ) -> OutgoingRef<'a> {
        OutgoingRef {
            topic: "ignored: the changelog topic is given when sent",
            partition,
            key: Some(key),
            payload,
            headers: None,
            opaque,
        }
    }

    /// A write as sent: (topic, partition, key, payload, opaque).
    type Sent<'a> = (&'a str, i32, Option<&'a [u8]>, Option<&'a [u8]>, usize);

    /// What a unit's writes send.
    fn sent(writes: &StashedWrites) -> Vec<Sent<'_>> {
        writes
            .messages("app.state")
            .map(|m| (m.topic, m.partition, m.key, m.payload, m.opaque))
            .collect()
    }

    #[test]
    fn a_units_writes_come_back_in_order_with_their_bytes_and_tombstones() {
        let mut stash = Stash::default();
        stash.push((2, 1), &write(2, b"sess_a", Some(b"state one"), 7));
        stash.push((3, 1), &write(3, b"progress", Some(b"watermark"), 9));
        stash.push((2, 1), &write(2, b"sess_b", None, 8));
        let unit = stash.take((2, 1)).expect("stashed");
        assert_eq!(
            sent(&unit),
            [
                (
                    "app.state",
                    2,
                    Some(&b"sess_a"[..]),
                    Some(&b"state one"[..]),
                    7
                ),
                ("app.state", 2, Some(&b"sess_b"[..]), None, 8),
            ]
        );
        assert!(stash.take((2, 1)).is_none(), "taken once");
        let other = stash.take((3, 1)).expect("stashed");
        assert_eq!(
            sent(&other),
            [(
                "app.state",
                3,
                Some(&b"progress"[..]),
                Some(&b"watermark"[..]),
                9
            )]
        );
    }

    #[test]
    fn a_recycled_units_buffers_serve_a_later_unit_with_only_its_own_writes() {
        let mut stash = Stash::default();
        stash.push((1, 1), &write(1, b"sess_a", Some(b"state one"), 7));
        let unit = stash.take((1, 1)).expect("stashed");
        let buffer = unit.bytes.as_ptr();
        stash.recycle(unit);
        stash.push((1, 2), &write(1, b"sess_c", Some(b"state two"), 10));
        let later = stash.take((1, 2)).expect("stashed");
        assert_eq!(later.bytes.as_ptr(), buffer, "the spare's buffer reused");
        assert_eq!(
            sent(&later),
            [(
                "app.state",
                1,
                Some(&b"sess_c"[..]),
                Some(&b"state two"[..]),
                10
            )]
        );
    }

    #[test]
    fn spares_are_kept_up_to_the_limit() {
        let mut stash = Stash::default();
        for _ in 0..MAX_SPARES + 5 {
            stash.recycle(StashedWrites::default());
        }
        assert_eq!(stash.spares.len(), MAX_SPARES);
    }

    #[test]
    fn forgotten_partitions_lose_their_waiting_writes_and_others_keep_theirs() {
        let mut stash = Stash::default();
        stash.push((0, 1), &write(0, b"sess_a", Some(b"a"), 1));
        stash.push((1, 1), &write(1, b"sess_b", Some(b"b"), 2));
        stash.push((2, 1), &write(2, b"sess_c", Some(b"c"), 3));
        stash.forget(&[0, 2]);
        assert!(stash.take((0, 1)).is_none());
        assert!(stash.take((2, 1)).is_none());
        assert!(stash.take((1, 1)).is_some());
    }
}
