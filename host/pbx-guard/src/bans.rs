//! Brute-force banning fed by the host's own authentication events.
//!
//! The SIP layer reports each real credential failure (a wrong password or an
//! unknown user after a challenge, never the first `401`) with
//! [`Bans::record_auth_failure`]. Failures are counted per source address and per
//! extension: a source that fails too often within the window is banned, with a
//! ban that grows each time the same source is banned again; an extension that
//! fails from many sources raises an alert instead of banning them all.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::acl::contains_any;
use crate::truncate;

/// How many distinct "what was tried" strings a ban keeps.
const MAX_TRIED: usize = 16;
/// How long one "what was tried" string may be (bytes, cut on a char boundary).
const MAX_TRIED_LEN: usize = 64;

/// Settings of [`Bans`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanConfig {
    /// Failures from one source within `window` that get it banned.
    pub max_failures: u32,
    /// The sliding window failures are counted in.
    pub window: Duration,
    /// The first ban's length.
    pub base_ban: Duration,
    /// Each further ban of the same source lasts this many times the previous one.
    pub escalation: u32,
    /// No ban lasts longer than this.
    pub max_ban: Duration,
    /// How long a source's earlier bans count towards escalation.
    pub strike_memory: Duration,
    /// Failures on one extension (from any sources) within `window` that raise
    /// [`BanEvent::ExtensionAttacked`].
    pub extension_alert_failures: u32,
    /// Trusted networks: never counted, never banned.
    pub exempt: Vec<IpNet>,
    /// Most sources, bans and extensions tracked at once (each table).
    pub max_tracked: usize,
}

impl Default for BanConfig {
    fn default() -> BanConfig {
        BanConfig {
            max_failures: 10,
            window: Duration::from_secs(5 * 60),
            base_ban: Duration::from_secs(15 * 60),
            escalation: 4,
            max_ban: Duration::from_secs(7 * 24 * 3600),
            strike_memory: Duration::from_secs(7 * 24 * 3600),
            extension_alert_failures: 20,
            exempt: Vec::new(),
            max_tracked: 100_000,
        }
    }
}

/// An active (or just expired) ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    pub reason: String,
    /// Failures (or offences) that led to this ban.
    pub count: u32,
    /// The first and the last offence counted.
    pub first: Instant,
    pub last: Instant,
    /// When the ban ends.
    pub until: Instant,
    /// What was tried, e.g. `"acme/1000"`, distinct values, at most 16.
    pub tried: Vec<String>,
    /// How many times this source has been banned, this ban included.
    pub strikes: u32,
}

impl Ban {
    /// Time left at `now` (zero once expired).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }
}

/// What a reported failure led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanEvent {
    /// The source is now banned.
    Banned(Ban),
    /// One extension is failing from many sources; nobody is banned for it.
    /// Raised at most once per window per extension.
    ExtensionAttacked {
        tenant: String,
        extension: String,
        failures: u32,
        sources: usize,
    },
}

#[derive(Debug)]
struct Source {
    failures: VecDeque<Instant>,
    first: Instant,
    last: Instant,
    count: u32,
    tried: Vec<String>,
    strikes: u32,
    last_strike: Option<Instant>,
}

#[derive(Debug)]
struct ExtensionFailures {
    failures: VecDeque<(Instant, IpAddr)>,
    alerted: Option<Instant>,
    last: Instant,
}

/// The ban table. Not thread-safe by itself: the server keeps it behind a lock
/// (reads through [`Bans::is_banned`] take `&self`).
#[derive(Debug)]
pub struct Bans {
    config: BanConfig,
    bans: HashMap<IpAddr, Ban>,
    sources: HashMap<IpAddr, Source>,
    extensions: HashMap<(String, String), ExtensionFailures>,
}

impl Bans {
    pub fn new(config: BanConfig) -> Bans {
        Bans {
            config,
            bans: HashMap::new(),
            sources: HashMap::new(),
            extensions: HashMap::new(),
        }
    }

    pub fn config(&self) -> &BanConfig {
        &self.config
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        contains_any(&self.config.exempt, ip)
    }

    /// Whether datagrams from `ip` should be dropped now. One hash lookup.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.bans
            .get(&ip.to_canonical())
            .is_some_and(|b| b.until > now)
    }

    /// Reports one real authentication failure of `source` for `extension` of
    /// `tenant`; `what` says what was tried (e.g. the user and domain).
    pub fn record_auth_failure(
        &mut self,
        source: IpAddr,
        tenant: &str,
        extension: &str,
        what: &str,
        now: Instant,
    ) -> Option<BanEvent> {
        let source = source.to_canonical();
        let attacked = self.count_extension(source, tenant, extension, now);
        if self.exempt(source) || self.is_banned(source, now) {
            return attacked;
        }
        let window = self.config.window;
        let max_failures = self.config.max_failures.max(1);
        if !self.sources.contains_key(&source) {
            self.make_room_sources(now);
        }
        let s = self.sources.entry(source).or_insert_with(|| Source {
            failures: VecDeque::new(),
            first: now,
            last: now,
            count: 0,
            tried: Vec::new(),
            strikes: 0,
            last_strike: None,
        });
        while s
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            s.failures.pop_front();
        }
        if s.failures.is_empty() {
            s.first = now;
            s.count = 0;
            s.tried.clear();
        }
        s.failures.push_back(now);
        s.last = now;
        s.count = s.count.saturating_add(1);
        remember(&mut s.tried, what);
        if s.failures.len() < max_failures as usize {
            return attacked;
        }
        let reason = format!("{} authentication failures", s.count);
        let (count, first, tried) = (s.count, s.first, std::mem::take(&mut s.tried));
        s.failures.clear();
        s.count = 0;
        let ban = self.impose(source, reason, count, first, tried, now);
        Some(BanEvent::Banned(ban))
    }

    fn count_extension(
        &mut self,
        source: IpAddr,
        tenant: &str,
        extension: &str,
        now: Instant,
    ) -> Option<BanEvent> {
        let threshold = self.config.extension_alert_failures.max(1) as usize;
        let window = self.config.window;
        let key = (
            truncate(tenant, MAX_TRIED_LEN),
            truncate(extension, MAX_TRIED_LEN),
        );
        if !self.extensions.contains_key(&key) && self.extensions.len() >= self.config.max_tracked {
            self.extensions
                .retain(|_, e| now.saturating_duration_since(e.last) < window);
            evict_oldest(&mut self.extensions, |e| e.last);
        }
        let e = self
            .extensions
            .entry(key.clone())
            .or_insert_with(|| ExtensionFailures {
                failures: VecDeque::new(),
                alerted: None,
                last: now,
            });
        while e
            .failures
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= window)
        {
            e.failures.pop_front();
        }
        e.failures.push_back((now, source));
        e.last = now;
        // keep the queue bounded: only the threshold matters
        while e.failures.len() > threshold {
            e.failures.pop_front();
        }
        let recently_alerted = e
            .alerted
            .is_some_and(|t| now.saturating_duration_since(t) < window);
        if e.failures.len() < threshold || recently_alerted {
            return None;
        }
        let mut sources: Vec<IpAddr> = e.failures.iter().map(|(_, ip)| *ip).collect();
        sources.sort_unstable();
        sources.dedup();
        if sources.len() < 2 {
            // one source: the per-source ban handles it
            return None;
        }
        e.alerted = Some(now);
        Some(BanEvent::ExtensionAttacked {
            tenant: key.0,
            extension: key.1,
            failures: e.failures.len() as u32,
            sources: sources.len(),
        })
    }

    /// Bans `ip` by hand (or for a scanner verdict) with the escalating length.
    /// Exempt addresses are never banned: that returns `None`.
    pub fn ban(&mut self, ip: IpAddr, reason: &str, now: Instant) -> Option<Ban> {
        let ip = ip.to_canonical();
        if self.exempt(ip) {
            return None;
        }
        let (count, first, tried) = match self.bans.get(&ip).filter(|b| b.until > now) {
            Some(b) => (b.count.saturating_add(1), b.first, b.tried.clone()),
            None => (1, now, Vec::new()),
        };
        Some(self.impose(ip, truncate(reason, 256), count, first, tried, now))
    }

    /// Restores a ban read back from the store with the time it has left.
    /// Exempt addresses are skipped.
    pub fn restore(&mut self, mut ban: Ban, now: Instant) -> bool {
        ban.ip = ban.ip.to_canonical();
        if self.exempt(ban.ip) || ban.until <= now {
            return false;
        }
        self.make_room_bans(now);
        let src = self.source_entry(ban.ip, now);
        src.strikes = src.strikes.max(ban.strikes);
        src.last_strike = Some(now);
        self.bans.insert(ban.ip, ban);
        true
    }

    fn source_entry(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if !self.sources.contains_key(&ip) {
            self.make_room_sources(now);
        }
        self.sources.entry(ip).or_insert_with(|| Source {
            failures: VecDeque::new(),
            first: now,
            last: now,
            count: 0,
            tried: Vec::new(),
            strikes: 0,
            last_strike: None,
        })
    }

    fn impose(
        &mut self,
        ip: IpAddr,
        reason: String,
        count: u32,
        first: Instant,
        tried: Vec<String>,
        now: Instant,
    ) -> Ban {
        let memory = self.config.strike_memory;
        let src = self.source_entry(ip, now);
        if src
            .last_strike
            .is_some_and(|t| now.saturating_duration_since(t) >= memory)
        {
            src.strikes = 0;
        }
        src.strikes = src.strikes.saturating_add(1);
        src.last_strike = Some(now);
        src.last = now;
        let strikes = src.strikes;
        let length = ban_length(&self.config, strikes);
        let ban = Ban {
            ip,
            reason,
            count,
            first,
            last: now,
            until: now.checked_add(length).unwrap_or(now),
            tried,
            strikes,
        };
        if !self.bans.contains_key(&ip) {
            self.make_room_bans(now);
        }
        self.bans.insert(ip, ban.clone());
        ban
    }

    /// Lifts a ban and forgets the source's failures and earlier bans.
    pub fn lift(&mut self, ip: IpAddr) -> Option<Ban> {
        let ip = ip.to_canonical();
        self.sources.remove(&ip);
        self.bans.remove(&ip)
    }

    /// Active bans at `now`, the longest-running last.
    pub fn list(&self, now: Instant) -> Vec<Ban> {
        let mut v: Vec<Ban> = self
            .bans
            .values()
            .filter(|b| b.until > now)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.until.cmp(&b.until).then(a.ip.cmp(&b.ip)));
        v
    }

    /// Drops expired bans and idle counters; returns how many bans expired.
    pub fn prune(&mut self, now: Instant) -> usize {
        let before = self.bans.len();
        self.bans.retain(|_, b| b.until > now);
        let (window, memory) = (self.config.window, self.config.strike_memory);
        self.sources
            .retain(|_, s| source_is_live(s, now, window, memory));
        self.extensions
            .retain(|_, e| now.saturating_duration_since(e.last) < window);
        before - self.bans.len()
    }

    /// How many sources, bans and extensions are tracked (for metrics and tests).
    pub fn tracked(&self) -> (usize, usize, usize) {
        (self.sources.len(), self.bans.len(), self.extensions.len())
    }

    fn make_room_sources(&mut self, now: Instant) {
        if self.sources.len() < self.config.max_tracked.max(1) {
            return;
        }
        let (window, memory) = (self.config.window, self.config.strike_memory);
        self.sources
            .retain(|_, s| source_is_live(s, now, window, memory));
        evict_oldest_batch(&mut self.sources, self.config.max_tracked.max(1), |s| {
            s.last
        });
    }

    fn make_room_bans(&mut self, now: Instant) {
        if self.bans.len() < self.config.max_tracked.max(1) {
            return;
        }
        self.bans.retain(|_, b| b.until > now);
        // still full: the bans that end soonest go first
        evict_oldest_batch(&mut self.bans, self.config.max_tracked.max(1), |b| b.until);
    }
}

fn source_is_live(s: &Source, now: Instant, window: Duration, memory: Duration) -> bool {
    now.saturating_duration_since(s.last) < window
        || s.last_strike
            .is_some_and(|t| now.saturating_duration_since(t) < memory)
}

fn ban_length(config: &BanConfig, strikes: u32) -> Duration {
    let mut length = config.base_ban;
    for _ in 1..strikes.min(64) {
        length = length.saturating_mul(config.escalation.max(1));
        if length >= config.max_ban {
            break;
        }
    }
    length.min(config.max_ban)
}

fn remember(tried: &mut Vec<String>, what: &str) {
    let what = truncate(what, MAX_TRIED_LEN);
    if tried.len() < MAX_TRIED && !tried.contains(&what) {
        tried.push(what);
    }
}

/// When a table is full, drops its oldest eighth (at least one entry) by `age`.
pub(crate) fn evict_oldest_batch<K, V, F>(map: &mut HashMap<K, V>, cap: usize, age: F)
where
    K: std::hash::Hash + Eq + Clone,
    F: Fn(&V) -> Instant,
{
    if map.len() < cap {
        return;
    }
    let excess = map.len() + 1 - cap;
    let n = excess.max(cap / 8).max(1).min(map.len());
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, v)| (age(v), k.clone())).collect();
    ages.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
    for (_, k) in ages.into_iter().take(n) {
        map.remove(&k);
    }
}

fn evict_oldest<K, V, F>(map: &mut HashMap<K, V>, age: F)
where
    K: std::hash::Hash + Eq + Clone,
    F: Fn(&V) -> Instant,
{
    let cap = map.len();
    if cap > 0 {
        evict_oldest_batch(map, cap, age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn config() -> BanConfig {
        BanConfig {
            max_failures: 3,
            window: secs(60),
            base_ban: secs(100),
            escalation: 3,
            max_ban: secs(1000),
            strike_memory: secs(10_000),
            extension_alert_failures: 4,
            exempt: vec!["10.0.0.0/8".parse().expect("net")],
            max_tracked: 1000,
        }
    }

    #[test]
    fn bans_after_max_failures_in_window_and_expires() {
        let t0 = Instant::now();
        let mut b = Bans::new(config());
        let a = ip("203.0.113.5");
        assert_eq!(
            b.record_auth_failure(a, "acme", "100", "100@acme", t0),
            None
        );
        assert_eq!(
            b.record_auth_failure(a, "acme", "101", "101@acme", t0 + secs(1)),
            None
        );
        assert!(!b.is_banned(a, t0 + secs(1)));
        let Some(BanEvent::Banned(ban)) =
            b.record_auth_failure(a, "acme", "101", "101@acme", t0 + secs(2))
        else {
            panic!("expected a ban");
        };
        assert_eq!(ban.count, 3);
        assert_eq!(ban.first, t0);
        assert_eq!(ban.last, t0 + secs(2));
        assert_eq!(ban.tried, vec!["100@acme", "101@acme"]);
        assert_eq!(ban.until, t0 + secs(102));
        assert!(b.is_banned(a, t0 + secs(50)));
        assert!(b.is_banned(ip("::ffff:203.0.113.5"), t0 + secs(50)));
        assert!(!b.is_banned(ip("203.0.113.6"), t0 + secs(50)));
        assert!(!b.is_banned(a, t0 + secs(102)));
        assert_eq!(b.list(t0 + secs(50)).len(), 1);
        assert!(b.list(t0 + secs(102)).is_empty());
        assert_eq!(b.prune(t0 + secs(103)), 1);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut b = Bans::new(config());
        let a = ip("198.51.100.1");
        for i in 0..10 {
            let ev = b.record_auth_failure(a, "t", "1", "x", t0 + secs(i * 31));
            assert_eq!(ev, None, "failure {i}");
        }
        assert!(!b.is_banned(a, t0 + secs(300)));
    }

    #[test]
    fn repeat_bans_escalate_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Bans::new(config());
        let a = ip("192.0.2.9");
        let mut now = t0;
        let mut lengths = Vec::new();
        for _ in 0..4 {
            let mut last = None;
            for _ in 0..3 {
                last = b.record_auth_failure(a, "t", "1", "x", now);
            }
            let Some(BanEvent::Banned(ban)) = last else {
                panic!("expected a ban");
            };
            lengths.push(ban.until - now);
            now = ban.until + secs(1);
        }
        assert_eq!(lengths, [secs(100), secs(300), secs(900), secs(1000)]);
    }

    #[test]
    fn strikes_are_forgotten_after_the_memory() {
        let t0 = Instant::now();
        let mut b = Bans::new(config());
        let a = ip("192.0.2.10");
        assert!(b.ban(a, "manual", t0).is_some());
        let later = t0 + secs(20_000);
        let ban = b.ban(a, "manual", later).expect("ban");
        assert_eq!(ban.strikes, 1);
        assert_eq!(ban.until - later, secs(100));
    }

    #[test]
    fn exempt_networks_are_never_banned() {
        let t0 = Instant::now();
        let mut b = Bans::new(config());
        let a = ip("10.1.1.1");
        for i in 0..10 {
            let ev = b.record_auth_failure(a, "t", "1", "x", t0 + secs(i));
            assert!(!matches!(ev, Some(BanEvent::Banned(_))));
        }
        assert!(!b.is_banned(a, t0 + secs(10)));
        assert!(b.ban(a, "manual", t0).is_none());
        assert_eq!(b.tracked().0, 0);
    }

    #[test]
    fn an_extension_attacked_from_many_sources_alerts_without_bans() {
        let t0 = Instant::now();
        let mut b = Bans::new(config());
        let mut events = Vec::new();
        for i in 0..8u64 {
            let src = IpAddr::from([198, 51, 100, i as u8 + 1]);
            if let Some(ev) = b.record_auth_failure(src, "acme", "1000", "1000", t0 + secs(i)) {
                events.push(ev);
            }
        }
        assert_eq!(
            events,
            vec![BanEvent::ExtensionAttacked {
                tenant: "acme".into(),
                extension: "1000".into(),
                failures: 4,
                sources: 4,
            }]
        );
        assert!(b.list(t0 + secs(8)).is_empty());
        // a new window may alert again
        let ev = (0..4u8)
            .filter_map(|i| {
                b.record_auth_failure(
                    IpAddr::from([192, 0, 2, i]),
                    "acme",
                    "1000",
                    "",
                    t0 + secs(70),
                )
            })
            .count();
        assert_eq!(ev, 1);
    }

    #[test]
    fn manual_ban_lift_and_list() {
        let t0 = Instant::now();
        let mut b = Bans::new(config());
        let a = ip("2001:db8::1");
        let ban = b.ban(a, "abuse report", t0).expect("ban");
        assert_eq!(ban.reason, "abuse report");
        assert!(b.is_banned(a, t0 + secs(1)));
        assert_eq!(b.list(t0).len(), 1);
        assert_eq!(b.lift(a).map(|b| b.ip), Some(a));
        assert!(!b.is_banned(a, t0 + secs(1)));
        assert!(b.lift(a).is_none());
        // lifting forgets strikes: the next ban is the base length again
        let again = b.ban(a, "again", t0 + secs(2)).expect("ban");
        assert_eq!(again.strikes, 1);
    }

    #[test]
    fn restore_brings_back_a_stored_ban() {
        let t0 = Instant::now();
        let mut b = Bans::new(config());
        let a = ip("192.0.2.77");
        let ban = Ban {
            ip: a,
            reason: "stored".into(),
            count: 12,
            first: t0,
            last: t0,
            until: t0 + secs(50),
            tried: vec!["1000".into()],
            strikes: 2,
        };
        assert!(b.restore(ban.clone(), t0));
        assert!(b.is_banned(a, t0 + secs(49)));
        assert!(!b.restore(Ban { until: t0, ..ban }, t0 + secs(1)));
        // the next ban escalates from the restored strikes
        let next = b.ban(a, "again", t0 + secs(60)).expect("ban");
        assert_eq!(next.strikes, 3);
    }

    #[test]
    fn tables_stay_bounded() {
        let t0 = Instant::now();
        let mut b = Bans::new(BanConfig {
            max_tracked: 64,
            max_failures: 1,
            ..config()
        });
        for i in 0..1000u32 {
            let src = IpAddr::from((0xC000_0000u32 + i).to_be_bytes());
            b.record_auth_failure(
                src,
                "t",
                &format!("e{i}"),
                "x",
                t0 + Duration::from_millis(u64::from(i)),
            );
            let (s, bans, e) = b.tracked();
            assert!(s <= 64 && bans <= 64 && e <= 64, "{s} {bans} {e}");
        }
        // the newest ban survived
        let last = IpAddr::from((0xC000_0000u32 + 999).to_be_bytes());
        assert!(b.is_banned(last, t0 + secs(2)));
    }

    #[test]
    fn long_inputs_are_cut() {
        let t0 = Instant::now();
        let mut b = Bans::new(BanConfig {
            max_failures: 1,
            ..config()
        });
        let long = "é".repeat(500);
        let Some(BanEvent::Banned(ban)) =
            b.record_auth_failure(ip("192.0.2.1"), &long, &long, &long, t0)
        else {
            panic!("expected a ban");
        };
        assert!(ban.tried[0].len() <= MAX_TRIED_LEN);
    }
}
