//! At-least-once bookkeeping (SPEC section 6): per input partition, the records processed in
//! order with the number of their outputs not yet acknowledged. An input offset becomes
//! committable only when every output of that record and of all earlier records of its
//! partition is acknowledged. Shared by the processing loop and the producer's delivery
//! callback; pure and unit-tested.

use std::collections::{HashMap, VecDeque};

/// One processed record (or one idle-timer firing, which has no offset of its own).
#[derive(Debug)]
struct Entry {
    /// The input offset, `None` for outputs not caused by a record (idle advance).
    offset: Option<i64>,
    /// Outputs sent and not yet acknowledged.
    outstanding: u32,
}

/// The records of one partition, in processing order.
#[derive(Debug, Default)]
struct Lane {
    /// Sequence number of `entries[0]`.
    front_seq: u64,
    entries: VecDeque<Entry>,
    /// Next offset to commit (last completed record + 1), if it moved since last taken.
    committable: Option<i64>,
    changed: bool,
}

/// Identifies an entry for delivery reports: (partition, sequence number).
pub type Ticket = (i32, u64);

/// In-flight work per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    lanes: HashMap<i32, Lane>,
}

impl OffsetTracker {
    /// Registers a processed record with `outputs` messages about to be sent; returns the
    /// ticket their delivery reports carry. Call before sending them.
    pub fn register(&mut self, partition: i32, offset: Option<i64>, outputs: u32) -> Ticket {
        let lane = self.lanes.entry(partition).or_default();
        let seq = lane.front_seq + lane.entries.len() as u64;
        lane.entries.push_back(Entry {
            offset,
            outstanding: outputs,
        });
        if outputs == 0 {
            Self::advance(lane);
        }
        (partition, seq)
    }

    /// One output of `ticket` was acknowledged by the broker.
    pub fn delivered(&mut self, ticket: Ticket) {
        let (partition, seq) = ticket;
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return; // The partition was revoked and dropped meanwhile.
        };
        let Some(index) = seq.checked_sub(lane.front_seq) else {
            return;
        };
        if let Some(entry) = lane.entries.get_mut(index as usize) {
            entry.outstanding = entry.outstanding.saturating_sub(1);
            if index == 0 && entry.outstanding == 0 {
                Self::advance(lane);
            }
        }
    }

    /// Pops completed entries from the front, moving the committable offset.
    fn advance(lane: &mut Lane) {
        while lane.entries.front().is_some_and(|e| e.outstanding == 0) {
            if let Some(done) = lane.entries.pop_front() {
                lane.front_seq += 1;
                if let Some(offset) = done.offset {
                    lane.committable = Some(offset + 1);
                    lane.changed = true;
                }
            }
        }
    }

    /// Partitions whose committable offset moved since the last call, with that offset.
    pub fn take_committable(&mut self) -> Vec<(i32, i64)> {
        let mut moved = Vec::new();
        for (&partition, lane) in &mut self.lanes {
            if std::mem::take(&mut lane.changed) {
                if let Some(offset) = lane.committable {
                    moved.push((partition, offset));
                }
            }
        }
        moved.sort_unstable();
        moved
    }

    /// The committable offset of one partition, if any record of it completed.
    pub fn committable(&self, partition: i32) -> Option<i64> {
        self.lanes.get(&partition).and_then(|l| l.committable)
    }

    /// Outputs not yet acknowledged, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.lanes.values().map(|l| l.entries.len()).sum()
    }

    /// Forgets a revoked partition.
    pub fn remove(&mut self, partition: i32) {
        self.lanes.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_committable_only_after_all_earlier_outputs_are_acknowledged() {
        let mut t = OffsetTracker::default();
        let a = t.register(0, Some(10), 2);
        let b = t.register(0, Some(11), 1);
        let c = t.register(0, Some(12), 0);
        assert_eq!(t.take_committable(), vec![]);
        t.delivered(b);
        assert_eq!(t.take_committable(), vec![], "11 waits for 10");
        t.delivered(a);
        assert_eq!(t.take_committable(), vec![], "10 has one output left");
        t.delivered(a);
        assert_eq!(t.take_committable(), vec![(0, 13)], "10, 11 and 12 done");
        assert_eq!(t.take_committable(), vec![], "reported once");
        let _ = c;
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn records_without_outputs_complete_at_once_when_first() {
        let mut t = OffsetTracker::default();
        t.register(3, Some(0), 0);
        t.register(3, Some(1), 0);
        assert_eq!(t.take_committable(), vec![(3, 2)]);
    }

    #[test]
    fn idle_outputs_hold_back_later_offsets_without_an_offset_of_their_own() {
        let mut t = OffsetTracker::default();
        t.register(1, Some(5), 0);
        let idle = t.register(1, None, 1);
        t.register(1, Some(6), 0);
        assert_eq!(t.take_committable(), vec![(1, 6)]);
        t.delivered(idle);
        assert_eq!(t.take_committable(), vec![(1, 7)]);
    }

    #[test]
    fn partitions_are_independent_and_removal_ignores_late_reports() {
        let mut t = OffsetTracker::default();
        let a = t.register(0, Some(0), 1);
        t.register(1, Some(0), 0);
        assert_eq!(t.take_committable(), vec![(1, 1)]);
        t.remove(0);
        t.delivered(a);
        assert_eq!(t.take_committable(), vec![]);
        assert_eq!(t.committable(0), None);
    }
}
