//! Sizing the hash tables whose entries come and go: transactions, their
//! timers, calls.
//!
//! std's `HashMap` marks some removed slots as deleted rather than empty, and
//! a deleted slot takes room until the table is rebuilt. When the room runs
//! out and more than half the table holds live entries, the table is rebuilt
//! at twice its size, however few entries it gained. So a table whose entries
//! are steadily replaced, at a steady count, doubles once its deleted slots
//! have used up its room: minutes into a steady load, and to four or more
//! slots per live entry. [`Table::make_room`] rebuilds such a table before
//! that happens: at the size it has while its live entries fill at most two
//! thirds of it, and otherwise with room for as many entries again.
//! [`Table::shrink_sparse`] gives back the room of a burst once it is over. A
//! [`Table`] is a `HashMap` that remembers its full room (std's `capacity`
//! counts deleted slots as taken, so it cannot say).
//!
//! The band between the two keeps a table's size, and so the process's
//! memory, level under a steady load: a table grows only when its live entries
//! rise by a third over those it last grew for, not whenever a rebuild happens
//! to meet a few more entries than the one before.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::ops::{Deref, DerefMut};

/// Tables with room for at most this many entries are never shrunk: a table
/// with a few keys in flight keeps its small allocation instead of freeing and
/// making it again as keys come and go.
pub const SHRINK_MIN: usize = 16;

/// A `HashMap` whose owner calls [`Table::make_room`] before inserting new
/// keys (and [`Table::shrink_sparse`] after removing some): it reads and
/// writes as the map it derefs to.
#[derive(Debug, Clone)]
pub struct Table<K, V, S = RandomState> {
    map: HashMap<K, V, S>,
    /// Entries the table held room for when it was last built.
    room: usize,
}

impl<K, V> Table<K, V> {
    pub fn new() -> Table<K, V> {
        Table {
            map: HashMap::new(),
            room: 0,
        }
    }
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Table<K, V> {
        Table::new()
    }
}

impl<K, V, S> Table<K, V, S> {
    /// Entries the table had room for when it was last built (std's
    /// `capacity` is that less the deleted slots).
    pub fn room(&self) -> usize {
        self.room.max(self.map.capacity())
    }
}

impl<K, V, S> Deref for Table<K, V, S> {
    type Target = HashMap<K, V, S>;
    fn deref(&self) -> &HashMap<K, V, S> {
        &self.map
    }
}

impl<K, V, S> DerefMut for Table<K, V, S> {
    fn deref_mut(&mut self) -> &mut HashMap<K, V, S> {
        &mut self.map
    }
}

impl<K: Eq + Hash, V, S: BuildHasher + Clone> Table<K, V, S> {
    /// Rebuilds the table when at most `margin` more entries fit without a
    /// rebuild; returns whether it did. The rebuilt table keeps its size
    /// while the live entries and `margin` fill at most two thirds of it (the
    /// rebuild only clears deleted slots), and otherwise has room for twice
    /// the live entries and `margin`.
    ///
    /// Called with `margin` 0 before each insert of a new key, the table never
    /// doubles for room its deleted slots take; an owner that checks now and
    /// then instead passes a margin that covers the inserts between two
    /// checks. A rebuild moves every entry once and leaves room for at least
    /// half as many inserts again, so its cost per insert is constant; while
    /// it runs, the old table and the new one are both allocated.
    pub fn make_room(&mut self, margin: usize) -> bool {
        // An insert the owner did not make room for may have grown the map.
        self.room = self.room();
        if self.map.capacity() - self.map.len() > margin {
            return false;
        }
        let needed = self.map.len() + margin + 1;
        let wanted = if needed.saturating_mul(3) <= self.room.saturating_mul(2) {
            self.room
        } else {
            needed.saturating_mul(2)
        };
        let mut rebuilt = HashMap::with_capacity_and_hasher(wanted, self.map.hasher().clone());
        rebuilt.extend(self.map.drain());
        self.map = rebuilt;
        self.room = self.map.capacity();
        true
    }
}

impl<K: Eq + Hash, V, S: BuildHasher> Table<K, V, S> {
    /// Gives back the room a burst needed once under an eighth of it is used,
    /// keeping twice what is: memory follows the entries in flight rather
    /// than their peak, and as a table must lose most of its entries between
    /// two shrinks, the cost is constant per removal. (A table
    /// [`Table::make_room`] grew holds over a fifth of its room: only a burst
    /// that is over takes it under an eighth.)
    pub fn shrink_sparse(&mut self) {
        self.room = self.room();
        if self.room > SHRINK_MIN && self.map.len() < self.room / 8 {
            self.map.shrink_to(self.map.len() * 2);
            self.room = self.map.capacity();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Replaces the oldest of `live` entries `rounds` times, calling
    /// `before_insert` before each insert; returns the table's room once all
    /// the first entries have been replaced, and the largest room after that.
    fn churn(
        live: u64,
        rounds: u64,
        mut before_insert: impl FnMut(&mut Table<u64, u64>),
    ) -> (usize, usize) {
        let mut map = Table::new();
        let mut order = VecDeque::new();
        let (mut settled, mut most) = (0, 0);
        for key in 0..live + rounds {
            if key >= live {
                let oldest = order.pop_front().expect("live entries");
                map.remove(&oldest);
            }
            before_insert(&mut map);
            map.insert(key, key);
            order.push_back(key);
            if key + 1 == 2 * live {
                settled = map.room();
            }
            if key >= 2 * live {
                most = most.max(map.room());
            }
        }
        assert_eq!(map.len() as u64, live);
        (settled, most)
    }

    #[test]
    fn a_steadily_replaced_table_keeps_its_size() {
        const LIVE: u64 = 7_500;
        // Without help the table doubles once its deleted slots use up the
        // room, at a steady count of entries (the behaviour this module is for).
        let (settled, most) = churn(LIVE, 300_000, |_| {});
        assert!(most >= 2 * settled, "room {settled}, then {most}");
        // Helped, it keeps the size it has once every entry has been replaced,
        // for every live count (wherever it falls between two sizes).
        for live in [LIVE, 6_000, 7_000, 9_000, 14_000] {
            let (settled, most) = churn(live, 200_000, |map| {
                map.make_room(0);
            });
            assert_eq!(most, settled, "{live} live entries");
            assert!(most < 4 * live as usize, "room for {most}");
        }
    }

    /// A table whose owner makes room before each insert, with its keys in
    /// the order they came.
    #[derive(Default)]
    struct Owner {
        map: Table<u64, ()>,
        order: VecDeque<u64>,
        next: u64,
    }

    impl Owner {
        fn insert(&mut self) {
            self.map.make_room(0);
            self.map.insert(self.next, ());
            self.order.push_back(self.next);
            self.next += 1;
        }

        fn remove_oldest(&mut self) {
            self.map.remove(&self.order.pop_front().expect("entries"));
        }

        /// Takes the count to `low` and `high` in turn, `rounds` times, each
        /// time first replacing every entry three times over; checks that the
        /// room stays `room` all along.
        fn wander(&mut self, low: usize, high: usize, rounds: usize, room: usize) {
            for round in 0..rounds {
                let target = if round % 2 == 0 { high } else { low };
                for _ in 0..3 * self.map.len() {
                    self.remove_oldest();
                    self.insert();
                }
                while self.map.len() < target {
                    self.insert();
                }
                while self.map.len() > target {
                    self.remove_oldest();
                }
                assert_eq!(self.map.room(), room, "round {round} ({low}..{high})");
            }
        }
    }

    #[test]
    fn a_table_grows_only_past_two_thirds_of_its_room() {
        let mut owner = Owner::default();
        for _ in 0..8_000 {
            owner.insert();
        }
        let room = owner.map.room();
        // The count wanders between 8,000 and the top of the band while every
        // entry is replaced many times over: the size holds.
        let top = room * 2 / 3 - 1;
        assert!(top > 8_000, "room {room}");
        owner.wander(8_000, top, 20, room);
        // Filled past the band, it grows to room for twice its entries.
        while owner.map.room() == room {
            owner.insert();
        }
        let grown = owner.map.room();
        assert!(
            grown >= 2 * owner.map.len(),
            "{grown} for {}",
            owner.map.len()
        );
        // And keeps that size when the count falls back into the old band and
        // rises past it again: it does not shrink and grow with each swing.
        owner.wander(8_000, top + 100, 20, grown);
    }

    #[test]
    fn a_growing_table_grows_and_keeps_its_entries() {
        let mut map = Table::new();
        let mut rebuilds = 0;
        for key in 0..100_000u32 {
            if map.make_room(0) {
                rebuilds += 1;
            }
            map.insert(key, key * 2);
        }
        assert_eq!(map.len(), 100_000);
        assert!((0..100_000u32).all(|k| map.get(&k) == Some(&(k * 2))));
        // Each rebuild makes room for half as many again: a few dozen at most.
        assert!((5..40).contains(&rebuilds), "{rebuilds} rebuilds");
    }

    #[test]
    fn a_margin_rebuilds_before_the_room_is_gone() {
        let mut map: Table<u32, ()> = Table::new();
        for key in 0..1_000 {
            map.make_room(100);
            map.insert(key, ());
            assert!(
                map.capacity() - map.len() >= 100,
                "{} of {}",
                map.len(),
                map.capacity()
            );
        }
    }

    #[test]
    fn a_burst_is_given_back() {
        let mut map: Table<u32, ()> = Table::new();
        map.extend((0..10_000).map(|k| (k, ())));
        map.retain(|k, _| *k < 10);
        map.shrink_sparse();
        assert!(map.capacity() <= 4 * SHRINK_MIN, "{}", map.capacity());
        assert_eq!(map.len(), 10);
    }
}
