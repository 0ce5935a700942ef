//! Per-source message rate limits and the global overload gate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::acl::contains_any;
use crate::bans::evict_oldest_batch;

/// Token units per message: buckets count in millionths so refills are exact
/// integers.
const UNIT: u64 = 1_000_000;

/// Settings of [`RateLimiter`].
///
/// A source starts on the low allowance (`per_second`, `burst`): a scanner or
/// a flood never gets more. Once a request from it passes digest
/// authentication ([`RateLimiter::vouch`]) it is known to front real phones (an
/// office router, an SBC) and gets the high allowance (`authenticated_*`) for
/// `authenticated_for` after its latest authentication, so that a whole
/// office re-registering at once after a power cut gets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateConfig {
    /// Sustained messages per second per source.
    pub per_second: u32,
    /// Messages a source may send at once after being quiet.
    pub burst: u32,
    /// Sustained messages per second of a source whose phones authenticate.
    pub authenticated_per_second: u32,
    /// Messages at once of a source whose phones authenticate.
    pub authenticated_burst: u32,
    /// How long after its latest authentication a source keeps the high
    /// allowance.
    pub authenticated_for: Duration,
    /// Most sources tracked; the idle ones go first when full.
    pub max_tracked: usize,
    /// Sources that are never limited (trunks, load balancers).
    pub exempt: Vec<IpNet>,
}

impl Default for RateConfig {
    fn default() -> RateConfig {
        RateConfig {
            per_second: 50,
            burst: 200,
            // 1,000 phones behind one address re-registering within a few
            // seconds send a few hundred REGISTERs (two messages each) a second.
            authenticated_per_second: 2_000,
            authenticated_burst: 4_000,
            authenticated_for: Duration::from_secs(3600),
            max_tracked: 100_000,
            exempt: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    last: Instant,
    /// Until when the source has the authenticated allowance.
    vouched_until: Option<Instant>,
}

/// A token bucket per source address, in a bounded table.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateConfig,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    pub fn new(config: RateConfig) -> RateLimiter {
        RateLimiter {
            config,
            buckets: HashMap::new(),
        }
    }

    /// (capacity in token units, refill in messages per second) of a bucket.
    fn allowance(&self, vouched: bool) -> (u64, u64) {
        let (burst, per_second) = if vouched {
            (
                self.config.authenticated_burst.max(self.config.burst),
                self.config
                    .authenticated_per_second
                    .max(self.config.per_second),
            )
        } else {
            (self.config.burst, self.config.per_second)
        };
        (u64::from(burst.max(1)) * UNIT, u64::from(per_second))
    }

    fn bucket(&mut self, ip: IpAddr, now: Instant) -> &mut Bucket {
        if !self.buckets.contains_key(&ip) {
            self.make_room(now);
        }
        let (capacity, _) = self.allowance(false);
        self.buckets.entry(ip).or_insert(Bucket {
            tokens: capacity,
            last: now,
            vouched_until: None,
        })
    }

    /// Takes one message's token for `ip`; `false` means drop the message.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = ip.to_canonical();
        if contains_any(&self.config.exempt, ip) {
            return true;
        }
        let vouched = self
            .bucket(ip, now)
            .vouched_until
            .is_some_and(|until| now < until);
        let (capacity, per_second) = self.allowance(vouched);
        let b = self.bucket(ip, now);
        let elapsed = now.saturating_duration_since(b.last);
        // micro-seconds times messages per second = millionths of a message
        let refill = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(per_second);
        b.tokens = b.tokens.saturating_add(refill).min(capacity);
        if now > b.last {
            b.last = now;
        }
        if b.tokens >= UNIT {
            b.tokens -= UNIT;
            true
        } else {
            false
        }
    }

    /// A request from `ip` passed digest authentication: the source gets the
    /// authenticated allowance until `authenticated_for` from now. Its tokens
    /// are not topped up; they refill faster from here on.
    pub fn vouch(&mut self, ip: IpAddr, now: Instant) {
        let ip = ip.to_canonical();
        if contains_any(&self.config.exempt, ip) {
            return;
        }
        let until = now.checked_add(self.config.authenticated_for);
        let b = self.bucket(ip, now);
        b.vouched_until = until.or(b.vouched_until);
    }

    /// How long a bucket takes to refill completely: a source idle that long is
    /// the same as one never seen (a vouched one keeps its bucket while its
    /// allowance lasts).
    fn full_after(&self) -> Duration {
        let per_second = u64::from(self.config.per_second.max(1));
        Duration::from_micros(u64::from(self.config.burst.max(1)) * 1_000_000 / per_second)
    }

    fn make_room(&mut self, now: Instant) {
        let cap = self.config.max_tracked.max(1);
        if self.buckets.len() < cap {
            return;
        }
        let idle = self.full_after();
        self.buckets.retain(|_, b| {
            now.saturating_duration_since(b.last) < idle
                || b.vouched_until.is_some_and(|until| now < until)
        });
        evict_oldest_batch(&mut self.buckets, cap, |b| b.last);
    }

    /// How many sources are tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Settings of [`OverloadGate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverloadConfig {
    /// New requests (out-of-dialog) admitted per second across all sources.
    pub new_per_second: u32,
    /// New requests admitted at once.
    pub burst: u32,
    /// Backlog (queued work) at or above which the server counts as overloaded.
    pub high_water: usize,
    /// Backlog at or below which it recovers.
    pub low_water: usize,
    /// The `Retry-After` value sent with `503`.
    pub retry_after: Duration,
}

impl Default for OverloadConfig {
    fn default() -> OverloadConfig {
        OverloadConfig {
            new_per_second: 500,
            burst: 1000,
            high_water: 10_000,
            low_water: 5_000,
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Whether a request starts something new or belongs to an existing dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Out-of-dialog: INVITE, REGISTER, SUBSCRIBE, OPTIONS, MESSAGE ...
    New,
    /// In-dialog (has a To tag) or ACK/CANCEL/BYE: always admitted so calls end.
    InDialog,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Answer `503 Service Unavailable` with `Retry-After: retry_after_secs`.
    Reject {
        retry_after_secs: u64,
    },
}

/// Global gate: sheds new requests with `503` while the server is overloaded
/// (backlog above the high-water mark, until it falls to the low-water mark) or
/// new requests arrive faster than configured; in-dialog requests always pass.
#[derive(Debug)]
pub struct OverloadGate {
    config: OverloadConfig,
    tokens: u64,
    last: Option<Instant>,
    overloaded: bool,
}

impl OverloadGate {
    pub fn new(config: OverloadConfig) -> OverloadGate {
        let tokens = u64::from(config.burst.max(1)) * UNIT;
        OverloadGate {
            config,
            tokens,
            last: None,
            overloaded: false,
        }
    }

    /// The server reports its backlog (queued datagrams, pending tasks).
    pub fn report_backlog(&mut self, backlog: usize) {
        if backlog >= self.config.high_water {
            self.overloaded = true;
        } else if backlog <= self.config.low_water {
            self.overloaded = false;
        }
    }

    /// Whether the backlog says the server is overloaded.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }

    /// Decides on one request.
    pub fn admit(&mut self, kind: RequestKind, now: Instant) -> Admission {
        if kind == RequestKind::InDialog {
            return Admission::Accept;
        }
        let reject = Admission::Reject {
            retry_after_secs: self.config.retry_after.as_secs().max(1),
        };
        let capacity = u64::from(self.config.burst.max(1)) * UNIT;
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |l| now.saturating_duration_since(l));
        let refill = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.config.new_per_second));
        self.tokens = self.tokens.saturating_add(refill).min(capacity);
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
        if self.overloaded {
            return reject;
        }
        if self.tokens >= UNIT {
            self.tokens -= UNIT;
            Admission::Accept
        } else {
            reject
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_allows_burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateConfig {
            per_second: 10,
            burst: 5,
            max_tracked: 10,
            ..RateConfig::default()
        });
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let allowed = (0..20).filter(|_| r.allow(a, t0)).count();
        assert_eq!(allowed, 5);
        // 100 ms refills exactly one token
        assert!(!r.allow(a, t0 + ms(99)));
        assert!(r.allow(a, t0 + ms(100)));
        assert!(!r.allow(a, t0 + ms(100)));
        // a long pause refills only up to the burst
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| r.allow(a, later)).count(), 5);
        // other sources have their own bucket
        assert!(r.allow("192.0.2.2".parse().expect("ip"), t0));
    }

    #[test]
    fn exempt_sources_are_never_limited() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateConfig {
            per_second: 1,
            burst: 1,
            max_tracked: 10,
            exempt: vec!["10.0.0.0/8".parse().expect("net")],
            ..RateConfig::default()
        });
        assert!((0..100).all(|_| r.allow("10.9.9.9".parse().expect("ip"), t0)));
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn table_is_bounded_and_evicts_idle_first() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateConfig {
            per_second: 1,
            burst: 2,
            max_tracked: 16,
            ..RateConfig::default()
        });
        let hot: IpAddr = "198.51.100.1".parse().expect("ip");
        assert!(r.allow(hot, t0));
        assert!(r.allow(hot, t0));
        assert!(!r.allow(hot, t0));
        for i in 0..1000u32 {
            let src = IpAddr::from((0x0A00_0000u32 + i).to_be_bytes());
            assert!(
                r.allow(src, t0 + ms(1)),
                "a new source starts with a full bucket"
            );
            assert!(r.tracked() <= 16);
        }
        // idle sources whose bucket has refilled are dropped before busy ones
        let mut r = RateLimiter::new(RateConfig {
            per_second: 1,
            burst: 1,
            max_tracked: 2,
            authenticated_for: Duration::ZERO,
            ..RateConfig::default()
        });
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(r.allow(a, t0));
        assert!(r.allow(b, t0 + ms(1500)));
        assert!(!r.allow(b, t0 + ms(1500)));
        assert!(r.allow("192.0.2.3".parse().expect("ip"), t0 + ms(1600)));
        assert!(!r.allow(b, t0 + ms(1600)), "b kept its empty bucket");
    }

    /// An office behind one address: a few hundred REGISTERs a second pass
    /// once its phones authenticate, a flood from an address whose phones never
    /// authenticate stays on the low allowance, and the high allowance ends
    /// when authentications stop.
    #[test]
    fn authenticated_sources_get_the_office_allowance() {
        let t0 = Instant::now();
        let config = RateConfig::default();
        let mut r = RateLimiter::new(config.clone());
        let office: IpAddr = "203.0.113.10".parse().expect("ip");
        let flood: IpAddr = "198.51.100.66".parse().expect("ip");
        r.vouch(office, t0);
        // 10 s at 600 messages a second (300 REGISTERs with their challenges)
        let mut dropped = (0, 0);
        for i in 0..6_000u64 {
            let now = t0 + Duration::from_micros(i * 1_000_000 / 600);
            if !r.allow(office, now) {
                dropped.0 += 1;
            }
            if !r.allow(flood, now) {
                dropped.1 += 1;
            }
        }
        assert_eq!(dropped.0, 0, "the office's messages all pass");
        // the flood got its burst and 50 a second, no more
        let flood_passed = 6_000 - dropped.1;
        assert!(
            (200 + 490..=200 + 501).contains(&flood_passed),
            "{flood_passed}"
        );
        // vouching gives no instant burst: an empty bucket stays empty
        let mut r = RateLimiter::new(RateConfig {
            per_second: 1,
            burst: 2,
            authenticated_per_second: 10,
            authenticated_burst: 100,
            ..config
        });
        let a: IpAddr = "192.0.2.5".parse().expect("ip");
        assert_eq!((0..10).filter(|_| r.allow(a, t0)).count(), 2);
        r.vouch(a, t0);
        assert!(!r.allow(a, t0));
        // then it refills at the high rate, up to the high burst
        assert!(r.allow(a, t0 + ms(100)));
        let later = t0 + Duration::from_secs(20);
        assert_eq!((0..200).filter(|_| r.allow(a, later)).count(), 100);
        // an hour after the latest authentication the low allowance is back
        let expired = t0 + Duration::from_secs(3600 + 30);
        assert_eq!((0..200).filter(|_| r.allow(a, expired)).count(), 2);
    }

    #[test]
    fn gate_sheds_new_requests_only() {
        let t0 = Instant::now();
        let mut g = OverloadGate::new(OverloadConfig {
            new_per_second: 2,
            burst: 2,
            high_water: 100,
            low_water: 50,
            retry_after: Duration::from_secs(7),
        });
        assert_eq!(g.admit(RequestKind::New, t0), Admission::Accept);
        assert_eq!(g.admit(RequestKind::New, t0), Admission::Accept);
        assert_eq!(
            g.admit(RequestKind::New, t0),
            Admission::Reject {
                retry_after_secs: 7
            }
        );
        assert_eq!(g.admit(RequestKind::InDialog, t0), Admission::Accept);
        assert_eq!(g.admit(RequestKind::New, t0 + ms(500)), Admission::Accept);

        g.report_backlog(100);
        assert!(g.is_overloaded());
        let later = t0 + Duration::from_secs(10);
        assert!(matches!(
            g.admit(RequestKind::New, later),
            Admission::Reject { .. }
        ));
        assert_eq!(g.admit(RequestKind::InDialog, later), Admission::Accept);
        g.report_backlog(70);
        assert!(
            g.is_overloaded(),
            "hysteresis keeps shedding above low water"
        );
        g.report_backlog(50);
        assert!(!g.is_overloaded());
        assert_eq!(g.admit(RequestKind::New, later), Admission::Accept);
    }
}
