//! Per-tenant and per-extension usage: concurrent calls, calls in a sliding
//! window by destination class, calls per second and daily spend.
//!
//! [`Usage`] is shared by every call task. [`Usage::start_call`] checks all
//! limits and counts the call under one lock; the [`CallGuard`] it returns gives
//! the concurrent-call slots back when dropped, on any thread, in any order.
//!
//! The same concept as `pbx-plugin`'s `caps/usage.rs` at another layer: this one
//! counts, that one lets a plugin read the counts.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use model::{TenantId, TenantLimits, limits};
use parking_lot::Mutex;

use crate::DestinationClass;

/// Window entries kept per extension (counts saturate there).
const MAX_WINDOW_ENTRIES: usize = 4096;
/// Starts kept per tenant for the calls-per-second limit.
const MAX_STARTS_PER_SECOND: usize = 4096;
/// Window entries kept per tenant for tenant-wide counts (they saturate there).
const MAX_TENANT_WINDOW_ENTRIES: usize = 16_384;
const DAY_MS: i64 = 86_400_000;

/// Limits of one tenant (and of each of its extensions). `None` is unlimited.
///
/// The defaults of the concurrent-call, call-rate and spend limits, and how
/// they relate to the shipped policy's limit, are documented once, in
/// `pbx_model::limits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrent_tenant: Option<u32>,
    pub max_concurrent_extension: Option<u32>,
    /// New calls per second for the whole tenant.
    pub max_calls_per_second: Option<u32>,
    /// The sliding window of `per_class_in_window`.
    pub window: Duration,
    /// Calls of a class one extension may start within `window`.
    pub per_class_in_window: Vec<(DestinationClass, u32)>,
    /// Spend per UTC day, cents; calls are refused once it is reached.
    pub daily_cap_cents: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_concurrent_tenant: Some(limits::DEFAULT_MAX_CONCURRENT_TENANT),
            max_concurrent_extension: Some(limits::DEFAULT_MAX_CONCURRENT_EXTENSION),
            max_calls_per_second: Some(limits::DEFAULT_MAX_CALLS_PER_SECOND),
            window: Duration::from_secs(3600),
            per_class_in_window: vec![
                (DestinationClass::International, 20),
                (DestinationClass::PremiumRate, 0),
                (DestinationClass::HighRisk, 0),
            ],
            daily_cap_cents: Some(limits::DEFAULT_DAILY_CAP_CENTS),
        }
    }
}

impl Limits {
    /// These limits with the tenant's own values where it has them (a `None`
    /// in `own` keeps the value here).
    pub fn overridden_by(mut self, own: &TenantLimits) -> Limits {
        self.max_concurrent_tenant = own.max_concurrent.or(self.max_concurrent_tenant);
        self.max_concurrent_extension = own
            .max_concurrent_extension
            .or(self.max_concurrent_extension);
        self.max_calls_per_second = own.max_calls_per_second.or(self.max_calls_per_second);
        self.daily_cap_cents = own.daily_cap_cents.or(self.daily_cap_cents);
        self
    }
}

/// Settings of [`Usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    /// Limits of tenants without their own ([`Usage::set_limits`]).
    pub defaults: Limits,
    /// Price per minute by class, cents; classes not listed are free.
    pub rates_cents_per_minute: Vec<(DestinationClass, u32)>,
    /// Most tenants tracked.
    pub max_tenants: usize,
    /// Most extensions tracked per tenant.
    pub max_extensions_per_tenant: usize,
}

impl Default for UsageConfig {
    fn default() -> UsageConfig {
        UsageConfig {
            defaults: Limits::default(),
            rates_cents_per_minute: vec![
                (DestinationClass::National, 1),
                (DestinationClass::Mobile, 3),
                (DestinationClass::International, 20),
                (DestinationClass::PremiumRate, 200),
                (DestinationClass::HighRisk, 300),
            ],
            max_tenants: 10_000,
            max_extensions_per_tenant: 10_000,
        }
    }
}

/// A new call to check and count.
#[derive(Debug, Clone, Copy)]
pub struct CallStart<'a> {
    pub tenant: TenantId,
    /// The calling extension.
    pub extension: &'a str,
    pub class: DestinationClass,
    pub now: Instant,
    /// Wall-clock time, Unix milliseconds (picks the spend day, UTC).
    pub unix_ms: i64,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("tenant has {limit} concurrent calls")]
    TenantConcurrent { limit: u32 },
    #[error("extension has {limit} concurrent calls")]
    ExtensionConcurrent { limit: u32 },
    #[error("more than {limit} calls per second")]
    CallsPerSecond { limit: u32 },
    #[error("{limit} {} calls in the window already", class.as_str())]
    ClassWindow { class: DestinationClass, limit: u32 },
    #[error("daily spend {spent} of {cap} cents reached")]
    SpendCap { spent: u64, cap: u64 },
    #[error("too many tenants or extensions tracked")]
    TooManyTracked,
}

/// Holds one concurrent-call slot of a tenant and an extension; dropping it
/// gives them back.
#[derive(Debug)]
pub struct CallGuard {
    tenant: Arc<AtomicU32>,
    extension: Arc<AtomicU32>,
    class: DestinationClass,
}

impl CallGuard {
    /// The class the call was admitted as.
    pub fn class(&self) -> DestinationClass {
        self.class
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        release(&self.tenant);
        release(&self.extension);
    }
}

fn release(counter: &AtomicU32) {
    // never below zero, whatever the order of drops
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
}

/// Bits of a [`Starts`] entry that hold the class.
const CLASS_BITS: u32 = 3;

/// The calls started within a usage window, four bytes each: the second of
/// the start (counted from the first call the counters saw) in the high 29
/// bits, the class in the low three. An hour of calls at 1,000 a second is
/// 14 MiB, not the 86 MiB an `Instant` and a class each would take. Counts
/// are to the second.
#[derive(Debug, Default)]
struct Starts {
    entries: VecDeque<u32>,
}

impl Starts {
    fn push(&mut self, second: u32, class: DestinationClass, cap: usize) {
        if self.entries.len() >= cap {
            self.entries.pop_front();
        }
        let second = second.min(u32::MAX >> CLASS_BITS);
        self.entries
            .push_back((second << CLASS_BITS) | class as u32);
    }

    /// Forgets the starts `window` seconds or more before `now`.
    fn expire(&mut self, now: u32, window: u32) {
        while self
            .entries
            .front()
            .is_some_and(|e| now.saturating_sub(e >> CLASS_BITS) >= window)
        {
            self.entries.pop_front();
        }
    }

    /// Starts less than `window` seconds before `now`, of `class` or of any.
    fn count(&self, now: u32, window: u32, class: Option<DestinationClass>) -> usize {
        self.entries
            .iter()
            .filter(|e| {
                now.saturating_sub(**e >> CLASS_BITS) < window
                    && class.is_none_or(|c| **e & ((1 << CLASS_BITS) - 1) == c as u32)
            })
            .count()
    }
}

/// Whole seconds of `window`, rounded up (at least one).
fn window_secs(window: Duration) -> u32 {
    let secs = window.as_secs() + u64::from(window.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

#[derive(Debug, Default)]
struct ExtensionUsage {
    active: Arc<AtomicU32>,
    window: Starts,
    last: Option<Instant>,
}

#[derive(Debug, Default)]
struct TenantUsage {
    active: Arc<AtomicU32>,
    starts: VecDeque<Instant>,
    /// Every call started within the tenant's window, for tenant-wide counts.
    recent: Starts,
    spend_day: i64,
    spend_cents: u64,
    extensions: HashMap<String, ExtensionUsage>,
    last: Option<Instant>,
    limits: Option<Limits>,
}

#[derive(Debug)]
struct Inner {
    config: UsageConfig,
    tenants: HashMap<TenantId, TenantUsage>,
    /// What [`Starts`] counts seconds from: the first call seen.
    epoch: Option<Instant>,
}

impl Inner {
    /// `now` in whole seconds since the epoch (set by the first call).
    fn second(&mut self, now: Instant) -> u32 {
        seconds_since(*self.epoch.get_or_insert(now), now)
    }
}

/// Whole seconds from `epoch` to `now` (0 when `now` is earlier).
fn seconds_since(epoch: Instant, now: Instant) -> u32 {
    u32::try_from(now.saturating_duration_since(epoch).as_secs()).unwrap_or(u32::MAX)
}

/// Usage counters shared between threads; clones share the same counters.
#[derive(Debug, Clone)]
pub struct Usage {
    inner: Arc<Mutex<Inner>>,
}

fn idle(last: Option<Instant>, now: Instant, window: Duration) -> bool {
    last.is_none_or(|l| now.saturating_duration_since(l) >= window)
}

impl Usage {
    pub fn new(config: UsageConfig) -> Usage {
        Usage {
            inner: Arc::new(Mutex::new(Inner {
                config,
                tenants: HashMap::new(),
                epoch: None,
            })),
        }
    }

    /// Gives `tenant` its own limits instead of the defaults.
    pub fn set_limits(&self, tenant: TenantId, limits: Limits) -> Result<(), Denial> {
        let mut inner = self.inner.lock();
        let t = tenant_entry(&mut inner, tenant, None)?;
        t.limits = Some(limits);
        Ok(())
    }

    /// Checks every limit for a new call and, when all pass, counts it.
    pub fn start_call(&self, call: &CallStart<'_>) -> Result<CallGuard, Denial> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let max_ext = inner.config.max_extensions_per_tenant.max(1);
        let defaults = inner.config.defaults.clone();
        let now = call.now;
        let second = inner.second(now);
        let t = tenant_entry(inner, call.tenant, Some(now))?;
        let limits = t.limits.clone().unwrap_or(defaults);

        let day = call.unix_ms.div_euclid(DAY_MS);
        if t.spend_day != day {
            t.spend_day = day;
            t.spend_cents = 0;
        }
        if let Some(cap) = limits.daily_cap_cents
            && t.spend_cents >= cap
        {
            return Err(Denial::SpendCap {
                spent: t.spend_cents,
                cap,
            });
        }
        if let Some(limit) = limits.max_concurrent_tenant
            && t.active.load(Ordering::Acquire) >= limit
        {
            return Err(Denial::TenantConcurrent { limit });
        }
        while t
            .starts
            .front()
            .is_some_and(|s| now.saturating_duration_since(*s) >= Duration::from_secs(1))
        {
            t.starts.pop_front();
        }
        if let Some(limit) = limits.max_calls_per_second
            && t.starts.len() >= limit as usize
        {
            return Err(Denial::CallsPerSecond { limit });
        }

        if !t.extensions.contains_key(call.extension) && t.extensions.len() >= max_ext {
            let window = limits.window;
            t.extensions
                .retain(|_, e| e.active.load(Ordering::Acquire) > 0 || !idle(e.last, now, window));
            if t.extensions.len() >= max_ext {
                return Err(Denial::TooManyTracked);
            }
        }
        let e = t
            .extensions
            .entry(crate::truncate(call.extension, 64))
            .or_default();
        if let Some(limit) = limits.max_concurrent_extension
            && e.active.load(Ordering::Acquire) >= limit
        {
            return Err(Denial::ExtensionConcurrent { limit });
        }
        let window = window_secs(limits.window);
        e.window.expire(second, window);
        if let Some(&(_, limit)) = limits
            .per_class_in_window
            .iter()
            .find(|(c, _)| *c == call.class)
        {
            let used = e.window.count(second, window, Some(call.class));
            if used >= limit as usize {
                return Err(Denial::ClassWindow {
                    class: call.class,
                    limit,
                });
            }
        }

        // every check passed: count the call
        e.window.push(second, call.class, MAX_WINDOW_ENTRIES);
        e.last = Some(now);
        e.active.fetch_add(1, Ordering::AcqRel);
        let extension = Arc::clone(&e.active);
        if t.starts.len() >= MAX_STARTS_PER_SECOND {
            t.starts.pop_front();
        }
        t.starts.push_back(now);
        t.recent.expire(second, window);
        t.recent.push(second, call.class, MAX_TENANT_WINDOW_ENTRIES);
        t.last = Some(now);
        t.active.fetch_add(1, Ordering::AcqRel);
        Ok(CallGuard {
            tenant: Arc::clone(&t.active),
            extension,
            class: call.class,
        })
    }

    /// The limits in force for `tenant`: its own, else the defaults.
    pub fn limits(&self, tenant: TenantId) -> Limits {
        let inner = self.inner.lock();
        inner
            .tenants
            .get(&tenant)
            .and_then(|t| t.limits.clone())
            .unwrap_or_else(|| inner.config.defaults.clone())
    }

    /// Calls in progress for the tenant.
    pub fn concurrent(&self, tenant: TenantId) -> u32 {
        let inner = self.inner.lock();
        inner
            .tenants
            .get(&tenant)
            .map_or(0, |t| t.active.load(Ordering::Acquire))
    }

    /// Calls in progress for one extension.
    pub fn concurrent_extension(&self, tenant: TenantId, extension: &str) -> u32 {
        let inner = self.inner.lock();
        inner
            .tenants
            .get(&tenant)
            .and_then(|t| t.extensions.get(extension))
            .map_or(0, |e| e.active.load(Ordering::Acquire))
    }

    /// Calls started within `window` before `now`: by one extension or by the
    /// whole tenant (`extension: None`), of one class or of any (`class:
    /// None`). Starts are kept for the tenant's usage window ([`Limits::window`],
    /// an hour by default), so a longer `window` counts that much; counts
    /// saturate at the entries kept (4,096 per extension, 16,384 per tenant)
    /// and are to the second.
    pub fn calls_in_window(
        &self,
        tenant: TenantId,
        extension: Option<&str>,
        class: Option<DestinationClass>,
        window: Duration,
        now: Instant,
    ) -> u32 {
        let inner = self.inner.lock();
        // No epoch yet: no call has started, so there is nothing to count.
        let Some(epoch) = inner.epoch else {
            return 0;
        };
        let second = seconds_since(epoch, now);
        let Some(t) = inner.tenants.get(&tenant) else {
            return 0;
        };
        let kept = t.limits.as_ref().unwrap_or(&inner.config.defaults).window;
        let window = window_secs(window.min(kept));
        let n = match extension {
            Some(ext) => t
                .extensions
                .get(ext)
                .map_or(0, |e| e.window.count(second, window, class)),
            None => t.recent.count(second, window, class),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The price of `billed` talk time of `class`, cents, rounded up.
    pub fn cost_cents(&self, class: DestinationClass, billed: Duration) -> u64 {
        let inner = self.inner.lock();
        cost(&inner.config, class, billed)
    }

    /// Adds a finished call's cost to the tenant's spend of the UTC day of
    /// `unix_ms`; returns the day's spend so far.
    pub fn charge(
        &self,
        tenant: TenantId,
        class: DestinationClass,
        billed: Duration,
        unix_ms: i64,
    ) -> Result<u64, Denial> {
        let mut inner = self.inner.lock();
        let cents = cost(&inner.config, class, billed);
        let t = tenant_entry(&mut inner, tenant, None)?;
        let day = unix_ms.div_euclid(DAY_MS);
        if t.spend_day != day {
            t.spend_day = day;
            t.spend_cents = 0;
        }
        t.spend_cents = t.spend_cents.saturating_add(cents);
        Ok(t.spend_cents)
    }

    /// The tenant's spend on the UTC day of `unix_ms`, cents.
    pub fn spend_today(&self, tenant: TenantId, unix_ms: i64) -> u64 {
        let inner = self.inner.lock();
        inner
            .tenants
            .get(&tenant)
            .filter(|t| t.spend_day == unix_ms.div_euclid(DAY_MS))
            .map_or(0, |t| t.spend_cents)
    }

    /// How many tenants are tracked.
    pub fn tracked_tenants(&self) -> usize {
        self.inner.lock().tenants.len()
    }
}

fn cost(config: &UsageConfig, class: DestinationClass, billed: Duration) -> u64 {
    let rate = config
        .rates_cents_per_minute
        .iter()
        .find(|(c, _)| *c == class)
        .map_or(0, |(_, r)| u64::from(*r));
    let ms = u64::try_from(billed.as_millis()).unwrap_or(u64::MAX);
    rate.saturating_mul(ms).div_ceil(60_000)
}

fn tenant_entry(
    inner: &mut Inner,
    tenant: TenantId,
    now: Option<Instant>,
) -> Result<&mut TenantUsage, Denial> {
    let cap = inner.config.max_tenants.max(1);
    if !inner.tenants.contains_key(&tenant) && inner.tenants.len() >= cap {
        let window = inner.config.defaults.window;
        // drop tenants with nothing running, no limits of their own and no
        // recent calls (their spend is gone with them, so keep recent ones)
        if let Some(now) = now {
            inner.tenants.retain(|_, t| {
                t.active.load(Ordering::Acquire) > 0
                    || t.limits.is_some()
                    || !idle(t.last, now, window.max(Duration::from_secs(86_400)))
            });
        }
        if inner.tenants.len() >= cap {
            return Err(Denial::TooManyTracked);
        }
    }
    Ok(inner.tenants.entry(tenant).or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use DestinationClass::*;

    const ACME: TenantId = TenantId(1);
    const BETA: TenantId = TenantId(2);
    const NOBODY: TenantId = TenantId(3);
    const FAST: TenantId = TenantId(4);
    const A: TenantId = TenantId(11);
    const B: TenantId = TenantId(12);
    const C: TenantId = TenantId(13);
    const D: TenantId = TenantId(14);

    fn call<'a>(
        tenant: TenantId,
        extension: &'a str,
        class: DestinationClass,
        now: Instant,
    ) -> CallStart<'a> {
        CallStart {
            tenant,
            extension,
            class,
            now,
            unix_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_tenants_own_limits_override_only_what_they_name() {
        let own = TenantLimits {
            max_concurrent: Some(7),
            daily_cap_cents: Some(0),
            ..TenantLimits::default()
        };
        let l = Limits::default().overridden_by(&own);
        assert_eq!(l.max_concurrent_tenant, Some(7));
        assert_eq!(l.daily_cap_cents, Some(0));
        assert_eq!(
            l.max_concurrent_extension,
            Some(limits::DEFAULT_MAX_CONCURRENT_EXTENSION)
        );
        assert_eq!(
            l.max_calls_per_second,
            Some(limits::DEFAULT_MAX_CALLS_PER_SECOND)
        );
        assert_eq!(
            Limits::default().overridden_by(&TenantLimits::default()),
            Limits::default()
        );
    }

    fn limits() -> Limits {
        Limits {
            max_concurrent_tenant: Some(3),
            max_concurrent_extension: Some(2),
            max_calls_per_second: None,
            window: Duration::from_secs(3600),
            per_class_in_window: vec![(International, 2), (PremiumRate, 0)],
            daily_cap_cents: Some(100),
        }
    }

    fn usage() -> Usage {
        Usage::new(UsageConfig {
            defaults: limits(),
            ..UsageConfig::default()
        })
    }

    #[test]
    fn concurrent_limits_and_guards() {
        let t0 = Instant::now();
        let u = usage();
        let a = u.start_call(&call(ACME, "100", National, t0)).expect("1");
        let b = u.start_call(&call(ACME, "100", National, t0)).expect("2");
        assert_eq!(
            u.start_call(&call(ACME, "100", National, t0)).err(),
            Some(Denial::ExtensionConcurrent { limit: 2 })
        );
        let c = u.start_call(&call(ACME, "101", National, t0)).expect("3");
        assert_eq!(
            u.start_call(&call(ACME, "102", National, t0)).err(),
            Some(Denial::TenantConcurrent { limit: 3 })
        );
        // other tenants are not affected
        let other = u
            .start_call(&call(BETA, "100", National, t0))
            .expect("beta");
        assert_eq!(u.concurrent(ACME), 3);
        assert_eq!(u.concurrent_extension(ACME, "100"), 2);
        drop(b);
        assert_eq!(u.concurrent(ACME), 2);
        assert_eq!(u.concurrent_extension(ACME, "100"), 1);
        drop(c);
        drop(a);
        drop(other);
        assert_eq!(u.concurrent(ACME), 0);
        assert_eq!(u.concurrent(BETA), 0);
        assert_eq!(u.concurrent_extension(ACME, "101"), 0);
    }

    #[test]
    fn guards_from_many_threads_never_leak_or_exceed() {
        let u = Usage::new(UsageConfig {
            defaults: Limits {
                max_concurrent_tenant: Some(5),
                max_concurrent_extension: None,
                max_calls_per_second: None,
                per_class_in_window: vec![],
                daily_cap_cents: None,
                ..limits()
            },
            ..UsageConfig::default()
        });
        let t0 = Instant::now();
        let peak = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..8u32)
            .map(|thread| {
                let u = u.clone();
                let peak = Arc::clone(&peak);
                std::thread::spawn(move || {
                    let ext = format!("{}", 100 + thread % 3);
                    let mut held = Vec::new();
                    let mut admitted = 0u32;
                    for i in 0..2000u32 {
                        if let Ok(g) = u.start_call(&call(ACME, &ext, National, t0)) {
                            admitted += 1;
                            held.push(g);
                            peak.fetch_max(u.concurrent(ACME), Ordering::AcqRel);
                        }
                        // drop guards in a scrambled order
                        if !held.is_empty() && (i * 7 + thread) % 3 != 0 {
                            let at = (i as usize * 31 + thread as usize) % held.len();
                            drop(held.swap_remove(at));
                        }
                    }
                    // hand the rest to another thread to drop
                    (admitted, held)
                })
            })
            .collect();
        let mut leftovers = Vec::new();
        let mut admitted = 0;
        for h in handles {
            let (n, held) = h.join().expect("thread");
            admitted += n;
            leftovers.push(held);
        }
        assert!(admitted > 0);
        assert!(peak.load(Ordering::Acquire) <= 5);
        let dropper = std::thread::spawn(move || {
            while let Some(mut held) = leftovers.pop() {
                while let Some(g) = held.pop() {
                    drop(g);
                }
            }
        });
        dropper.join().expect("dropper");
        assert_eq!(u.concurrent(ACME), 0);
        for ext in ["100", "101", "102"] {
            assert_eq!(u.concurrent_extension(ACME, ext), 0);
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn counts_the_window_asked_for() {
        let t0 = Instant::now();
        let u = usage();
        // Calls at 0 s, 100 s, 200 s and 300 s; the last one by another extension.
        for (i, ext) in [(0u64, "100"), (100, "100"), (200, "100"), (300, "101")] {
            drop(
                u.start_call(&call(ACME, ext, National, t0 + Duration::from_secs(i)))
                    .expect("national"),
            );
        }
        let now = t0 + Duration::from_secs(330);
        let minute = Duration::from_secs(60);
        assert_eq!(u.calls_in_window(ACME, Some("100"), None, minute, now), 0);
        assert_eq!(
            u.calls_in_window(ACME, Some("100"), None, Duration::from_secs(200), now),
            1
        );
        assert_eq!(u.calls_in_window(ACME, Some("100"), None, HOUR, now), 3);
        assert_eq!(u.calls_in_window(ACME, None, None, minute, now), 1);
        assert_eq!(u.calls_in_window(ACME, None, None, HOUR, now), 4);
        assert_eq!(
            u.calls_in_window(ACME, None, Some(International), HOUR, now),
            0
        );
        assert_eq!(
            u.calls_in_window(ACME, Some("101"), Some(National), minute, now),
            1
        );
        // Longer than the tenant's window: counts what is kept.
        let day = Duration::from_secs(86_400);
        assert_eq!(
            u.calls_in_window(ACME, None, None, day, t0 + Duration::from_secs(3650)),
            3
        );
        assert_eq!(u.calls_in_window(NOBODY, None, None, HOUR, now), 0);
    }

    #[test]
    fn every_class_is_counted_as_itself() {
        let t0 = Instant::now();
        let u = Usage::new(UsageConfig {
            defaults: Limits {
                per_class_in_window: vec![],
                daily_cap_cents: None,
                max_concurrent_tenant: None,
                max_concurrent_extension: None,
                ..limits()
            },
            ..UsageConfig::default()
        });
        // Class i is called i + 1 times, a second apart.
        let mut at = t0;
        for (i, class) in DestinationClass::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                drop(
                    u.start_call(&call(ACME, "100", class, at))
                        .expect("admitted"),
                );
                at += Duration::from_secs(1);
            }
        }
        for (i, class) in DestinationClass::ALL.into_iter().enumerate() {
            let want = u32::try_from(i + 1).expect("small");
            assert_eq!(
                u.calls_in_window(ACME, Some("100"), Some(class), HOUR, at),
                want
            );
            assert_eq!(u.calls_in_window(ACME, None, Some(class), HOUR, at), want);
        }
        assert_eq!(u.calls_in_window(ACME, None, None, HOUR, at), 28);
        // Five seconds back: the last four calls, all high-risk (the fifth
        // from last is five seconds old, no longer within).
        let five = Duration::from_secs(5);
        assert_eq!(u.calls_in_window(ACME, None, Some(HighRisk), five, at), 4);
        assert_eq!(u.calls_in_window(ACME, None, None, five, at), 4);
    }

    #[test]
    fn class_window_slides() {
        let t0 = Instant::now();
        let u = usage();
        for i in 0..2u64 {
            let g = u
                .start_call(&call(
                    ACME,
                    "100",
                    International,
                    t0 + Duration::from_secs(i),
                ))
                .expect("intl");
            drop(g);
        }
        assert_eq!(
            u.calls_in_window(
                ACME,
                Some("100"),
                Some(International),
                HOUR,
                t0 + Duration::from_secs(2)
            ),
            2
        );
        assert_eq!(
            u.start_call(&call(
                ACME,
                "100",
                International,
                t0 + Duration::from_secs(10)
            ))
            .err(),
            Some(Denial::ClassWindow {
                class: International,
                limit: 2
            })
        );
        // another extension has its own window; premium is never allowed
        assert!(u.start_call(&call(ACME, "101", International, t0)).is_ok());
        assert!(matches!(
            u.start_call(&call(ACME, "101", PremiumRate, t0)),
            Err(Denial::ClassWindow { limit: 0, .. })
        ));
        // an hour after the first call, one slot is free again
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            u.calls_in_window(ACME, Some("100"), Some(International), HOUR, later),
            1
        );
        assert!(
            u.start_call(&call(ACME, "100", International, later))
                .is_ok()
        );
    }

    #[test]
    fn calls_per_second() {
        let t0 = Instant::now();
        let u = usage();
        u.set_limits(
            FAST,
            Limits {
                max_calls_per_second: Some(2),
                max_concurrent_tenant: None,
                max_concurrent_extension: None,
                ..limits()
            },
        )
        .expect("limits");
        assert!(u.start_call(&call(FAST, "1", National, t0)).is_ok());
        assert!(u.start_call(&call(FAST, "2", National, t0)).is_ok());
        assert_eq!(
            u.start_call(&call(FAST, "3", National, t0 + Duration::from_millis(999)))
                .err(),
            Some(Denial::CallsPerSecond { limit: 2 })
        );
        assert!(
            u.start_call(&call(FAST, "3", National, t0 + Duration::from_secs(1)))
                .is_ok()
        );
    }

    #[test]
    fn daily_spend_caps_and_resets_next_day() {
        let t0 = Instant::now();
        let u = usage();
        let day = 1_700_000_000_000;
        // 20 cents per minute international, 4.5 minutes -> 90 cents
        assert_eq!(u.cost_cents(International, Duration::from_secs(270)), 90);
        assert_eq!(u.cost_cents(International, Duration::from_millis(1)), 1);
        assert_eq!(u.cost_cents(Internal, Duration::from_secs(600)), 0);
        assert_eq!(
            u.charge(ACME, International, Duration::from_secs(270), day),
            Ok(90)
        );
        assert!(u.start_call(&call(ACME, "100", National, t0)).is_ok());
        assert_eq!(
            u.charge(ACME, National, Duration::from_secs(600), day),
            Ok(100)
        );
        assert_eq!(u.spend_today(ACME, day), 100);
        assert_eq!(
            u.start_call(&call(ACME, "100", National, t0)).err(),
            Some(Denial::SpendCap {
                spent: 100,
                cap: 100
            })
        );
        let tomorrow = CallStart {
            unix_ms: day + DAY_MS,
            ..call(ACME, "100", National, t0)
        };
        assert!(u.start_call(&tomorrow).is_ok());
        assert_eq!(u.spend_today(ACME, day + DAY_MS), 0);
    }

    #[test]
    fn tables_are_bounded() {
        let t0 = Instant::now();
        let u = Usage::new(UsageConfig {
            defaults: limits(),
            max_tenants: 3,
            max_extensions_per_tenant: 2,
            ..UsageConfig::default()
        });
        let _held = u.start_call(&call(A, "1", National, t0)).expect("a");
        assert!(u.start_call(&call(B, "1", National, t0)).is_ok());
        assert!(u.start_call(&call(C, "1", National, t0)).is_ok());
        assert_eq!(
            u.start_call(&call(D, "1", National, t0)).err(),
            Some(Denial::TooManyTracked)
        );
        // a day later the idle tenants make room; the busy one stays
        let later = t0 + Duration::from_secs(86_400);
        assert!(u.start_call(&call(D, "1", National, later)).is_ok());
        assert_eq!(u.concurrent(A), 1);
        assert!(u.tracked_tenants() <= 3);
        assert!(u.start_call(&call(A, "2", National, t0)).is_ok());
        assert_eq!(
            u.start_call(&call(A, "3", National, t0)).err(),
            Some(Denial::TooManyTracked)
        );
    }
}
