//! The order of each partition's changelog writes across failed deliveries, under
//! at-least-once: once a write failed, that partition's later writes wait for its retry.

use std::collections::{HashMap, VecDeque};

use crate::kafka::offsets::Ticket;

/// Keeps each partition's changelog in the order the writes were made across failed
/// deliveries. First sends land in order (one idempotent producer, one changelog partition),
/// but a failed write sent again would land behind the later writes of its partition: a
/// progress record claiming its record applied, or a later state of the same session, which
/// the stale retry would then overwrite. So once a changelog write of a partition has
/// failed, that partition's released writes are held back, in order, until every failed one
/// is sent again and acknowledged.
///
/// What this cannot order: writes already handed to librdkafka before the failure was
/// reported. They land first only if librdkafka writes later messages of a partition after
/// failing an earlier one (a gap). It does so after a timed-out message, which is why the
/// changelog topic's writes never time out
/// ([`UntimedTopic`](crate::kafka::sink::UntimedTopic)), whatever `message.timeout.ms` says;
/// so a gap takes a permanent broker refusal of a changelog write.
///
/// Nor can it prevent copies: an output that times out makes librdkafka bump the producer's
/// epoch, and it then sends the changelog writes it holds unacknowledged again, in order,
/// under the new epoch; those that had landed land twice (librdkafka's `eos` debug log shows
/// the changelog partitions' sequence reset in `kafka_faults`' retry test). The copies
/// replay a run of writes up to the newest, so last-write-wins still restores the newest
/// state, and their records were not committed while they were unacknowledged.
#[derive(Debug, Default)]
pub struct ChangelogOrder {
    /// Per partition, the tickets whose changelog write failed and is not yet acknowledged.
    failed: HashMap<i32, Vec<Ticket>>,
    /// Released tickets held back, in release order.
    held: VecDeque<Ticket>,
}

impl ChangelogOrder {
    /// A changelog write of `ticket` failed (it waits in the retry queue).
    pub fn failed(&mut self, ticket: Ticket) {
        let tickets = self.failed.entry(ticket.0).or_default();
        if !tickets.contains(&ticket) {
            tickets.push(ticket);
        }
    }

    /// Forgets the failures that are now acknowledged.
    pub fn settle(&mut self, acknowledged: impl Fn(Ticket) -> bool) {
        self.failed.retain(|_, tickets| {
            tickets.retain(|t| !acknowledged(*t));
            !tickets.is_empty()
        });
    }

    /// Of the held tickets, then `released`, those that may be sent now, in order; the
    /// others (of partitions with a failed write outstanding) stay held, in order.
    pub fn admit(&mut self, released: Vec<Ticket>) -> Vec<Ticket> {
        if self.held.is_empty() && self.failed.is_empty() {
            return released;
        }
        let mut admitted = Vec::with_capacity(self.held.len() + released.len());
        let mut still_held = VecDeque::new();
        for ticket in self.held.drain(..).chain(released) {
            if self.failed.contains_key(&ticket.0) {
                still_held.push_back(ticket);
            } else {
                admitted.push(ticket);
            }
        }
        self.held = still_held;
        admitted
    }

    /// Whether changelog writes are held back or failed ones outstanding.
    pub fn is_waiting(&self) -> bool {
        !self.held.is_empty() || !self.failed.is_empty()
    }

    /// Revoked partitions: their writes go with them.
    pub fn forget(&mut self, partitions: &[i32]) {
        self.failed.retain(|p, _| !partitions.contains(p));
        self.held.retain(|t| !partitions.contains(&t.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_failed_changelog_write_its_partition_waits_until_the_retry_is_acknowledged() {
        let mut order = ChangelogOrder::default();
        // No failure: everything released goes at once.
        assert_eq!(order.admit(vec![(0, 1), (1, 1)]), vec![(0, 1), (1, 1)]);
        order.failed((0, 1));
        // Partition 0's later writes (a progress record among them) wait; partition 1's go.
        assert_eq!(order.admit(vec![(0, 2), (1, 2), (0, 3)]), vec![(1, 2)]);
        assert!(order.is_waiting());
        assert_eq!(order.admit(vec![(0, 4)]), vec![]);
        // The retry is sent but not acknowledged yet: still held.
        order.settle(|_| false);
        assert_eq!(order.admit(vec![]), vec![]);
        // Acknowledged: the held writes go, in their order, before newer ones.
        order.settle(|ticket| ticket == (0, 1));
        assert_eq!(
            order.admit(vec![(0, 5)]),
            vec![(0, 2), (0, 3), (0, 4), (0, 5)]
        );
        assert!(!order.is_waiting());
        // A revoked partition's failures and held writes go with it.
        order.failed((2, 7));
        assert_eq!(order.admit(vec![(2, 8)]), vec![]);
        order.forget(&[2]);
        assert!(!order.is_waiting());
    }
}
