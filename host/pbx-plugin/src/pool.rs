//! Fair shares of the threads that run plugins.
//!
//! [`FairQueue`] holds one bounded queue per tenant and hands jobs to worker
//! threads round-robin across tenants, never letting one tenant run more than
//! [`Shares::running_per_tenant`] jobs at once. A tenant that floods it fills
//! only its own queue and gets [`Refused::TenantShare`]; another tenant's job
//! waits at most for one worker to finish its current job (each is bounded by
//! the plugin deadline), however much the first tenant has queued.
//!
//! A tenant's queue is bounded by time first: a job is refused once the
//! tenant's oldest waiting job has waited [`Shares::max_wait`], because then
//! its share is not keeping up and a new call would wait longer still. The
//! count bounds ([`Shares::queued_per_tenant`], [`Shares::queued_total`]) only
//! bound memory; a short stall of the workers (a page-in, a busy neighbour on
//! the machine) is absorbed instead of failing calls that would have been
//! served a moment later.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How the workers are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// Jobs of one tenant running at the same time.
    pub running_per_tenant: usize,
    /// How long a tenant's oldest waiting job may have waited for a new one
    /// to be queued behind it.
    pub max_wait: Duration,
    /// Jobs of one tenant waiting.
    pub queued_per_tenant: usize,
    /// Jobs of all tenants waiting.
    pub queued_total: usize,
}

impl Shares {
    /// Shares for `workers` threads: a tenant may run on half of them (at
    /// least one) and queue jobs while its oldest has waited under
    /// `max_wait`, 1,024 at most; 8,192 jobs wait in all.
    pub fn for_workers(workers: usize, max_wait: Duration) -> Self {
        Self {
            running_per_tenant: (workers / 2).max(1),
            max_wait,
            queued_per_tenant: 1024,
            queued_total: 8192,
        }
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The tenant's own queue is full: its share is used up.
    #[error("the tenant's share of plugin workers is full")]
    TenantShare,
    /// All queues together are full.
    #[error("the plugin queue is full")]
    Full,
    /// The queue was closed.
    #[error("the plugin workers have stopped")]
    Closed,
}

/// Per-tenant queues served round-robin (see the module docs).
pub struct FairQueue<K, J> {
    shares: Shares,
    state: Mutex<State<K, J>>,
    ready: Condvar,
}

struct State<K, J> {
    tenants: HashMap<K, Lane<J>>,
    /// Tenants with a job waiting and a free running slot, each once.
    turn: VecDeque<K>,
    queued: usize,
    closed: bool,
}

struct Lane<J> {
    /// Waiting jobs with the time each was queued.
    jobs: VecDeque<(Instant, J)>,
    running: usize,
    in_turn: bool,
}

impl<K: Clone + Eq + Hash, J> FairQueue<K, J> {
    /// An empty queue with these shares.
    pub fn new(shares: Shares) -> Self {
        Self {
            shares,
            state: Mutex::new(State {
                tenants: HashMap::new(),
                turn: VecDeque::new(),
                queued: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Queues `job` for `tenant`, or says whose share is full.
    pub fn push(&self, tenant: K, job: J) -> Result<(), Refused> {
        self.push_at(Instant::now(), tenant, job)
    }

    /// [`FairQueue::push`] at `now`.
    pub fn push_at(&self, now: Instant, tenant: K, job: J) -> Result<(), Refused> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        let lane = state.tenants.entry(tenant.clone()).or_insert_with(|| Lane {
            jobs: VecDeque::new(),
            running: 0,
            in_turn: false,
        });
        let behind = lane.jobs.front().is_some_and(|(since, _)| {
            now.saturating_duration_since(*since) >= self.shares.max_wait
        });
        if behind || lane.jobs.len() >= self.shares.queued_per_tenant {
            return Err(Refused::TenantShare);
        }
        if state.queued >= self.shares.queued_total {
            let lane = &state.tenants[&tenant];
            if lane.jobs.is_empty() && lane.running == 0 {
                state.tenants.remove(&tenant);
            }
            return Err(Refused::Full);
        }
        let lane = state.tenants.get_mut(&tenant).expect("inserted above");
        lane.jobs.push_back((now, job));
        let wake = !lane.in_turn && lane.running < self.shares.running_per_tenant;
        if wake {
            lane.in_turn = true;
            state.turn.push_back(tenant);
        }
        state.queued += 1;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Waits for the next job in round-robin order; `None` once closed. The
    /// caller runs it and then calls [`FairQueue::done`] with the tenant.
    pub fn pop(&self) -> Option<(K, J)> {
        let mut state = self.state.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(tenant) = state.turn.pop_front() {
                let running_cap = self.shares.running_per_tenant;
                let lane = state.tenants.get_mut(&tenant).expect("a turn has a lane");
                lane.in_turn = false;
                let Some((_, job)) = lane.jobs.pop_front() else {
                    continue;
                };
                lane.running += 1;
                let again = !lane.jobs.is_empty() && lane.running < running_cap;
                if again {
                    lane.in_turn = true;
                }
                state.queued -= 1;
                if again {
                    state.turn.push_back(tenant.clone());
                }
                return Some((tenant, job));
            }
            self.ready.wait(&mut state);
        }
    }

    /// A job popped for `tenant` has finished.
    pub fn done(&self, tenant: &K) {
        let mut state = self.state.lock();
        let Some(lane) = state.tenants.get_mut(tenant) else {
            return;
        };
        lane.running = lane.running.saturating_sub(1);
        if lane.jobs.is_empty() && lane.running == 0 {
            state.tenants.remove(tenant);
            return;
        }
        let wake = !lane.in_turn && !lane.jobs.is_empty();
        if wake {
            lane.in_turn = true;
            state.turn.push_back(tenant.clone());
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Stops handing out jobs; waiting workers get `None`.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }

    /// Jobs waiting and running for `tenant`.
    pub fn load_of(&self, tenant: &K) -> (usize, usize) {
        self.state
            .lock()
            .tenants
            .get(tenant)
            .map_or((0, 0), |l| (l.jobs.len(), l.running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(running: usize, queued: usize, total: usize) -> Shares {
        Shares {
            running_per_tenant: running,
            max_wait: Duration::from_secs(3600),
            queued_per_tenant: queued,
            queued_total: total,
        }
    }

    #[test]
    fn a_share_whose_oldest_job_waited_its_bound_refuses_until_it_catches_up() {
        let max_wait = Duration::from_secs(2);
        let q = FairQueue::new(Shares {
            max_wait,
            ..shares(1, 100, 1000)
        });
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        q.push_at(t0, "a", 0).unwrap();
        // A stall shorter than the bound loses nothing, whatever the count.
        for i in 1..50 {
            q.push_at(ms(1_999), "a", i).unwrap();
        }
        assert_eq!(q.push_at(t0 + max_wait, "a", 50), Err(Refused::TenantShare));
        // Another tenant is not behind.
        assert_eq!(q.push_at(t0 + max_wait, "b", 0), Ok(()));
        // Once a's oldest job runs, the next has waited 1 ms at 2,000 ms.
        assert_eq!(q.pop(), Some(("a", 0)));
        assert_eq!(q.push_at(ms(2_000), "a", 50), Ok(()));
        assert_eq!(q.load_of(&"a"), (50, 1));
    }

    #[test]
    fn a_flooding_tenant_fills_only_its_own_share() {
        let q = FairQueue::new(shares(1, 4, 100));
        for i in 0..4 {
            q.push("a", i).unwrap();
        }
        assert_eq!(q.push("a", 4), Err(Refused::TenantShare));
        assert_eq!(q.push("b", 0), Ok(()));
        assert_eq!(q.load_of(&"a"), (4, 0));
    }

    #[test]
    fn tenants_take_turns_and_running_is_capped() {
        let q = FairQueue::new(shares(1, 10, 100));
        for i in 0..3 {
            q.push("a", i).unwrap();
        }
        q.push("b", 10).unwrap();
        // a's first job, then b's although a has more waiting.
        assert_eq!(q.pop(), Some(("a", 0)));
        assert_eq!(q.pop(), Some(("b", 10)));
        q.done(&"b");
        // a runs one job already: b's next job goes first.
        q.push("b", 11).unwrap();
        assert_eq!(q.pop(), Some(("b", 11)));
        assert_eq!(q.load_of(&"a"), (2, 1));
        q.done(&"a");
        assert_eq!(q.pop(), Some(("a", 1)));
        q.done(&"b");
        q.done(&"a");
        assert_eq!(q.pop(), Some(("a", 2)));
        q.done(&"a");
        assert_eq!(q.load_of(&"a"), (0, 0));
        assert_eq!(q.load_of(&"b"), (0, 0));
    }

    #[test]
    fn the_total_bound_holds_and_close_wakes_workers() {
        let q = std::sync::Arc::new(FairQueue::new(shares(1, 10, 2)));
        q.push("a", 1).unwrap();
        q.push("b", 2).unwrap();
        assert_eq!(q.push("c", 3), Err(Refused::Full));
        assert_eq!(q.load_of(&"c"), (0, 0));
        assert_eq!(q.pop(), Some(("a", 1)));
        assert_eq!(q.pop(), Some(("b", 2)));
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || q.pop())
        };
        q.close();
        assert_eq!(worker.join().unwrap(), None);
        assert_eq!(q.push("a", 4), Err(Refused::Closed));
    }
}
