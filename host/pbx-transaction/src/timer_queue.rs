//! A deadline queue for the owner of many transactions.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

use crate::table::{SHRINK_MIN, Table};

/// A min-heap of `(deadline, key)` with lazy deletion, so the owner of thousands of
/// transactions finds the next timer in `O(1)` and re-schedules in `O(log n)`.
///
/// Each key has at most one live deadline: scheduling a key again replaces the earlier
/// deadline. Replaced and cancelled entries stay in the heap until they reach the top
/// (or until stale entries outnumber live ones, when the heap is rebuilt), and are
/// recognised by a generation number kept per key.
///
/// A typical driver after touching a transaction re-schedules it with
/// `queue.schedule(key, deadline)` (or cancels it when `poll_timeout` is `None`), sleeps
/// until [`TimerQueue::next_deadline`], and then calls `handle_timeout` on every key
/// from [`TimerQueue::pop_due`].
#[derive(Debug, Clone)]
pub struct TimerQueue<K> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
    live: Table<K, Slot>,
    generation: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    at: Instant,
    generation: u64,
}

#[derive(Debug, Clone)]
struct Entry<K> {
    at: Instant,
    generation: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Entry<K> {}

impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Entry<K> {
    /// By deadline, then by scheduling order, so equal deadlines pop first-in first-out.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.generation).cmp(&(other.at, other.generation))
    }
}

/// Below this many heap entries the queue never bothers to compact.
const COMPACT_MIN: usize = 64;

fn is_live<K: Eq + Hash>(live: &HashMap<K, Slot>, entry: &Entry<K>) -> bool {
    live.get(&entry.key)
        .is_some_and(|slot| slot.generation == entry.generation)
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            live: Table::new(),
            generation: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> TimerQueue<K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s deadline to `at`, replacing any earlier one.
    pub fn schedule(&mut self, key: K, at: Instant) {
        if self.live.get(&key).is_some_and(|slot| slot.at == at) {
            // Already due then: an owner that re-schedules after every event
            // leaves no stale entry behind for an unchanged deadline.
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        // Keys come and go by the thousand a second: keep the table sized to
        // the keys it holds, not doubled for the slots removals left behind.
        self.live.make_room(0);
        self.live.insert(key.clone(), Slot { at, generation });
        self.heap.push(Reverse(Entry {
            at,
            generation,
            key,
        }));
        self.compact_if_sparse();
    }

    /// Removes `key`'s deadline; returns whether it had one.
    pub fn cancel(&mut self, key: &K) -> bool {
        let had = self.live.remove(key).is_some();
        self.shrink_if_sparse();
        had
    }

    /// `key`'s current deadline.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.live.get(key).map(|slot| slot.at)
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Entries in the heap, the stale ones (replaced or cancelled, not yet
    /// dropped) included.
    pub fn entries(&self) -> usize {
        self.heap.len()
    }

    /// Whether no key has a deadline.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The earliest live deadline (stale entries on top are dropped on the way).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale_top();
        self.heap.peek().map(|Reverse(entry)| entry.at)
    }

    /// Removes and yields, earliest first, every key whose deadline is at or before
    /// `now`. Keys not taken because the iterator was dropped early stay due.
    pub fn pop_due(&mut self, now: Instant) -> impl Iterator<Item = K> {
        std::iter::from_fn(move || self.pop_one(now))
    }

    fn pop_one(&mut self, now: Instant) -> Option<K> {
        self.drop_stale_top();
        if self.heap.peek()?.0.at > now {
            return None;
        }
        let Reverse(entry) = self.heap.pop()?;
        self.live.remove(&entry.key);
        self.shrink_if_sparse();
        Some(entry.key)
    }

    /// Gives back the room a burst of deadlines needed once under a quarter
    /// of it is used, keeping twice what is: memory follows the keys in
    /// flight rather than their peak, and as a table must lose half its
    /// entries between two shrinks, the cost is constant per removal.
    fn shrink_if_sparse(&mut self) {
        self.live.shrink_sparse();
        if self.heap.capacity() > SHRINK_MIN && self.heap.len() < self.heap.capacity() / 4 {
            self.heap.shrink_to(self.heap.len() * 2);
        }
    }

    fn drop_stale_top(&mut self) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if is_live(&self.live, top) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Rebuilds the heap from live entries when stale ones make up a third of
    /// it, so memory stays proportional to the number of keys however often
    /// they move (a rebuild is linear, and at least half as many pushes as
    /// there are live keys come between two).
    fn compact_if_sparse(&mut self) {
        let live = self.live.len();
        if self.heap.len() > COMPACT_MIN && self.heap.len() > live.saturating_add(live / 2) {
            let live = &self.live;
            self.heap.retain(|Reverse(entry)| is_live(live, entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pops_in_deadline_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.schedule("c", t0 + ms(300));
        q.schedule("a", t0 + ms(100));
        q.schedule("b", t0 + ms(200));
        q.schedule("d", t0 + ms(400));
        assert_eq!(q.len(), 4);
        assert_eq!(q.next_deadline(), Some(t0 + ms(100)));
        assert_eq!(q.pop_due(t0 + ms(300)).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(q.next_deadline(), Some(t0 + ms(400)));
        assert_eq!(q.pop_due(t0 + ms(399)).count(), 0);
        assert_eq!(q.pop_due(t0 + ms(400)).collect::<Vec<_>>(), ["d"]);
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn equal_deadlines_pop_in_scheduling_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        for k in [3, 1, 2] {
            q.schedule(k, t0);
        }
        assert_eq!(q.pop_due(t0).collect::<Vec<_>>(), [3, 1, 2]);
    }

    #[test]
    fn rescheduling_replaces_the_deadline() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.schedule("a", t0 + ms(100));
        q.schedule("b", t0 + ms(200));
        q.schedule("a", t0 + ms(300));
        assert_eq!(q.len(), 2);
        // The replaced deadline stays in the heap, stale, until it surfaces.
        assert_eq!(q.entries(), 3);
        assert_eq!(q.deadline(&"a"), Some(t0 + ms(300)));
        assert_eq!(q.next_deadline(), Some(t0 + ms(200)));
        assert_eq!(q.pop_due(t0 + ms(250)).collect::<Vec<_>>(), ["b"]);
        // Moving a deadline earlier works too.
        q.schedule("a", t0 + ms(50));
        assert_eq!(q.pop_due(t0 + ms(60)).collect::<Vec<_>>(), ["a"]);
        assert!(q.is_empty());
        assert_eq!(q.pop_due(t0 + ms(1_000)).count(), 0);
    }

    #[test]
    fn cancelled_keys_never_pop() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.schedule(1, t0 + ms(10));
        q.schedule(2, t0 + ms(20));
        assert!(q.cancel(&1));
        assert!(!q.cancel(&1));
        assert_eq!(q.deadline(&1), None);
        assert_eq!(q.next_deadline(), Some(t0 + ms(20)));
        assert_eq!(q.pop_due(t0 + ms(100)).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_dropped_iterator_leaves_the_rest_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.schedule(1, t0);
        q.schedule(2, t0);
        assert_eq!(q.pop_due(t0).next(), Some(1));
        assert_eq!(q.pop_due(t0).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn heavy_rescheduling_keeps_the_heap_small() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        for round in 0..10_000u64 {
            q.schedule(round % 10, t0 + ms(round));
        }
        assert_eq!(q.len(), 10);
        assert!(q.heap.len() <= COMPACT_MIN + 1, "heap has {}", q.heap.len());
        let popped: Vec<_> = q.pop_due(t0 + ms(20_000)).collect();
        assert_eq!(popped, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn an_unchanged_deadline_adds_no_entry() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        for _ in 0..10 {
            q.schedule("a", t0 + ms(5));
        }
        assert_eq!(q.heap.len(), 1);
        q.schedule("a", t0 + ms(6));
        assert_eq!(q.heap.len(), 2, "a moved deadline is a new entry");
        assert_eq!(q.pop_due(t0 + ms(5)).count(), 0);
        assert_eq!(q.pop_due(t0 + ms(6)).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn room_is_given_back_after_a_burst() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        for k in 0..10_000u64 {
            q.schedule(k, t0 + ms(k));
        }
        assert!(q.live.capacity() >= 10_000);
        assert_eq!(q.pop_due(t0 + ms(9_989)).count(), 9_990);
        assert_eq!(q.len(), 10);
        assert!(q.live.capacity() <= 4 * SHRINK_MIN, "{}", q.live.capacity());
        assert!(q.heap.capacity() <= 4 * SHRINK_MIN, "{}", q.heap.capacity());
        // Cancelling gives room back too, and what is left still pops.
        for k in 9_990..9_995 {
            assert!(q.cancel(&k));
        }
        assert_eq!(
            q.pop_due(t0 + ms(20_000)).collect::<Vec<_>>(),
            (9_995..10_000).collect::<Vec<_>>()
        );
    }
}
