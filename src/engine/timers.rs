//! The engine's two timer indexes (live sessions by deadline, terminal ones by forget time),
//! in time order. An entry is only ever taken from the front, so none is searched for to be
//! removed: each slot has a stamp that moves on whenever its keys change, and an entry whose
//! stamp is not its slot's any more is stale, dropped when it comes up. Refreshing a session
//! (its deadline moves on) then costs one append instead of an ordered removal and insertion.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Later entries wait unordered in buckets of 2^20 ms (about 17 minutes) of their time.
const BUCKET_BITS: u32 = 20;

/// Stale entries tolerated beyond the current ones before they are swept out.
const SWEEP_SLACK: usize = 4096;

/// Emptied bucket buffers kept for reuse.
const SPARE_BUCKETS: usize = 16;

/// One timer: a time and a slot, with the slot's stamp when it was set. The order is the
/// index's: by time, then slot (a slot has one current entry in an index, so the stamp never
/// decides between current entries).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    time: i64,
    index: u32,
    stamp: u32,
}

fn bucket(time: i64) -> i64 {
    time >> BUCKET_BITS
}

/// The slots' stamps, shared by both indexes.
#[derive(Default)]
pub(super) struct Stamps(Vec<u32>);

impl Stamps {
    /// Leaves every entry set for slot `index` so far stale; returns the stamp for new ones.
    pub fn renew(&mut self, index: u32) -> u32 {
        let i = index as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, 0);
        }
        // Wrapping cannot revive an entry: sweeps drop stale entries long before a slot's
        // stamp could come round (see `TimerIndex::sweep_if_stale`).
        self.0[i] = self.0[i].wrapping_add(1);
        self.0[i]
    }

    fn is_current(&self, entry: &Entry) -> bool {
        self.0.get(entry.index as usize) == Some(&entry.stamp)
    }
}

/// One index. Entries of the buckets reached so far (the front) are in a heap; later ones
/// wait in their bucket, unordered, until the front reaches it.
pub(super) struct TimerIndex {
    front: BinaryHeap<Reverse<Entry>>,
    later: BTreeMap<i64, Vec<Entry>>,
    /// The first bucket of `later` (`i64::MAX`: none), kept so that the check after every
    /// record does not walk the tree.
    first_later: i64,
    /// Buckets up to this one are in `front` (`i64::MIN`: none yet).
    reached: i64,
    /// Entries held, stale ones included.
    held: usize,
    /// Entries held that are current.
    current: usize,
    spare: Vec<Vec<Entry>>,
}

impl Default for TimerIndex {
    fn default() -> Self {
        TimerIndex {
            front: BinaryHeap::new(),
            later: BTreeMap::new(),
            first_later: i64::MAX,
            reached: i64::MIN,
            held: 0,
            current: 0,
            spare: Vec::new(),
        }
    }
}

impl TimerIndex {
    /// Sets a timer for slot `index` at `time`, stamped `stamp` (its slot's current one).
    pub fn push(&mut self, time: i64, index: u32, stamp: u32) {
        let entry = Entry { time, index, stamp };
        self.held += 1;
        self.current += 1;
        let b = bucket(time);
        if b <= self.reached {
            self.front.push(Reverse(entry));
        } else {
            let spare = &mut self.spare;
            self.later
                .entry(b)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .push(entry);
            self.first_later = self.first_later.min(b);
        }
    }

    /// One current entry went stale (its slot's stamp was renewed).
    pub fn invalidated(&mut self) {
        self.current -= 1;
    }

    /// Takes the earliest current entry if its time is at most `limit`.
    pub fn pop_due(&mut self, limit: i64, stamps: &Stamps) -> Option<(i64, u32)> {
        loop {
            match self.front.peek() {
                // Every later bucket's entries come after the front's.
                Some(Reverse(entry)) if entry.time > limit => return None,
                Some(&Reverse(entry)) => {
                    self.front.pop();
                    self.held -= 1;
                    if stamps.is_current(&entry) {
                        self.current -= 1;
                        return Some((entry.time, entry.index));
                    }
                }
                None if self.first_later <= bucket(limit) => self.reach_next(stamps),
                None => return None,
            }
        }
    }

    /// The earliest current entry, left in place.
    pub fn first(&mut self, stamps: &Stamps) -> Option<(i64, u32)> {
        loop {
            match self.front.peek() {
                Some(Reverse(entry)) if stamps.is_current(entry) => {
                    return Some((entry.time, entry.index))
                }
                Some(_) => {
                    self.front.pop();
                    self.held -= 1;
                }
                None if self.later.is_empty() => return None,
                None => self.reach_next(stamps),
            }
        }
    }

    /// Takes the earliest current entry, whatever its time.
    pub fn pop_first(&mut self, stamps: &Stamps) -> Option<(i64, u32)> {
        let first = self.first(stamps)?;
        self.front.pop();
        self.held -= 1;
        self.current -= 1;
        Some(first)
    }

    /// Moves the first later bucket to the front, dropping its stale entries.
    fn reach_next(&mut self, stamps: &Stamps) {
        let Some((b, mut entries)) = self.later.pop_first() else {
            return;
        };
        self.reached = b;
        for entry in entries.drain(..) {
            if stamps.is_current(&entry) {
                self.front.push(Reverse(entry));
            } else {
                self.held -= 1;
            }
        }
        if self.spare.len() < SPARE_BUCKETS {
            self.spare.push(entries);
        }
        self.first_later = self.later.first_key_value().map_or(i64::MAX, |(&b, _)| b);
    }

    /// Drops every stale entry once they outnumber the current ones (plus a slack): memory
    /// stays within twice the current entries, and a stale entry never lives long enough
    /// for its slot's stamp to wrap round to it.
    pub fn sweep_if_stale(&mut self, stamps: &Stamps) {
        if self.held <= 2 * self.current + SWEEP_SLACK {
            return;
        }
        self.front.retain(|Reverse(entry)| stamps.is_current(entry));
        self.later.retain(|_, entries| {
            entries.retain(|entry| stamps.is_current(entry));
            !entries.is_empty()
        });
        self.first_later = self.later.first_key_value().map_or(i64::MAX, |(&b, _)| b);
        self.held = self.front.len() + self.later.values().map(Vec::len).sum::<usize>();
        debug_assert_eq!(self.held, self.current, "every current entry is counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: i64 = 1 << BUCKET_BITS;

    /// Sets `(time, index)` timers, each slot's stamp renewed first.
    fn index_of(timers: &[(i64, u32)], stamps: &mut Stamps) -> TimerIndex {
        let mut index = TimerIndex::default();
        for &(time, slot) in timers {
            let stamp = stamps.renew(slot);
            index.push(time, slot, stamp);
        }
        index
    }

    #[test]
    fn due_entries_come_in_time_then_slot_order_across_buckets() {
        let mut stamps = Stamps::default();
        let timers = [
            (5 * SPAN + 3, 1),
            (2, 4),
            (5 * SPAN + 3, 0),
            (SPAN - 1, 2),
            (9 * SPAN, 3),
        ];
        let mut index = index_of(&timers, &mut stamps);
        let mut due = Vec::new();
        while let Some(entry) = index.pop_due(5 * SPAN + 3, &stamps) {
            due.push(entry);
        }
        assert_eq!(
            due,
            [(2, 4), (SPAN - 1, 2), (5 * SPAN + 3, 0), (5 * SPAN + 3, 1)]
        );
        assert_eq!(index.pop_due(9 * SPAN - 1, &stamps), None);
        assert_eq!(index.first(&stamps), Some((9 * SPAN, 3)));
        assert_eq!(index.pop_due(i64::MAX, &stamps), Some((9 * SPAN, 3)));
        assert_eq!(index.first(&stamps), None);
    }

    #[test]
    fn a_renewed_slot_keeps_only_its_newest_entry() {
        let mut stamps = Stamps::default();
        let mut index = index_of(&[(10, 0), (20, 1)], &mut stamps);
        // Slot 0's deadline moves on twice, one of them into a bucket already reached.
        index.first(&stamps);
        for time in [3 * SPAN, 15] {
            index.invalidated();
            index.push(time, 0, stamps.renew(0));
        }
        assert_eq!(index.pop_first(&stamps), Some((15, 0)));
        assert_eq!(index.pop_due(i64::MAX, &stamps), Some((20, 1)));
        assert_eq!(
            index.pop_due(i64::MAX, &stamps),
            None,
            "no stale entry fires"
        );
    }

    #[test]
    fn an_entry_pushed_behind_the_front_still_fires_in_order() {
        let mut stamps = Stamps::default();
        let mut index = index_of(&[(4 * SPAN, 0)], &mut stamps);
        assert_eq!(index.pop_due(4 * SPAN - 1, &stamps), None);
        index.first(&stamps);
        // The front holds bucket 4 now; an earlier timer still comes first.
        index.push(SPAN, 1, stamps.renew(1));
        assert_eq!(index.pop_due(4 * SPAN, &stamps), Some((SPAN, 1)));
        assert_eq!(index.pop_due(4 * SPAN, &stamps), Some((4 * SPAN, 0)));
    }

    #[test]
    fn stale_entries_are_swept_once_they_outnumber_the_current_ones() {
        let mut stamps = Stamps::default();
        let mut index = index_of(&[(0, 0)], &mut stamps);
        let renewals = 2 * SWEEP_SLACK;
        for n in 1..=renewals as i64 {
            index.invalidated();
            index.push(n * 1000, 0, stamps.renew(0));
            index.sweep_if_stale(&stamps);
            assert!(index.held <= 2 * index.current + SWEEP_SLACK + 1);
        }
        assert!(index.held < renewals, "swept: {} held", index.held);
        assert_eq!(index.pop_first(&stamps), Some((renewals as i64 * 1000, 0)));
        assert_eq!(index.first(&stamps), None);
    }
}
