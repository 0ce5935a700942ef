//! Sizing the hash tables whose entries come and go: transactions, their
//! timers, calls.
//!
//! std's `HashMap` marks some removed slots as deleted rather than empty, and
//! a deleted slot takes room until the table is rebuilt. When the room runs
//! out and more than half the table holds live entries, the table is rebuilt
//! at twice its size, however few entries it gained. So a table whose entries
//! are steadily replaced, at a steady count, doubles once its deleted slots
//! have used up its room: minutes into a steady load, and to four or more
//! slots per live entry. [`make_room`] rebuilds such a table at a size that
//! follows its live entries before that happens, and [`shrink_sparse`] gives
//! back the room of a burst once it is over.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Tables with room for at most this many entries are never shrunk: a table
/// with a few keys in flight keeps its small allocation instead of freeing and
/// making it again as keys come and go.
pub const SHRINK_MIN: usize = 16;

/// Rebuilds `map` with room for half as many entries again as it holds when
/// at most `margin` more fit without a rebuild; returns whether it did.
///
/// Called with `margin` 0 before each insert of a new key, the table never
/// doubles for room its deleted slots take; an owner that checks now and then
/// instead passes a margin that covers the inserts between two checks. A
/// rebuild moves every entry once and leaves room for at least half as many
/// inserts again, so its cost per insert is constant; while it runs, the old
/// table and the new one are both allocated.
pub fn make_room<K, V, S>(map: &mut HashMap<K, V, S>, margin: usize) -> bool
where
    K: Eq + Hash,
    S: BuildHasher + Clone,
{
    if map.capacity() - map.len() > margin {
        return false;
    }
    let wanted = map.len() + map.len() / 2 + margin + 1;
    let mut rebuilt = HashMap::with_capacity_and_hasher(wanted, map.hasher().clone());
    rebuilt.extend(map.drain());
    *map = rebuilt;
    true
}

/// Gives back the room a burst needed once under a quarter of it is used,
/// keeping twice what is: memory follows the entries in flight rather than
/// their peak, and as a table must lose half its entries between two shrinks,
/// the cost is constant per removal.
pub fn shrink_sparse<K, V, S>(map: &mut HashMap<K, V, S>)
where
    K: Eq + Hash,
    S: BuildHasher,
{
    if map.capacity() > SHRINK_MIN && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Replaces the oldest of `live` entries `rounds` times, calling
    /// `before_insert` before each insert; returns the largest room seen.
    fn churn(
        live: u64,
        rounds: u64,
        mut before_insert: impl FnMut(&mut HashMap<u64, u64>),
    ) -> usize {
        let mut map = HashMap::new();
        let mut order = VecDeque::new();
        let mut most = 0;
        for key in 0..live + rounds {
            if key >= live {
                let oldest = order.pop_front().expect("live entries");
                map.remove(&oldest);
            }
            before_insert(&mut map);
            map.insert(key, key);
            order.push_back(key);
            most = most.max(map.capacity());
        }
        assert_eq!(map.len() as u64, live);
        most
    }

    #[test]
    fn a_steadily_replaced_table_keeps_its_size() {
        const LIVE: u64 = 7_500;
        // Without help the table doubles once its deleted slots use up the
        // room, at a steady count of entries (the behaviour this module is for).
        let unhelped = churn(LIVE, 300_000, |_| {});
        assert!(unhelped > 3 * LIVE as usize, "room for {unhelped}");
        let helped = churn(LIVE, 300_000, |map| {
            make_room(map, 0);
        });
        assert!(helped < 2 * LIVE as usize, "room for {helped}");
    }

    #[test]
    fn a_growing_table_grows_and_keeps_its_entries() {
        let mut map = HashMap::new();
        let mut rebuilds = 0;
        for key in 0..100_000u32 {
            if make_room(&mut map, 0) {
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
        let mut map: HashMap<u32, ()> = HashMap::new();
        for key in 0..1_000 {
            make_room(&mut map, 100);
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
        let mut map: HashMap<u32, ()> = (0..10_000).map(|k| (k, ())).collect();
        map.retain(|k, _| *k < 10);
        shrink_sparse(&mut map);
        assert!(map.capacity() <= 4 * SHRINK_MIN, "{}", map.capacity());
        assert_eq!(map.len(), 10);
    }
}
