//! SIP-level abuse defenses at the transport: every inbound datagram and stream
//! frame passes [`Guard::admit`] before it is parsed, and the shards report
//! authentication results back through [`Guard::auth_failure`] and
//! [`Guard::authenticated`].
//!
//! Order of checks, cheapest first: a banned source is dropped (one hash
//! lookup); a source over its message rate is dropped (a source whose phones
//! authenticate gets the higher, office-sized allowance); requests are judged
//! by the scanner detector on a header peek (User-Agent, method) and a
//! scanner is banned. Authentication failures are counted per source (brute
//! force) and by the distinct users they were for (scanning); users that
//! authenticate count for nothing, so an office behind one NAT address or an
//! SBC is not a scanner. Under overload ([`Guard::shed`]) a new request gets a
//! stateless `503` with `Retry-After` while in-dialog messages are queued as
//! before. Bans come from the host's own events (authentication failures and
//! scanner verdicts), never from log lines; each is logged (`event="sip.ban"`),
//! written to the store with an alert by a small background task, restored at
//! start, and lifted when removed from the store ([`Guard::sync_bans`]).
//!
//! The state machines are `pbx_guard`'s; this module owns the locks, the clock
//! and the store side.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::Mutex;
use pbx_guard::{
    Admission, Ban, BanConfig, BanEvent, Bans, OverloadConfig, OverloadGate, RateConfig,
    RateLimiter, RequestKind, ScanVerdict, ScannerConfig, ScannerDetector,
};
use store::{Alert, BanRecord, Severity, Store, TenantId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Ban notices waiting for the store; beyond this they are logged only.
const NOTICE_QUEUE: usize = 1024;

/// Settings of the transport-level abuse defenses. The defaults are on: 10
/// authentication failures in 5 minutes ban a source for 15 minutes (longer
/// each time), as does failing as more than 20 distinct users in a minute or
/// sending more than 60 requests in a minute without ever authenticating; 50
/// messages per second per source (bursts of 200), and 2,000 (bursts of
/// 4,000) for a source whose phones authenticated within the hour; known
/// scanners banned on sight; nothing trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardOptions {
    /// Off: no checks at all (for benchmarks behind a trusted front end).
    pub enabled: bool,
    pub bans: BanConfig,
    pub rate: RateConfig,
    pub scanner: ScannerConfig,
    pub overload: OverloadConfig,
    /// SIP proxies in front of the PBX (a cluster's front): a request they
    /// relay is judged by the client address in the Via below theirs
    /// ([`sip::relayed_from`]); they are never limited or banned themselves.
    pub proxies: Vec<IpNet>,
}

impl Default for GuardOptions {
    fn default() -> GuardOptions {
        let overload = OverloadConfig {
            // Shed by backlog only unless a rate is configured.
            new_per_second: u32::MAX,
            burst: u32::MAX,
            ..OverloadConfig::default()
        };
        GuardOptions {
            enabled: true,
            bans: BanConfig::default(),
            rate: RateConfig::default(),
            scanner: ScannerConfig::default(),
            overload,
            proxies: Vec::new(),
        }
    }
}

impl GuardOptions {
    /// Networks never counted, limited, judged or banned (trunks, admin
    /// networks). None by default: every source is judged, loopback included.
    pub fn set_trusted(&mut self, nets: Vec<IpNet>) {
        self.bans.exempt = nets.clone();
        self.rate.exempt = nets.clone();
        self.scanner.exempt = nets;
    }

    /// The trusted networks.
    pub fn trusted(&self) -> &[IpNet] {
        &self.bans.exempt
    }
}

/// 127.0.0.0/8 and ::1: the host itself. Trusting it suits test fixtures and
/// local load benchmarks, whose traffic all comes from loopback.
pub fn loopback_nets() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// What to do with a message that passed [`Guard::admit`] when the shards are
/// busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shed {
    /// Queue it as usual.
    Queue,
    /// Answer `503` with this `Retry-After` (seconds) and drop it.
    Reject(u64),
}

/// Something for the store.
#[derive(Debug)]
enum Notice {
    Banned(Ban),
    Alert(Alert),
}

/// Counters for logs and tests.
#[derive(Debug, Default)]
struct Counters {
    banned: AtomicU64,
    limited: AtomicU64,
    shed: AtomicU64,
}

pub(crate) struct Guard {
    enabled: bool,
    proxies: Vec<IpNet>,
    bans: Mutex<Bans>,
    rate: Mutex<RateLimiter>,
    scanner: Mutex<ScannerDetector>,
    overload: Mutex<OverloadGate>,
    retry_after_secs: u64,
    /// When each ban was last confirmed written to the store: only those can
    /// have been removed from it.
    persisted: Mutex<HashMap<IpAddr, Instant>>,
    /// Monotonic instant and the Unix milliseconds it corresponds to.
    clock: (Instant, i64),
    notices: mpsc::Sender<Notice>,
    counters: Counters,
}

impl Guard {
    /// Builds the guard and the receiving end of its store notices (see
    /// [`run`]).
    pub(crate) fn new(options: &GuardOptions, clock: (Instant, i64)) -> (Guard, GuardTask) {
        let (notices, rx) = mpsc::channel(NOTICE_QUEUE);
        let guard = Guard {
            enabled: options.enabled,
            proxies: options.proxies.clone(),
            bans: Mutex::new(Bans::new(options.bans.clone())),
            rate: Mutex::new(RateLimiter::new(options.rate.clone())),
            scanner: Mutex::new(ScannerDetector::new(options.scanner.clone())),
            overload: Mutex::new(OverloadGate::new(options.overload.clone())),
            retry_after_secs: options.overload.retry_after.as_secs().max(1),
            persisted: Mutex::new(HashMap::new()),
            clock,
            notices,
            counters: Counters::default(),
        };
        (guard, GuardTask { rx })
    }

    fn unix_ms(&self, t: Instant) -> i64 {
        let (base, base_ms) = self.clock;
        match t.checked_duration_since(base) {
            Some(d) => base_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            None => base_ms.saturating_sub(
                i64::try_from(base.saturating_duration_since(t).as_millis()).unwrap_or(0),
            ),
        }
    }

    fn instant(&self, ms: i64, now: Instant) -> Instant {
        let now_ms = self.unix_ms(now);
        let delta = Duration::from_millis(ms.abs_diff(now_ms));
        if ms >= now_ms {
            now.checked_add(delta).unwrap_or(now)
        } else {
            now.checked_sub(delta).unwrap_or(now)
        }
    }

    /// The client a request from `ip` is judged by when `ip` is one of the
    /// proxies in front of the PBX: the address it relayed the request from.
    /// `None` for anything else (and for a proxy's own requests and its
    /// responses).
    pub(crate) fn relayed_client(&self, ip: IpAddr, bytes: &[u8]) -> Option<IpAddr> {
        if self.proxies.is_empty() || !pbx_guard::acl::contains_any(&self.proxies, ip) {
            return None;
        }
        sip::relayed_from(bytes).map(|c| c.to_canonical())
    }

    /// Whether a message from `ip` may go on to its shard. Runs before
    /// parsing. A proxy's own messages always pass; what it relays is judged
    /// by `client` ([`Guard::relayed_client`]).
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        client: Option<IpAddr>,
        bytes: &[u8],
        now: Instant,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        let ip = match client {
            Some(client) => client,
            None if pbx_guard::acl::contains_any(&self.proxies, ip) => return true,
            None => ip,
        };
        if self.bans.lock().is_banned(ip, now) {
            self.counters.banned.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if !self.rate.lock().allow(ip, now) {
            let n = self.counters.limited.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                tracing::info!(event = "sip.rate_limited", source = %ip, dropped = n, "message rate exceeded; dropping");
            }
            return false;
        }
        let Some(peek) = sip::RequestPeek::of(bytes) else {
            return true;
        };
        let verdict = self
            .scanner
            .lock()
            .observe(ip, peek.user_agent, peek.method, now);
        match verdict {
            ScanVerdict::Allow => true,
            ScanVerdict::Ban(reason) => {
                let tried = peek
                    .callee_target()
                    .map(|target| format!("{} {target}", peek.method));
                self.scanner_ban(ip, &reason, tried, now);
                false
            }
        }
    }

    /// Bans a source the scanner detector judged, noting what it tried.
    fn scanner_ban(
        &self,
        ip: IpAddr,
        reason: &pbx_guard::ScanReason,
        tried: Option<String>,
        now: Instant,
    ) {
        let reason = format!("scanner: {reason}");
        let banned = self.bans.lock().ban(ip, &reason, now);
        if let Some(mut ban) = banned {
            if let Some(tried) = tried
                && !ban.tried.contains(&tried)
            {
                ban.tried.push(tried);
            }
            self.banned(ban, now);
        }
    }

    /// Whether the shards are too busy for this message: `backlog` is the
    /// fullest shard queue's length.
    pub(crate) fn shed(&self, bytes: &[u8], backlog: usize, now: Instant) -> Shed {
        if !self.enabled {
            return Shed::Queue;
        }
        let kind = request_kind(bytes);
        let mut gate = self.overload.lock();
        gate.report_backlog(backlog);
        match gate.admit(kind, now) {
            Admission::Accept => Shed::Queue,
            Admission::Reject { retry_after_secs } => {
                self.count_shed();
                Shed::Reject(retry_after_secs)
            }
        }
    }

    /// The `Retry-After` for a new request that found its shard's queue full.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        self.count_shed();
        Some(self.retry_after_secs)
    }

    fn count_shed(&self) {
        let n = self.counters.shed.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n.is_multiple_of(1000) {
            tracing::warn!(
                event = "sip.overload",
                rejected = n,
                "overloaded: new requests get 503"
            );
        }
    }

    /// A shard reports credentials that did not pass.
    pub(crate) fn auth_failure(
        &self,
        source: IpAddr,
        domain: &str,
        user: &str,
        method: &str,
        tenant: Option<TenantId>,
        now: Instant,
    ) {
        if !self.enabled {
            return;
        }
        let tenant_key = tenant.map_or_else(|| domain.to_owned(), |t| t.to_string());
        let what = format!("{method} {user}@{domain}");
        let event = self
            .bans
            .lock()
            .record_auth_failure(source, &tenant_key, user, &what, now);
        if !matches!(event, Some(BanEvent::Banned(_))) {
            let target = format!("{user}@{domain}");
            let verdict = self.scanner.lock().failed(source, &target, now);
            if let ScanVerdict::Ban(reason) = verdict {
                self.scanner_ban(source, &reason, Some(what), now);
            }
        }
        match event {
            None => {}
            Some(BanEvent::Banned(ban)) => self.banned(ban, now),
            Some(BanEvent::ExtensionAttacked {
                extension,
                failures,
                sources,
                ..
            }) => {
                tracing::warn!(
                    event = "sip.extension_attacked",
                    tenant = ?tenant.map(|t| t.0),
                    %domain,
                    %extension,
                    failures,
                    sources,
                    "one extension is failing authentication from many sources"
                );
                self.notify(Notice::Alert(Alert {
                    tenant,
                    severity: Severity::Warning,
                    event: "sip.extension_attacked".into(),
                    message: format!(
                        "extension {extension}@{domain}: {failures} authentication failures from {sources} sources"
                    ),
                    at_ms: self.unix_ms(now),
                }));
            }
        }
    }

    /// A shard reports a source that passed digest authentication.
    pub(crate) fn authenticated(&self, source: IpAddr, now: Instant) {
        if self.enabled {
            self.scanner.lock().authenticated(source, now);
            self.rate.lock().vouch(source, now);
        }
    }

    fn banned(&self, ban: Ban, now: Instant) {
        let secs = ban.remaining(now).as_secs();
        tracing::warn!(
            event = "sip.ban",
            source = %ban.ip,
            reason = %ban.reason,
            count = ban.count,
            strikes = ban.strikes,
            ban_secs = secs,
            tried = ?ban.tried,
            "source banned"
        );
        let alert = Alert {
            tenant: None,
            severity: Severity::Warning,
            event: "sip.ban".into(),
            message: format!(
                "{} banned for {secs} s: {} (tried: {})",
                ban.ip,
                ban.reason,
                ban.tried.join(", ")
            ),
            at_ms: self.unix_ms(now),
        };
        self.notify(Notice::Banned(ban));
        self.notify(Notice::Alert(alert));
    }

    fn notify(&self, notice: Notice) {
        if self.notices.try_send(notice).is_err() {
            tracing::warn!("ban notice queue full; a ban or alert was not stored");
        }
    }

    fn record(&self, ban: &Ban) -> BanRecord {
        BanRecord {
            ip: ban.ip,
            reason: ban.reason.clone(),
            count: ban.count,
            strikes: ban.strikes,
            first_ms: self.unix_ms(ban.first),
            last_ms: self.unix_ms(ban.last),
            tried: ban.tried.clone(),
            until_ms: self.unix_ms(ban.until),
        }
    }

    /// Loads the bans still in force from the store (at start).
    pub(crate) async fn restore(&self, store: &Store) -> store::Result<usize> {
        let now = Instant::now();
        let records = store.list_bans(self.unix_ms(now)).await?;
        let mut restored = 0;
        let mut bans = self.bans.lock();
        let mut persisted = self.persisted.lock();
        for r in records {
            let ban = Ban {
                ip: r.ip,
                reason: r.reason,
                count: r.count,
                first: self.instant(r.first_ms, now),
                last: self.instant(r.last_ms, now),
                until: self.instant(r.until_ms, now),
                tried: r.tried,
                strikes: r.strikes,
            };
            if bans.restore(ban, now) {
                persisted.insert(r.ip.to_canonical(), now);
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// Lifts every ban that was written to the store and is no longer there
    /// (removed by the CLI or the API); also drops expired bans and idle
    /// counters.
    pub(crate) async fn sync_bans(&self, store: &Store) -> store::Result<usize> {
        let started = Instant::now();
        let in_store: HashSet<IpAddr> = store
            .list_bans(self.unix_ms(started))
            .await?
            .into_iter()
            .map(|r| r.ip.to_canonical())
            .collect();
        Ok(self.lift_missing(&in_store, started))
    }

    fn lift_missing(&self, in_store: &HashSet<IpAddr>, read_at: Instant) -> usize {
        let mut bans = self.bans.lock();
        let mut persisted = self.persisted.lock();
        bans.prune(read_at);
        let mut lifted = 0;
        for ban in bans.list(read_at) {
            let written_before_read = persisted.get(&ban.ip).is_some_and(|t| *t <= read_at);
            if written_before_read && !in_store.contains(&ban.ip) {
                bans.lift(ban.ip);
                persisted.remove(&ban.ip);
                tracing::info!(event = "sip.ban_lifted", source = %ban.ip, "ban lifted");
                lifted += 1;
            }
        }
        persisted.retain(|ip, _| bans.is_banned(*ip, read_at));
        lifted
    }

    /// Whether `ip` is banned now: new connections from it are refused.
    pub(crate) fn refuses(&self, ip: IpAddr, now: Instant) -> bool {
        self.enabled && self.bans.lock().is_banned(ip, now)
    }

    #[cfg(test)]
    fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.refuses(ip, now)
    }
}

/// The receiving side of the guard's store notices.
pub(crate) struct GuardTask {
    rx: mpsc::Receiver<Notice>,
}

/// Writes bans and alerts to the store until `stop`, then what is left.
pub(crate) async fn run(
    guard: std::sync::Arc<Guard>,
    task: GuardTask,
    store: Store,
    stop: CancellationToken,
) {
    let mut rx = task.rx;
    loop {
        let notice = tokio::select! {
            biased;
            n = rx.recv() => n,
            () = stop.cancelled() => None,
        };
        let Some(notice) = notice else { break };
        write(&guard, &store, notice).await;
    }
    while let Ok(notice) = rx.try_recv() {
        write(&guard, &store, notice).await;
    }
}

async fn write(guard: &Guard, store: &Store, notice: Notice) {
    match notice {
        Notice::Banned(ban) => match store.upsert_ban(&guard.record(&ban)).await {
            Ok(()) => {
                guard
                    .persisted
                    .lock()
                    .insert(ban.ip.to_canonical(), Instant::now());
            }
            Err(e) => tracing::error!(error = %e, source = %ban.ip, "cannot store a ban"),
        },
        Notice::Alert(alert) => {
            if let Err(e) = store.insert_alert(&alert).await {
                tracing::error!(error = %e, event = %alert.event, "cannot store an alert");
            }
        }
    }
}

/// New requests can be refused under overload; responses, ACK, CANCEL, BYE
/// and anything with a To tag belong to something already going on.
fn request_kind(bytes: &[u8]) -> RequestKind {
    let Some(peek) = sip::RequestPeek::of(bytes) else {
        return RequestKind::InDialog;
    };
    if peek.is_in_dialog_method() || peek.has_to_tag() {
        RequestKind::InDialog
    } else {
        RequestKind::New
    }
}

/// Whether `bytes` is a request that starts something new (see [`Shed`]).
pub(crate) fn is_new_request(bytes: &[u8]) -> bool {
    request_kind(bytes) == RequestKind::New
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> GuardOptions {
        let mut o = GuardOptions::default();
        o.set_trusted(vec!["10.0.0.0/8".parse().unwrap()]);
        o.bans.max_failures = 3;
        o.rate.per_second = 10;
        o.rate.burst = 20;
        o
    }

    fn guard(o: &GuardOptions) -> (Guard, GuardTask, Instant) {
        let now = Instant::now();
        let (g, task) = Guard::new(o, (now, 1_700_000_000_000));
        (g, task, now)
    }

    fn request(method: &str, to: &str, ua: Option<&str>) -> Vec<u8> {
        format!(
            "{method} sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nFrom: <sip:a@acme.example>;tag=1\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\n{}Content-Length: 0\r\n\r\n",
            ua.map(|u| format!("User-Agent: {u}\r\n")).unwrap_or_default()
        )
        .into_bytes()
    }

    #[test]
    fn defaults_are_on_and_trust_nothing() {
        let o = GuardOptions::default();
        assert!(o.enabled);
        assert_eq!(o.bans.max_failures, 10);
        assert_eq!(o.bans.window, Duration::from_secs(300));
        assert!(o.trusted().is_empty());
        assert_eq!(loopback_nets().len(), 2);
        assert_eq!(o.rate.exempt, o.scanner.exempt);
    }

    /// Behind a front: a scanner relayed by the proxy is banned by its own
    /// address, and only its requests are dropped; the proxy and the other
    /// clients it relays go on.
    #[test]
    fn a_proxys_clients_are_judged_each_by_its_address() {
        let mut o = options();
        o.proxies = vec!["203.0.113.1/32".parse().unwrap()];
        let (g, _task, now) = guard(&o);
        let front: IpAddr = "203.0.113.1".parse().unwrap();
        let relayed = |client: &str, ua: &str| {
            format!(
                "OPTIONS sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKf\r\n\
                 Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK1;received={client}\r\n\
                 From: <sip:a@acme.example>;tag=1\r\nTo: <sip:acme.example>\r\nCall-ID: c1\r\n\
                 CSeq: 1 OPTIONS\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        };
        let scan = relayed("198.51.100.66", "friendly-scanner");
        let scanner = g.relayed_client(front, &scan);
        assert_eq!(scanner, Some("198.51.100.66".parse().unwrap()));
        assert!(
            !g.admit(front, scanner, &scan, now),
            "the scanner is banned"
        );
        assert!(!g.admit(front, scanner, &relayed("198.51.100.66", "Phone/1.0"), now));
        let phone = relayed("198.51.100.7", "Phone/1.0");
        assert!(
            g.admit(front, g.relayed_client(front, &phone), &phone, now),
            "another client of the same front"
        );
        // The proxy's own probes carry one Via: they always pass.
        let probe = request("OPTIONS", "<sip:acme.example>", Some("kamailio"));
        assert_eq!(g.relayed_client(front, &probe), None);
        assert!(g.admit(front, None, &probe, now));
        // Anyone else's second Via means nothing.
        let stranger: IpAddr = "192.0.2.50".parse().unwrap();
        assert_eq!(g.relayed_client(stranger, &phone), None);
    }

    #[test]
    fn auth_failures_ban_and_notify_the_store() {
        let (g, mut task, now) = guard(&options());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let req = request("REGISTER", "<sip:1000@acme.example>", None);
        for i in 0..3 {
            assert!(g.admit(ip, None, &req, now), "failure {i} still answered");
            g.auth_failure(
                ip,
                "acme.example",
                "1000",
                "REGISTER",
                Some(TenantId(1)),
                now,
            );
        }
        assert!(!g.admit(ip, None, &req, now), "banned after 3 failures");
        assert!(g.is_banned(ip, now));
        let Ok(Notice::Banned(ban)) = task.rx.try_recv() else {
            panic!("no ban notice")
        };
        assert_eq!(ban.count, 3);
        assert_eq!(ban.tried, vec!["REGISTER 1000@acme.example".to_string()]);
        let Ok(Notice::Alert(alert)) = task.rx.try_recv() else {
            panic!("no alert")
        };
        assert_eq!((alert.event.as_str(), alert.tenant), ("sip.ban", None));
        // A trusted source is never banned.
        let trusted: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..10 {
            g.auth_failure(trusted, "acme.example", "1000", "REGISTER", None, now);
        }
        assert!(g.admit(trusted, None, &req, now));
    }

    #[test]
    fn scanner_user_agent_is_banned_on_sight() {
        let (g, mut task, now) = guard(&options());
        let ip: IpAddr = "192.0.2.8".parse().unwrap();
        let req = request("OPTIONS", "<sip:100@1.2.3.4>", Some("friendly-scanner"));
        assert!(!g.admit(ip, None, &req, now));
        assert!(g.is_banned(ip, now));
        let Ok(Notice::Banned(ban)) = task.rx.try_recv() else {
            panic!("no ban notice")
        };
        assert!(ban.reason.contains("friendly-scanner"), "{}", ban.reason);
        assert_eq!(ban.tried, vec!["OPTIONS 100@1.2.3.4".to_string()]);
        // Another source with an honest agent passes.
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(g.admit(
            other,
            None,
            &request("OPTIONS", "<sip:100@x>", Some("Phone/1.0")),
            now
        ));
    }

    /// 1,000 phones behind one address log in at 300 a second (each REGISTER
    /// twice: challenged, then with credentials) on the default settings:
    /// nothing is dropped or banned. A source failing as 21 distinct users is
    /// banned as a scanner, and one that never authenticates is limited.
    #[test]
    fn an_office_behind_one_address_is_not_a_scanner() {
        let (g, mut task, t0) = guard(&GuardOptions::default());
        let office: IpAddr = "203.0.113.50".parse().unwrap();
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(i * 1_000_000 / 300);
            let req = request(
                "REGISTER",
                &format!("<sip:{}@acme.example>", 1000 + i),
                None,
            );
            assert!(g.admit(office, None, &req, now), "challenged REGISTER {i}");
            assert!(
                g.admit(office, None, &req, now),
                "authenticated REGISTER {i}"
            );
            g.authenticated(office, now);
        }
        assert!(!g.is_banned(office, t0 + Duration::from_secs(4)));
        assert!(task.rx.try_recv().is_err(), "no ban, no alert");

        // The brute-force budget (10 failures per source) is not what is
        // tested here: raised for this part.
        let mut o = GuardOptions::default();
        o.bans.max_failures = 100;
        let (g2, mut task, _) = guard(&o);
        let scanner: IpAddr = "198.51.100.9".parse().unwrap();
        for i in 0..20 {
            let user = format!("{}", 200 + i);
            g2.auth_failure(scanner, "acme.example", &user, "REGISTER", None, t0);
            assert!(!g2.is_banned(scanner, t0), "{i}");
        }
        g2.auth_failure(scanner, "nowhere.example", "1", "REGISTER", None, t0);
        assert!(g2.is_banned(scanner, t0));
        let ban = loop {
            match task.rx.try_recv() {
                Ok(Notice::Banned(ban)) if ban.reason.contains("distinct users") => break ban,
                Ok(_) => {}
                Err(_) => panic!("no scanner ban notice"),
            }
        };
        assert_eq!(ban.reason, "scanner: failed as 21 distinct users");
        assert!(
            ban.tried
                .contains(&"REGISTER 1@nowhere.example".to_string())
        );

        // An address that never authenticates: its burst, then dropped (and
        // banned once past 60 requests).
        let flood: IpAddr = "198.51.100.10".parse().unwrap();
        let invite = request("INVITE", "<sip:1001@acme.example>", None);
        let passed = (0..500)
            .filter(|_| g.admit(flood, None, &invite, t0))
            .count();
        assert_eq!(passed, 60);
        assert!(g.is_banned(flood, t0));
    }

    #[test]
    fn rate_limit_drops_beyond_the_burst() {
        let (g, _task, now) = guard(&options());
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let resp = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let passed = (0..50).filter(|_| g.admit(ip, None, resp, now)).count();
        assert_eq!(passed, 20);
        assert!(g.admit(ip, None, resp, now + Duration::from_millis(100)));
        let disabled = GuardOptions {
            enabled: false,
            ..options()
        };
        let (g, _task, now) = guard(&disabled);
        assert_eq!((0..50).filter(|_| g.admit(ip, None, resp, now)).count(), 50);
    }

    #[test]
    fn overload_rejects_new_requests_only() {
        let mut o = options();
        o.overload.high_water = 100;
        o.overload.low_water = 10;
        let (g, _task, now) = guard(&o);
        let new = request("INVITE", "<sip:1001@acme.example>", None);
        let in_dialog = request("INVITE", "<sip:1001@acme.example>;tag=abc", None);
        let bye = request("BYE", "<sip:1001@acme.example>", None);
        let response = b"SIP/2.0 180 Ringing\r\n\r\n".to_vec();
        assert_eq!(g.shed(&new, 5, now), Shed::Queue);
        assert_eq!(g.shed(&new, 100, now), Shed::Reject(5));
        for m in [&in_dialog, &bye, &response] {
            assert_eq!(g.shed(m, 100, now), Shed::Queue);
        }
        // Hysteresis: still overloaded until the backlog falls to the low mark.
        assert_eq!(g.shed(&new, 50, now), Shed::Reject(5));
        assert_eq!(g.shed(&new, 10, now), Shed::Queue);
        assert_eq!(g.retry_after(), Some(5));
    }

    #[test]
    fn only_bans_written_before_the_read_are_lifted() {
        let (g, _task, now) = guard(&options());
        let a: IpAddr = "192.0.2.20".parse().unwrap();
        let b: IpAddr = "192.0.2.21".parse().unwrap();
        let c: IpAddr = "192.0.2.22".parse().unwrap();
        for ip in [a, b, c] {
            let ban = g.bans.lock().ban(ip, "test", now).unwrap();
            g.banned(ban, now);
        }
        let read_at = now + Duration::from_secs(1);
        g.persisted.lock().insert(a, now);
        g.persisted.lock().insert(b, now);
        // a was removed from the store; b is still there; c is not written yet.
        let in_store: HashSet<IpAddr> = [b].into_iter().collect();
        assert_eq!(g.lift_missing(&in_store, read_at), 1);
        assert!(!g.is_banned(a, read_at));
        assert!(g.is_banned(b, read_at));
        assert!(g.is_banned(c, read_at));
    }

    #[test]
    fn request_kinds() {
        assert_eq!(
            request_kind(&request("ACK", "<sip:a@b>", None)),
            RequestKind::InDialog
        );
        assert_eq!(
            request_kind(&request("REGISTER", "<sip:a@b>", None)),
            RequestKind::New
        );
    }

    #[test]
    fn store_times_round_trip() {
        let (g, _task, now) = guard(&options());
        let later = now + Duration::from_secs(90);
        let ms = g.unix_ms(later);
        assert_eq!(ms, 1_700_000_090_000);
        let back = g.instant(ms, now);
        let diff = back.max(later) - back.min(later);
        assert!(diff < Duration::from_millis(2), "{diff:?}");
        assert!(g.instant(g.unix_ms(now) - 5_000, now) < now);
    }
}
