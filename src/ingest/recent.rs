//! The webhook ids written lately (`ingest.dedup_window` of them): a redelivery of one is
//! answered 200 without a second write.
//!
//! Every accepted webhook passes here, so the window allocates nothing once full: the ids sit
//! in a ring of reused strings, oldest overwritten first, and a hash table holds their slots.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

pub(super) struct RecentIds {
    /// Slots of `ring`, found by the hash of the id in them.
    slots: HashTable<u32>,
    /// The ids, each in a string that is cleared and refilled when its slot comes round.
    ring: Vec<String>,
    /// The slot the next new id takes once the ring is full (the oldest id's).
    oldest: usize,
    capacity: usize,
    /// Seeded per process: the ids come from the sender (signed, but still not ours).
    hasher: DefaultHashBuilder,
}

impl RecentIds {
    pub(super) fn new(capacity: usize) -> Self {
        // Slots are u32; a window of four billion ids would not fit in memory anyway.
        let capacity = capacity.min(u32::MAX as usize);
        RecentIds {
            slots: HashTable::new(),
            ring: Vec::new(),
            oldest: 0,
            capacity,
            hasher: DefaultHashBuilder::default(),
        }
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.holds(self.hasher.hash_one(id), id)
    }

    /// Whether `id`, whose hash is `hash`, is in the window.
    fn holds(&self, hash: u64, id: &str) -> bool {
        self.slots
            .find(hash, |&slot| self.ring[slot as usize] == id)
            .is_some()
    }

    pub(super) fn insert(&mut self, id: &str) {
        if self.capacity == 0 {
            return;
        }
        let hash = self.hasher.hash_one(id);
        if self.holds(hash, id) {
            return;
        }
        let slot = if self.ring.len() < self.capacity {
            self.ring.push(id.to_owned());
            self.ring.len() - 1
        } else {
            let slot = self.oldest;
            self.oldest = (slot + 1) % self.capacity;
            let forgotten = self.hasher.hash_one(&self.ring[slot]);
            if let Ok(entry) = self
                .slots
                .find_entry(forgotten, |&held| held as usize == slot)
            {
                entry.remove();
            }
            let reused = &mut self.ring[slot];
            reused.clear();
            reused.push_str(id);
            slot
        };
        let hasher = &self.hasher;
        let ring = &self.ring;
        self.slots.insert_unique(hash, slot as u32, |&held| {
            hasher.hash_one(&ring[held as usize])
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_forget_the_oldest_beyond_their_capacity() {
        let mut recent = RecentIds::new(2);
        recent.insert("a");
        recent.insert("b");
        recent.insert("a");
        assert!(recent.contains("a") && recent.contains("b"));
        recent.insert("c");
        assert!(!recent.contains("a"));
        assert!(recent.contains("b") && recent.contains("c"));
        let mut off = RecentIds::new(0);
        off.insert("a");
        assert!(!off.contains("a"));
    }

    #[test]
    fn a_long_run_keeps_exactly_the_last_window() {
        let window = 1_000;
        let mut recent = RecentIds::new(window);
        for n in 0..10_000u64 {
            recent.insert(&format!("msg_{n}"));
            // Redeliveries of ids in the window change nothing.
            if n % 7 == 0 {
                recent.insert(&format!("msg_{}", n.saturating_sub(window as u64 / 2)));
            }
        }
        for n in 0..10_000u64 {
            assert_eq!(recent.contains(&format!("msg_{n}")), n >= 9_000, "msg_{n}");
        }
        assert_eq!(recent.slots.len(), window);
    }
}
