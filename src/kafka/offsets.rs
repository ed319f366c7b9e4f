//! At-least-once bookkeeping (SPEC section 6): per input partition, the records processed in
//! order with the number of their outputs not yet acknowledged. An input offset becomes
//! committable only when every output of that record and of all earlier records of its
//! partition is acknowledged. Shared by the processing loop and the producer's delivery
//! callback; pure and unit-tested.
//!
//! Two phases per record: its derived events and dead letters first; its state changelog
//! writes only once those are acknowledged (the loop sends them when the ticket is
//! released). The changelog therefore never gets ahead of the outputs: after a crash, a
//! record whose changelog write survived also had its outputs delivered, and a record whose
//! outputs were lost is re-derived from the older state. Releases follow record order within
//! a partition, so a session's newer state is never written before its older state.

use std::collections::{HashMap, VecDeque};

/// One processed record (or one idle-timer firing, which has no offset of its own).
#[derive(Debug)]
struct Entry {
    /// The input offset, `None` for outputs not caused by a record (idle advance).
    offset: Option<i64>,
    /// Derived outputs sent and not yet acknowledged.
    outstanding: u32,
    /// Changelog writes not yet acknowledged (sent only once released).
    changelog: u32,
    /// The changelog writes wait for the outputs.
    held: bool,
}

impl Entry {
    fn complete(&self) -> bool {
        self.outstanding == 0 && !self.held && self.changelog == 0
    }
}

/// Which phase a delivery report belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Output,
    Changelog,
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
    /// Sequence number of the first entry not yet released (release goes in order).
    release_seq: u64,
}

impl Lane {
    fn entry(&mut self, seq: u64) -> Option<(usize, &mut Entry)> {
        let index = seq.checked_sub(self.front_seq)? as usize;
        self.entries.get_mut(index).map(|e| (index, e))
    }

    /// The entry of `seq`, while it waits for something.
    fn waiting(&self, seq: u64) -> Option<&Entry> {
        self.entries.get(seq.checked_sub(self.front_seq)? as usize)
    }

    /// One past the last sequence number this lane issued.
    fn end_seq(&self) -> u64 {
        self.front_seq + self.entries.len() as u64
    }
}

/// Identifies an entry for delivery reports: (partition, sequence number).
pub type Ticket = (i32, u64);

/// In-flight work per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    lanes: HashMap<i32, Lane>,
    /// Tickets whose outputs are all acknowledged and whose changelog writes may go.
    releasable: Vec<Ticket>,
    /// One past the highest sequence number issued on any removed lane. A partition assigned
    /// again starts its lane here, so that the tickets of its earlier assignment (late delivery
    /// reports, retries, a send that outlived the revocation) match none of the new ones.
    next_fresh_seq: u64,
}

impl OffsetTracker {
    /// Registers a processed record with `outputs` derived messages about to be sent and
    /// `changelog` state writes held back until those are acknowledged; returns the ticket
    /// their delivery reports carry. Call before sending.
    pub fn register(
        &mut self,
        partition: i32,
        offset: Option<i64>,
        outputs: u32,
        changelog: u32,
    ) -> Ticket {
        let fresh = self.next_fresh_seq;
        let lane = self.lanes.entry(partition).or_insert_with(|| Lane {
            front_seq: fresh,
            release_seq: fresh,
            ..Lane::default()
        });
        let seq = lane.end_seq();
        lane.entries.push_back(Entry {
            offset,
            outstanding: outputs,
            changelog,
            held: changelog > 0,
        });
        Self::release_in_order(lane, partition, &mut self.releasable);
        Self::advance(lane);
        (partition, seq)
    }

    /// One message of `ticket` was acknowledged by the broker.
    pub fn delivered(&mut self, ticket: Ticket, phase: Phase) {
        let (partition, seq) = ticket;
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return; // The partition was revoked and dropped meanwhile.
        };
        let Some((index, entry)) = lane.entry(seq) else {
            return;
        };
        match phase {
            Phase::Output => {
                entry.outstanding = entry.outstanding.saturating_sub(1);
                if entry.outstanding == 0 {
                    Self::release_in_order(lane, partition, &mut self.releasable);
                }
            }
            Phase::Changelog => entry.changelog = entry.changelog.saturating_sub(1),
        }
        if index == 0 {
            Self::advance(lane);
        }
    }

    /// Releases, in record order, the changelog writes of entries whose outputs are all
    /// acknowledged, stopping at the first entry still waiting for outputs.
    fn release_in_order(lane: &mut Lane, partition: i32, releasable: &mut Vec<Ticket>) {
        lane.release_seq = lane.release_seq.max(lane.front_seq);
        while let Some((_, entry)) = lane.entry(lane.release_seq) {
            if entry.outstanding > 0 {
                break;
            }
            if entry.held {
                entry.held = false;
                releasable.push((partition, lane.release_seq));
            }
            lane.release_seq += 1;
        }
    }

    /// Whether `ticket` belongs to the current assignment of its partition and still waits
    /// for something: a ticket of a revoked partition, or of its earlier assignment, is not.
    pub fn is_current(&self, (partition, seq): Ticket) -> bool {
        self.lanes
            .get(&partition)
            .and_then(|lane| lane.waiting(seq))
            .is_some()
    }

    /// Whether every changelog write of `ticket` is acknowledged (or its partition revoked).
    pub fn changelog_acknowledged(&self, (partition, seq): Ticket) -> bool {
        self.lanes
            .get(&partition)
            .and_then(|lane| lane.waiting(seq))
            .is_none_or(|e| !e.held && e.changelog == 0)
    }

    /// Tickets whose changelog writes may now be sent, in the order they must be sent.
    pub fn take_releasable(&mut self) -> Vec<Ticket> {
        std::mem::take(&mut self.releasable)
    }

    /// Whether changelog writes wait to be sent.
    pub fn has_releasable(&self) -> bool {
        !self.releasable.is_empty()
    }

    /// Pops completed entries from the front, moving the committable offset.
    fn advance(lane: &mut Lane) {
        while lane.entries.front().is_some_and(Entry::complete) {
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
        if let Some(lane) = self.lanes.remove(&partition) {
            self.next_fresh_seq = self.next_fresh_seq.max(lane.end_seq());
        }
        self.releasable.retain(|t| t.0 != partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_committable_only_after_all_earlier_outputs_are_acknowledged() {
        let mut t = OffsetTracker::default();
        let a = t.register(0, Some(10), 2, 0);
        let b = t.register(0, Some(11), 1, 0);
        t.register(0, Some(12), 0, 0);
        assert_eq!(t.take_committable(), vec![]);
        t.delivered(b, Phase::Output);
        assert_eq!(t.take_committable(), vec![], "11 waits for 10");
        t.delivered(a, Phase::Output);
        assert_eq!(t.take_committable(), vec![], "10 has one output left");
        t.delivered(a, Phase::Output);
        assert_eq!(t.take_committable(), vec![(0, 13)], "10, 11 and 12 done");
        assert_eq!(t.take_committable(), vec![], "reported once");
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn changelog_writes_are_released_after_the_outputs_and_hold_the_offset() {
        let mut t = OffsetTracker::default();
        let a = t.register(0, Some(0), 1, 2);
        assert_eq!(t.take_releasable(), vec![], "outputs first");
        t.delivered(a, Phase::Output);
        assert_eq!(t.take_committable(), vec![], "changelog not written yet");
        assert_eq!(t.take_releasable(), vec![a]);
        assert_eq!(t.take_releasable(), vec![], "released once");
        t.delivered(a, Phase::Changelog);
        assert_eq!(t.take_committable(), vec![]);
        t.delivered(a, Phase::Changelog);
        assert_eq!(t.take_committable(), vec![(0, 1)]);
    }

    #[test]
    fn changelog_writes_are_released_in_record_order() {
        let mut t = OffsetTracker::default();
        let a = t.register(0, Some(0), 1, 1);
        let b = t.register(0, Some(1), 0, 1);
        assert_eq!(
            t.take_releasable(),
            vec![],
            "b waits for a, whose outputs are in flight"
        );
        t.delivered(a, Phase::Output);
        assert_eq!(t.take_releasable(), vec![a, b]);
    }

    #[test]
    fn a_record_with_only_changelog_writes_is_releasable_at_once() {
        let mut t = OffsetTracker::default();
        let a = t.register(2, Some(7), 0, 1);
        assert_eq!(t.take_releasable(), vec![a]);
        t.delivered(a, Phase::Changelog);
        assert_eq!(t.take_committable(), vec![(2, 8)]);
    }

    #[test]
    fn records_without_outputs_complete_at_once_when_first() {
        let mut t = OffsetTracker::default();
        t.register(3, Some(0), 0, 0);
        t.register(3, Some(1), 0, 0);
        assert_eq!(t.take_committable(), vec![(3, 2)]);
    }

    #[test]
    fn idle_outputs_hold_back_later_offsets_without_an_offset_of_their_own() {
        let mut t = OffsetTracker::default();
        t.register(1, Some(5), 0, 0);
        let idle = t.register(1, None, 1, 0);
        t.register(1, Some(6), 0, 0);
        assert_eq!(t.take_committable(), vec![(1, 6)]);
        t.delivered(idle, Phase::Output);
        assert_eq!(t.take_committable(), vec![(1, 7)]);
    }

    #[test]
    fn partitions_are_independent_and_removal_ignores_late_reports() {
        let mut t = OffsetTracker::default();
        let a = t.register(0, Some(0), 1, 1);
        t.register(1, Some(0), 0, 0);
        assert_eq!(t.take_committable(), vec![(1, 1)]);
        t.remove(0);
        t.delivered(a, Phase::Output);
        assert_eq!(t.take_releasable(), vec![]);
        assert_eq!(t.take_committable(), vec![]);
        assert_eq!(t.committable(0), None);
    }

    #[test]
    fn a_partition_assigned_again_ignores_the_reports_of_its_earlier_assignment() {
        let mut t = OffsetTracker::default();
        let old = t.register(0, Some(10), 1, 0);
        t.remove(0);
        // Assigned again, re-read from its committed offset.
        let new = t.register(0, Some(10), 1, 0);
        assert_ne!(
            old, new,
            "a ticket of the earlier assignment is no ticket of this one"
        );
        assert!(!t.is_current(old));
        assert!(t.is_current(new));
        t.delivered(old, Phase::Output);
        assert_eq!(
            t.take_committable(),
            vec![],
            "the late report acknowledges nothing of the new assignment"
        );
        t.delivered(new, Phase::Output);
        assert_eq!(t.take_committable(), vec![(0, 11)]);
        assert!(!t.is_current(new), "completed: nothing of it waits");
    }
}
