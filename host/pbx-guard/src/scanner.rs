//! SIP scanner detection: known scanner user agents and scanning behaviour.
//!
//! What tells an office from a scanner: an office's phones authenticate. So
//! the distinct users a source tries count only when they fail (credentials
//! presented and wrong, for an unknown user or domain or a wrong password),
//! reported by [`ScannerDetector::failed`]; a thousand phones behind one NAT
//! address logging in as a thousand users count nothing. A source that keeps
//! sending requests and never authenticates is a scanner (or a flood) too.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::acl::contains_any;
use crate::bans::evict_oldest_batch;

/// User-agent fragments of well-known SIP scanners and attack tools, lower-case.
pub const KNOWN_SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "vaxsipuseragent",
    "sipsak",
    "sundayddr",
    "iwar",
    "sivus",
    "siparmyknife",
    "pplsip",
    "sippts",
    "smap",
];

/// How much of a User-Agent header is looked at.
const MAX_AGENT_LEN: usize = 256;

/// Settings of [`ScannerDetector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerConfig {
    /// The window behaviour is judged over.
    pub window: Duration,
    /// Distinct users (user@domain) one source may fail to authenticate as
    /// in the window.
    pub max_distinct_targets: usize,
    /// Requests one source may send in the window without ever authenticating.
    pub max_unauthenticated: u32,
    /// Extra user-agent fragments (any case) on top of [`KNOWN_SCANNERS`].
    pub extra_agents: Vec<String>,
    /// Sources never judged (trunks, monitoring).
    pub exempt: Vec<IpNet>,
    /// Most sources tracked.
    pub max_tracked: usize,
}

impl Default for ScannerConfig {
    fn default() -> ScannerConfig {
        ScannerConfig {
            window: Duration::from_secs(60),
            max_distinct_targets: 20,
            max_unauthenticated: 60,
            extra_agents: Vec::new(),
            exempt: Vec::new(),
            max_tracked: 100_000,
        }
    }
}

/// Why a source was judged a scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanReason {
    /// The User-Agent contains this known scanner fragment.
    KnownAgent(String),
    /// It failed to authenticate as this many distinct users/domains within
    /// the window.
    ManyTargets(usize),
    /// It sent this many requests within the window and never authenticated.
    NeverAuthenticates(u32),
}

impl std::fmt::Display for ScanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanReason::KnownAgent(a) => write!(f, "scanner user agent {a:?}"),
            ScanReason::ManyTargets(n) => write!(f, "failed as {n} distinct users"),
            ScanReason::NeverAuthenticates(n) => {
                write!(f, "{n} requests without authenticating")
            }
        }
    }
}

/// The detector's verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanVerdict {
    Allow,
    /// Ban the source (see [`crate::bans::Bans::ban`]) and drop the request.
    Ban(ScanReason),
}

#[derive(Debug)]
struct Seen {
    start: Instant,
    last: Instant,
    requests: u32,
    targets: Vec<u64>,
    authenticated: bool,
}

/// Watches requests and authentication failures per source. Memory per
/// source is bounded by `max_distinct_targets` hashes.
#[derive(Debug)]
pub struct ScannerDetector {
    config: ScannerConfig,
    agents: Vec<String>,
    sources: HashMap<IpAddr, Seen>,
    hasher: RandomState,
}

impl ScannerDetector {
    pub fn new(config: ScannerConfig) -> ScannerDetector {
        let agents = KNOWN_SCANNERS
            .iter()
            .map(|s| (*s).to_owned())
            .chain(
                config
                    .extra_agents
                    .iter()
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty()),
            )
            .collect();
        ScannerDetector {
            config,
            agents,
            sources: HashMap::new(),
            hasher: RandomState::new(),
        }
    }

    /// The known-scanner fragment `user_agent` contains, if any (case-insensitive).
    pub fn scanner_agent(&self, user_agent: &str) -> Option<&str> {
        let cut = crate::truncate(user_agent, MAX_AGENT_LEN).to_ascii_lowercase();
        self.agents
            .iter()
            .find(|a| cut.contains(a.as_str()))
            .map(String::as_str)
    }

    /// Looks at one request from `ip`: its User-Agent and method.
    pub fn observe(
        &mut self,
        ip: IpAddr,
        user_agent: Option<&str>,
        method: &str,
        now: Instant,
    ) -> ScanVerdict {
        let ip = ip.to_canonical();
        if contains_any(&self.config.exempt, ip) {
            return ScanVerdict::Allow;
        }
        if let Some(agent) = user_agent.and_then(|ua| self.scanner_agent(ua)) {
            let reason = ScanReason::KnownAgent(agent.to_owned());
            self.sources.remove(&ip);
            return ScanVerdict::Ban(reason);
        }
        // ACK and CANCEL follow an earlier request; they say nothing new
        if method.eq_ignore_ascii_case("ACK") || method.eq_ignore_ascii_case("CANCEL") {
            return ScanVerdict::Allow;
        }
        let max = self.config.max_unauthenticated;
        let seen = self.seen(ip, now);
        seen.requests = seen.requests.saturating_add(1);
        if !seen.authenticated && seen.requests > max {
            let n = seen.requests;
            self.sources.remove(&ip);
            return ScanVerdict::Ban(ScanReason::NeverAuthenticates(n));
        }
        ScanVerdict::Allow
    }

    /// A request from `ip` presented credentials for `target` (user@domain)
    /// that did not pass. Failing as too many distinct users in the window
    /// is a scan.
    pub fn failed(&mut self, ip: IpAddr, target: &str, now: Instant) -> ScanVerdict {
        let ip = ip.to_canonical();
        if contains_any(&self.config.exempt, ip) {
            return ScanVerdict::Allow;
        }
        let target = self
            .hasher
            .hash_one(crate::truncate(target, 128).to_ascii_lowercase());
        let max = self.config.max_distinct_targets;
        let seen = self.seen(ip, now);
        if !seen.targets.contains(&target) {
            seen.targets.push(target);
        }
        if seen.targets.len() > max {
            let n = seen.targets.len();
            self.sources.remove(&ip);
            return ScanVerdict::Ban(ScanReason::ManyTargets(n));
        }
        ScanVerdict::Allow
    }

    /// The source's entry, its counts restarted when its window is over.
    fn seen(&mut self, ip: IpAddr, now: Instant) -> &mut Seen {
        if !self.sources.contains_key(&ip) {
            self.make_room(now);
        }
        let window = self.config.window;
        let seen = self.sources.entry(ip).or_insert(Seen {
            start: now,
            last: now,
            requests: 0,
            targets: Vec::new(),
            authenticated: false,
        });
        if now.saturating_duration_since(seen.start) >= window {
            *seen = Seen {
                start: now,
                last: now,
                requests: 0,
                targets: Vec::new(),
                authenticated: seen.authenticated,
            };
        }
        seen.last = now;
        seen
    }

    /// The source passed digest authentication: its requests no longer count as
    /// never authenticating.
    pub fn authenticated(&mut self, ip: IpAddr, now: Instant) {
        let ip = ip.to_canonical();
        if contains_any(&self.config.exempt, ip) {
            return;
        }
        self.seen(ip, now).authenticated = true;
    }

    /// How many sources are tracked.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    fn make_room(&mut self, now: Instant) {
        let cap = self.config.max_tracked.max(1);
        if self.sources.len() < cap {
            return;
        }
        let window = self.config.window;
        self.sources
            .retain(|_, s| now.saturating_duration_since(s.last) < window);
        evict_oldest_batch(&mut self.sources, cap, |s| s.last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn config() -> ScannerConfig {
        ScannerConfig {
            window: Duration::from_secs(60),
            max_distinct_targets: 5,
            max_unauthenticated: 10,
            extra_agents: vec!["  EvilDialer ".into()],
            exempt: vec!["10.0.0.0/8".parse().expect("net")],
            max_tracked: 100,
        }
    }

    #[test]
    fn known_agents_any_case() {
        let t0 = Instant::now();
        let mut d = ScannerDetector::new(config());
        for ua in [
            "friendly-scanner",
            "SIPVicious/0.3.4",
            "sipcli/v1.8",
            "VaxSIPUserAgent/3.1",
            "sipsak 0.9.6",
            "Mozilla sip-scan",
            "evildialer 2.0",
        ] {
            assert!(
                matches!(
                    d.observe(ip("192.0.2.1"), Some(ua), "OPTIONS", t0),
                    ScanVerdict::Ban(ScanReason::KnownAgent(_))
                ),
                "{ua}"
            );
        }
        for ua in [
            "Yealink SIP-T46S",
            "Linphone/5.2",
            "Zoiper rv2.10",
            "baresip v3",
        ] {
            assert_eq!(
                d.observe(ip("192.0.2.2"), Some(ua), "REGISTER", t0),
                ScanVerdict::Allow,
                "{ua}"
            );
        }
        assert_eq!(
            d.scanner_agent("x FRIENDLY-SCANNER"),
            Some("friendly-scanner")
        );
        assert_eq!(d.scanner_agent(&"é".repeat(1000)), None);
    }

    #[test]
    fn failing_as_many_distinct_users_is_a_scan() {
        let t0 = Instant::now();
        let mut d = ScannerDetector::new(config());
        let a = ip("198.51.100.7");
        for i in 0..5 {
            let user = format!("{}@acme.example", 100 + i);
            assert_eq!(d.failed(a, &user, t0), ScanVerdict::Allow);
        }
        // the same users again do not count
        assert_eq!(d.failed(a, "100@ACME.example", t0), ScanVerdict::Allow);
        assert_eq!(
            d.failed(a, "200@nowhere.example", t0),
            ScanVerdict::Ban(ScanReason::ManyTargets(6))
        );
    }

    /// An office: a thousand phones behind one address log in as a thousand
    /// users within seconds; none fails, so nothing counts towards a scan.
    #[test]
    fn many_users_that_authenticate_are_an_office() {
        let t0 = Instant::now();
        let mut d = ScannerDetector::new(config());
        let office = ip("203.0.113.20");
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i * 3);
            // the challenge, then the authenticated request
            assert_eq!(
                d.observe(office, Some("Yealink SIP-T46S"), "REGISTER", now),
                ScanVerdict::Allow
            );
            assert_eq!(
                d.observe(office, Some("Yealink SIP-T46S"), "REGISTER", now),
                ScanVerdict::Allow
            );
            d.authenticated(office, now);
        }
        // a few phones with stale passwords are not a scan either
        for user in ["1001@acme.example", "1002@acme.example"] {
            assert_eq!(d.failed(office, user, t0), ScanVerdict::Allow);
        }
    }

    #[test]
    fn failures_spread_over_windows_are_fine() {
        let t0 = Instant::now();
        let mut d = ScannerDetector::new(config());
        let a = ip("198.51.100.8");
        for i in 0..30u64 {
            let user = format!("{i}");
            let now = t0 + Duration::from_secs(i * 20);
            assert_eq!(d.failed(a, &user, now), ScanVerdict::Allow);
        }
    }

    #[test]
    fn never_authenticating_is_a_scan_unless_it_authenticates() {
        let t0 = Instant::now();
        let mut d = ScannerDetector::new(config());
        let a = ip("203.0.113.1");
        for _ in 0..10 {
            assert_eq!(d.observe(a, None, "OPTIONS", t0), ScanVerdict::Allow);
        }
        // retransmission-style ACKs are ignored
        assert_eq!(d.observe(a, None, "ACK", t0), ScanVerdict::Allow);
        assert_eq!(
            d.observe(a, None, "OPTIONS", t0),
            ScanVerdict::Ban(ScanReason::NeverAuthenticates(11))
        );

        let b = ip("203.0.113.2");
        d.authenticated(b, t0);
        for _ in 0..50 {
            assert_eq!(d.observe(b, None, "OPTIONS", t0), ScanVerdict::Allow);
        }
    }

    #[test]
    fn exempt_and_bounded() {
        let t0 = Instant::now();
        let mut d = ScannerDetector::new(config());
        assert_eq!(
            d.observe(ip("10.0.0.1"), Some("friendly-scanner"), "OPTIONS", t0),
            ScanVerdict::Allow
        );
        for i in 0..1000u32 {
            d.observe(IpAddr::from(i.to_be_bytes()), None, "OPTIONS", t0);
            assert!(d.tracked() <= 100);
        }
        assert_eq!(
            ScanReason::ManyTargets(3).to_string(),
            "failed as 3 distinct users"
        );
    }
}
