//! Per-tenant limits that hold across several PBX nodes: calls in progress,
//! calls per second and the daily spend cap are counted in Redis (or Valkey),
//! shared by every node, as `[cluster] redis` configures.
//!
//! # How a call is counted
//! [`SharedCounters`] wraps the node's own [`Usage`] (which keeps what only
//! this node needs: per-extension counts, class windows, pattern data) and
//! adds one Redis script per new call that, atomically in Redis,
//! - sums the tenant's calls in progress over every node (hash
//!   `pbx:calls:{tenant}`, one field per node) and refuses at the limit,
//! - counts the call in this second (`pbx:cps:{tenant}:{second}`, expiring)
//!   and refuses past the calls-per-second limit,
//! - refuses once the day's spend (`pbx:spend:{tenant}:{day}`) reached the cap,
//! - and only then counts the call under this node's field.
//!
//! Because the check and the count are one script, a burst spread over any
//! number of nodes cannot overshoot a limit at all while Redis answers.
//!
//! The script runs on the plugin worker threads that decide calls (never on
//! the async threads), with a 250 ms timeout. Giving a call back (its slot
//! dropped, on any thread) and adding a finished call's cost are queued to a
//! background thread, which also keeps this node's heartbeat.
//!
//! # Nodes that die
//! Every node refreshes `pbx:node:{id}` (expiring after 3 s) each second and
//! is listed in `pbx:nodes`; the tenants it counted calls for are in
//! `pbx:node-tenants:{id}`. Each node's heartbeat also looks for listed nodes
//! whose key expired and removes their fields, so a dead node's calls stop
//! counting within about 4 s. A node starting clears what an earlier run
//! under its id left.
//!
//! # When Redis does not answer
//! Calls are then admitted by this node's own counts against its share of
//! each limit: the limit divided by the nodes alive at the last heartbeat
//! (at least 1). The total stays within the limit unless nodes join during
//! the outage.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pbx_core::decision::{CallSlot, Counters};
use pbx_guard::{CallStart, Denial, DestinationClass, Usage};
use store::TenantId;

/// How long one Redis exchange may take on the call path.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Heartbeat period, and how long a silent node counts as alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
const NODE_TTL_MS: u64 = 3_000;
const DAY_MS: i64 = 86_400_000;

/// The admission script. KEYS: calls hash, cps key, spend key, node-tenants
/// set. ARGV: node, max concurrent, max per second, daily cap (-1: none).
/// Returns the tenant's calls in progress after counting, or -1 (concurrent),
/// -2 (per second), -3 (spend).
const ADMIT: &str = r#"
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
local max_calls = tonumber(ARGV[2])
if max_calls >= 0 and total >= max_calls then return -1 end
local cap = tonumber(ARGV[4])
if cap >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= cap then return -3 end
local cps = redis.call('INCR', KEYS[2])
if cps == 1 then redis.call('PEXPIRE', KEYS[2], 2000) end
local max_cps = tonumber(ARGV[3])
if max_cps >= 0 and cps > max_cps then return -2 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[4], KEYS[1])
return total + 1
"#;

/// Gives one call back, never below zero.
const RELEASE: &str = r#"
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n <= 1 then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
return 0
"#;

fn calls_key(tenant: TenantId) -> String {
    format!("pbx:calls:{}", tenant.0)
}

fn node_tenants_key(node: &str) -> String {
    format!("pbx:node-tenants:{node}")
}

/// Work for the background thread.
enum Job {
    Release(TenantId),
    Spend(TenantId, i64, u64),
}

/// Counters shared through Redis; see the module documentation.
pub struct SharedCounters {
    local: Arc<Usage>,
    node: String,
    client: redis::Client,
    /// Connections of the call path (one per worker at most).
    idle: Mutex<Vec<redis::Connection>>,
    jobs: mpsc::Sender<Job>,
    /// Nodes alive at the last heartbeat (for the share when Redis is down).
    nodes: Arc<std::sync::atomic::AtomicU32>,
    /// When Redis last failed on the call path (warnings are rate-limited).
    last_warning: Mutex<Option<Instant>>,
    /// Set when these counters are dropped: the background thread stops (and
    /// so does the heartbeat).
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

impl SharedCounters {
    /// Counters of node `node` over the Redis at `url` (`redis://…` or
    /// `unix:///path`). Clears what an earlier run under the same id left
    /// and starts the heartbeat.
    pub fn start(url: &str, node: &str, local: Arc<Usage>) -> anyhow::Result<Arc<SharedCounters>> {
        anyhow::ensure!(
            !node.is_empty() && node.len() <= 64 && node.bytes().all(|b| b.is_ascii_graphic()),
            "cluster node id {node:?}: 1 to 64 printable characters"
        );
        let client = redis::Client::open(url)?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        forget_node(&mut conn, node)?;
        drop(conn);
        let (jobs, pending) = mpsc::channel();
        let nodes = Arc::new(std::sync::atomic::AtomicU32::new(1));
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counters = Arc::new(SharedCounters {
            local,
            node: node.to_string(),
            client: client.clone(),
            idle: Mutex::new(Vec::new()),
            jobs,
            nodes: nodes.clone(),
            last_warning: Mutex::new(None),
            stopped: stopped.clone(),
        });
        let node = node.to_string();
        std::thread::Builder::new()
            .name("cluster-counters".into())
            .spawn(move || background(client, node, pending, nodes, stopped))?;
        Ok(counters)
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let mut conn = match self.idle.lock().pop() {
            Some(c) => c,
            None => {
                let c = self.client.get_connection_with_timeout(TIMEOUT)?;
                c.set_read_timeout(Some(TIMEOUT))?;
                c.set_write_timeout(Some(TIMEOUT))?;
                c
            }
        };
        let result = f(&mut conn);
        if result.is_ok() {
            let mut idle = self.idle.lock();
            if idle.len() < 16 {
                idle.push(conn);
            }
        }
        result
    }

    fn warn(&self, e: &redis::RedisError) {
        let mut last = self.last_warning.lock();
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(error = %e, "cluster counters unreachable; admitting by this node's share");
        }
    }

    /// The admission of one call in Redis: Ok when counted there.
    fn admit_shared(&self, call: &CallStart<'_>, limits: &pbx_guard::Limits) -> Result<(), Denial> {
        let opt = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let second = call.unix_ms.div_euclid(1000);
        let day = call.unix_ms.div_euclid(DAY_MS);
        let answer = self.with_conn(|conn| {
            redis::Script::new(ADMIT)
                .key(calls_key(call.tenant))
                .key(format!("pbx:cps:{}:{second}", call.tenant.0))
                .key(format!("pbx:spend:{}:{day}", call.tenant.0))
                .key(node_tenants_key(&self.node))
                .arg(&self.node)
                .arg(opt(limits.max_concurrent_tenant.map(u64::from)))
                .arg(opt(limits.max_calls_per_second.map(u64::from)))
                .arg(opt(limits.daily_cap_cents))
                .invoke::<i64>(conn)
        });
        match answer {
            Ok(n) if n > 0 => Ok(()),
            Ok(-1) => Err(Denial::TenantConcurrent {
                limit: limits.max_concurrent_tenant.unwrap_or(0),
            }),
            Ok(-2) => Err(Denial::CallsPerSecond {
                limit: limits.max_calls_per_second.unwrap_or(0),
            }),
            Ok(_) => Err(Denial::SpendCap {
                spent: limits.daily_cap_cents.unwrap_or(0),
                cap: limits.daily_cap_cents.unwrap_or(0),
            }),
            Err(e) => {
                self.warn(&e);
                // This node's share of the limit, by its own count (the
                // local guard already counts this call).
                let nodes = self.nodes.load(std::sync::atomic::Ordering::Relaxed).max(1);
                match limits.max_concurrent_tenant {
                    Some(limit) if self.local.concurrent(call.tenant) > (limit / nodes).max(1) => {
                        Err(Denial::TenantConcurrent { limit })
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Calls in progress for the tenant over every node (this node's count
    /// when Redis does not answer).
    pub fn cluster_concurrent(&self, tenant: TenantId) -> u32 {
        let sum = self.with_conn(|conn| {
            redis::cmd("HVALS")
                .arg(calls_key(tenant))
                .query::<Vec<u32>>(conn)
        });
        match sum {
            Ok(values) => values.into_iter().sum(),
            Err(_) => self.local.concurrent(tenant),
        }
    }
}

/// A call's hold on the shared count: dropping it gives the call back.
struct SharedSlot {
    tenant: TenantId,
    jobs: mpsc::Sender<Job>,
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        let _ = self.jobs.send(Job::Release(self.tenant));
    }
}

impl Counters for SharedCounters {
    fn start_call(&self, call: &CallStart<'_>) -> Result<CallSlot, Denial> {
        let local = self.local.start_call(call)?;
        let limits = self.local.limits(call.tenant);
        self.admit_shared(call, &limits)?;
        let shared = SharedSlot {
            tenant: call.tenant,
            jobs: self.jobs.clone(),
        };
        Ok(Box::new((local, shared)))
    }

    fn concurrent(&self, tenant: TenantId) -> u32 {
        self.cluster_concurrent(tenant)
    }

    fn concurrent_extension(&self, tenant: TenantId, extension: &str) -> u32 {
        self.local.concurrent_extension(tenant, extension)
    }

    fn calls_in_window(
        &self,
        tenant: TenantId,
        extension: Option<&str>,
        class: Option<DestinationClass>,
        window: Duration,
        now: Instant,
    ) -> u32 {
        self.local
            .calls_in_window(tenant, extension, class, window, now)
    }

    fn charge(
        &self,
        tenant: TenantId,
        class: DestinationClass,
        talk: Duration,
        unix_ms: i64,
    ) -> Result<u64, Denial> {
        let cents = self.local.cost_cents(class, talk);
        let _ = self.jobs.send(Job::Spend(tenant, unix_ms, cents));
        self.local.charge(tenant, class, talk, unix_ms)
    }
}

/// Removes every count node `node` holds, and the node from the list.
fn forget_node(conn: &mut redis::Connection, node: &str) -> redis::RedisResult<()> {
    let set = node_tenants_key(node);
    let keys: Vec<String> = redis::cmd("SMEMBERS").arg(&set).query(conn)?;
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("HDEL").arg(key).arg(node).ignore();
    }
    pipe.cmd("DEL").arg(&set).ignore();
    pipe.cmd("SREM").arg("pbx:nodes").arg(node).ignore();
    pipe.query::<()>(conn)
}

/// The background thread: releases, spend, heartbeat and the sweep of dead
/// nodes. Work that failed while Redis was away is kept (releases as counts
/// per tenant, spend as sums) and retried at the next heartbeat.
fn background(
    client: redis::Client,
    node: String,
    jobs: mpsc::Receiver<Job>,
    nodes: Arc<std::sync::atomic::AtomicU32>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut releases: HashMap<TenantId, u32> = HashMap::new();
    let mut spend: HashMap<(TenantId, i64), u64> = HashMap::new();
    let mut conn: Option<redis::Connection> = None;
    let mut next_beat = Instant::now();
    loop {
        if stopped.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        match jobs.recv_timeout(next_beat.saturating_duration_since(Instant::now())) {
            Ok(Job::Release(t)) => *releases.entry(t).or_default() += 1,
            Ok(Job::Spend(t, unix_ms, cents)) => {
                *spend.entry((t, unix_ms.div_euclid(DAY_MS))).or_default() += cents;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Whatever arrived meanwhile goes in the same round.
        while let Ok(job) = jobs.try_recv() {
            match job {
                Job::Release(t) => *releases.entry(t).or_default() += 1,
                Job::Spend(t, unix_ms, cents) => {
                    *spend.entry((t, unix_ms.div_euclid(DAY_MS))).or_default() += cents;
                }
            }
        }
        let beat = Instant::now() >= next_beat;
        if beat {
            next_beat = Instant::now() + HEARTBEAT;
        }
        if conn.is_none() {
            conn = client.get_connection_with_timeout(TIMEOUT).ok();
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let done = flush(c, &node, &mut releases, &mut spend).and_then(|()| {
            if beat {
                heartbeat(c, &node, &nodes)
            } else {
                Ok(())
            }
        });
        if let Err(e) = done {
            tracing::debug!(error = %e, "cluster counters: Redis exchange failed; retrying");
            conn = None;
        }
    }
}

fn flush(
    conn: &mut redis::Connection,
    node: &str,
    releases: &mut HashMap<TenantId, u32>,
    spend: &mut HashMap<(TenantId, i64), u64>,
) -> redis::RedisResult<()> {
    let release = redis::Script::new(RELEASE);
    let tenants: Vec<TenantId> = releases.keys().copied().collect();
    for tenant in tenants {
        while let Some(n) = releases.get_mut(&tenant) {
            release
                .key(calls_key(tenant))
                .arg(node)
                .invoke::<i64>(conn)?;
            *n -= 1;
            if *n == 0 {
                releases.remove(&tenant);
            }
        }
    }
    let pending: Vec<_> = spend.drain().collect();
    for (i, ((tenant, day), cents)) in pending.iter().enumerate() {
        let key = format!("pbx:spend:{}:{day}", tenant.0);
        let sent = redis::pipe()
            .cmd("INCRBY")
            .arg(&key)
            .arg(*cents)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(2 * DAY_MS)
            .ignore()
            .query::<()>(conn);
        if let Err(e) = sent {
            spend.extend(pending[i..].iter().copied());
            return Err(e);
        }
    }
    Ok(())
}

fn heartbeat(
    conn: &mut redis::Connection,
    node: &str,
    nodes: &std::sync::atomic::AtomicU32,
) -> redis::RedisResult<()> {
    redis::pipe()
        .cmd("SET")
        .arg(format!("pbx:node:{node}"))
        .arg(1)
        .arg("PX")
        .arg(NODE_TTL_MS)
        .ignore()
        .cmd("SADD")
        .arg("pbx:nodes")
        .arg(node)
        .ignore()
        .query::<()>(conn)?;
    let listed: Vec<String> = redis::cmd("SMEMBERS").arg("pbx:nodes").query(conn)?;
    let mut alive = 0u32;
    for other in listed {
        let here: bool = redis::cmd("EXISTS")
            .arg(format!("pbx:node:{other}"))
            .query(conn)?;
        if here {
            alive += 1;
        } else {
            tracing::warn!(node = %other, "cluster node silent; its calls no longer count");
            forget_node(conn, &other)?;
        }
    }
    nodes.store(alive.max(1), std::sync::atomic::Ordering::Relaxed);
    Ok(())
}
