//! A queue with a bounded share per owner, drained round-robin across owners.
//!
//! Work that many tenants feed into one background task (plugin storage
//! writes, alerts and suspensions) goes through a [`FairQueue`]: each owner
//! (a tenant, or the provider) may have at most `share` items waiting, and a
//! full share refuses that owner's next item at once while every other owner's
//! items still go in. The consumer takes a few items per owner per round, so
//! an owner with a long backlog delays another owner's item by at most one
//! round.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use parking_lot::Mutex;
use tokio::sync::Notify;

struct Inner<K, T> {
    queues: HashMap<K, VecDeque<T>>,
    /// Owners with items waiting, in turn order; each appears once.
    ring: VecDeque<K>,
}

/// Per-owner bounded queues drained in turn.
pub(crate) struct FairQueue<K, T> {
    inner: Mutex<Inner<K, T>>,
    ready: Notify,
    share: usize,
}

impl<K: Hash + Eq + Clone, T> FairQueue<K, T> {
    /// A queue holding at most `share` waiting items per owner.
    pub(crate) fn new(share: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                queues: HashMap::new(),
                ring: VecDeque::new(),
            }),
            ready: Notify::new(),
            share: share.max(1),
        }
    }

    /// Queues `item` for `owner`; gives it back when the owner's share is full.
    pub(crate) fn push(&self, owner: K, item: T) -> Result<(), T> {
        {
            let mut inner = self.inner.lock();
            let Inner { queues, ring } = &mut *inner;
            let queue = queues.entry(owner.clone()).or_default();
            if queue.len() >= self.share {
                return Err(item);
            }
            if queue.is_empty() {
                ring.push_back(owner);
            }
            queue.push_back(item);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Takes up to `per_owner` items of each owner in turn, at most `max` in
    /// all, oldest first within an owner. Owners left with items go to the
    /// back of the turn order.
    pub(crate) fn take(&self, per_owner: usize, max: usize) -> Vec<(K, T)> {
        let mut out = Vec::new();
        let mut inner = self.inner.lock();
        let Inner { queues, ring } = &mut *inner;
        let mut turns = ring.len();
        while turns > 0 && out.len() < max {
            turns -= 1;
            let Some(owner) = ring.pop_front() else {
                break;
            };
            let Some(queue) = queues.get_mut(&owner) else {
                continue;
            };
            for _ in 0..per_owner.max(1) {
                if out.len() >= max {
                    break;
                }
                match queue.pop_front() {
                    Some(item) => out.push((owner.clone(), item)),
                    None => break,
                }
            }
            if queue.is_empty() {
                queues.remove(&owner);
            } else {
                ring.push_back(owner);
            }
        }
        out
    }

    /// Waits until something was pushed since the last wake-up.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Items waiting for `owner`.
    #[cfg(test)]
    pub(crate) fn waiting(&self, owner: &K) -> usize {
        self.inner.lock().queues.get(owner).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_share_refuses_only_its_owner() {
        let q = FairQueue::new(2);
        assert!(q.push("a", 1).is_ok());
        assert!(q.push("a", 2).is_ok());
        assert_eq!(q.push("a", 3), Err(3));
        assert!(q.push("b", 10).is_ok());
        assert_eq!(q.waiting(&"a"), 2);
        assert_eq!(q.waiting(&"b"), 1);
    }

    #[test]
    fn owners_take_turns() {
        let q = FairQueue::new(100);
        for i in 0..10 {
            q.push("flood", i).unwrap();
        }
        q.push("quiet", 100).unwrap();
        // The quiet owner's item comes in the first round despite the backlog.
        let first = q.take(2, 100);
        assert_eq!(first, vec![("flood", 0), ("flood", 1), ("quiet", 100)]);
        let second = q.take(2, 3);
        assert_eq!(second, vec![("flood", 2), ("flood", 3)]);
        // Draining frees the share again.
        let rest = q.take(100, 100);
        assert_eq!(rest.len(), 6);
        assert_eq!(q.waiting(&"flood"), 0);
        assert!(q.take(1, 1).is_empty());
    }

    #[test]
    fn max_bounds_a_round() {
        let q = FairQueue::new(10);
        for owner in 0..5 {
            q.push(owner, owner).unwrap();
            q.push(owner, owner).unwrap();
        }
        assert_eq!(q.take(2, 3).len(), 3);
        assert_eq!(q.take(2, 100).len(), 7);
    }
}
