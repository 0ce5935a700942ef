//! The scenario the memory bench (`benches/memory.rs`) and the memory test
//! (`tests/memory.rs`) both drive: a [`Shard`] fed complete calls and
//! registrations over UDP with a virtual clock, and the live heap read at the
//! points where the signalling state is largest.
//!
//! The heap is read through a probe the caller passes in (dhat's heap
//! statistics in both targets), so this module holds no allocator of its own.
//! Everything the driver keeps between two readings is allocated before the
//! first one, so the differences are the shard's alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use digest_auth::{Algorithm, Challenge, Credentials, ha1};
use model::{Directory, Extension, Tenant, TenantId, TenantStatus, TransportKind};
use pbx_core::{CoreConfig, Inbound, Output, Peer, Shard, Shared};

const DOMAIN: &str = "acme.example";
const SERVER: &str = "127.0.0.1:5060";
const CALLER: &str = "127.0.0.1:7000";
const CALLEE: &str = "127.0.0.1:7001";
/// A typical phone's offer and answer: one audio stream, G.711 and
/// telephone events.
const OFFER: &str = "v=0\r\no=1000 3851 3851 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";
const ANSWER: &str = "v=0\r\no=1001 9262 9262 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";
/// Extensions registered in the registration part are numbered from here.
const FIRST_PHONE: u32 = 2000;

/// Live heap as the probe reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heap {
    /// Bytes asked of the allocator and not yet freed.
    pub(crate) bytes: usize,
    /// Blocks those bytes are in (each costs the allocator some bookkeeping).
    pub(crate) blocks: usize,
}

impl Heap {
    fn minus(self, base: Heap) -> (i64, i64) {
        let d = |a: usize, b: usize| {
            i64::try_from(a).unwrap_or(i64::MAX) - i64::try_from(b).unwrap_or(i64::MAX)
        };
        (d(self.bytes, base.bytes), d(self.blocks, base.blocks))
    }
}

/// One reading of the scenario, relative to the baseline before it.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// What the reading is of.
    pub(crate) label: &'static str,
    /// Live bytes above the baseline.
    pub(crate) bytes: i64,
    /// Live blocks above the baseline.
    pub(crate) blocks: i64,
    /// What the bytes are divided by (calls, transactions or registrations).
    pub(crate) per: usize,
    /// The unit `per` counts.
    pub(crate) unit: &'static str,
    /// Server and client transactions the shard held at the reading.
    pub(crate) transactions: (usize, usize),
}

impl Reading {
    /// Bytes per unit.
    pub(crate) fn bytes_each(&self) -> f64 {
        self.bytes as f64 / self.per.max(1) as f64
    }
}

/// The readings of one run.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) calls: usize,
    pub(crate) registrations: usize,
    pub(crate) readings: Vec<Reading>,
}

impl Report {
    /// The reading labelled `label`.
    pub(crate) fn get(&self, label: &str) -> &Reading {
        self.readings
            .iter()
            .find(|r| r.label == label)
            .unwrap_or_else(|| panic!("no reading {label}"))
    }

    /// The readings as a table.
    pub(crate) fn table(&self) -> String {
        let mut s = format!(
            "{} calls, {} registrations (UDP, RFC 3261 default timers)\n{:<44} {:>12} {:>9} {:>8} {:>14} {:>10}\n",
            self.calls,
            self.registrations,
            "state",
            "live bytes",
            "blocks",
            "tx s/c",
            "bytes each",
            "per"
        );
        for r in &self.readings {
            s.push_str(&format!(
                "{:<44} {:>12} {:>9} {:>8} {:>14.1} {:>10}\n",
                r.label,
                r.bytes,
                r.blocks,
                format!("{}/{}", r.transactions.0, r.transactions.1),
                r.bytes_each(),
                r.unit
            ));
        }
        s
    }
}

/// Reading labels, shared by the bench and the test.
pub(crate) const ANSWERED: &str = "call answered, INVITE transactions accepted";
pub(crate) const SETTLED: &str = "call answered, INVITE transactions ended";
pub(crate) const ENDED_CALL: &str = "after BYE: all kept for one ended call";
pub(crate) const COMPLETED_TX: &str = "after INFO: one completed transaction";
pub(crate) const AFTER_TIMERS: &str = "after every timer fired";
pub(crate) const REGISTERED: &str = "registration (binding + nonce)";

fn directory(phones: usize) -> Directory {
    let ext = |n: String| Extension {
        tenant: TenantId(1),
        ha1_md5: ha1(Algorithm::Md5, &n, DOMAIN, &format!("pw{n}")),
        ha1_sha256: ha1(Algorithm::Sha256, &n, DOMAIN, &format!("pw{n}")),
        number: n,
        enabled: true,
        digest: None,
    };
    let mut extensions = vec![ext("1000".into()), ext("1001".into())];
    extensions.extend((0..phones).map(|i| ext((FIRST_PHONE + i as u32).to_string())));
    Directory {
        tenants: vec![Tenant {
            id: TenantId(1),
            name: "acme".into(),
            status: TenantStatus::Active,
            realm: DOMAIN.into(),
            domains: vec![DOMAIN.into()],
            media_encryption: model::MediaEncryption::default(),
            digest: None,
        }],
        extensions,
        acls: Vec::new(),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// The value of the first header `name` in `msg`.
fn header<'a>(msg: &'a str, name: &'a str) -> Option<&'a str> {
    headers(msg, name).next()
}

/// The values of every header `name` in `msg`, in order.
fn headers<'a>(msg: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n").skip(1).filter_map(move |line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn is_request(msg: &str, method: &str) -> bool {
    msg.starts_with(method) && msg.as_bytes().get(method.len()) == Some(&b' ')
}

/// A shard and its virtual clock.
struct Driver {
    shard: Shard,
    now: Instant,
}

impl Driver {
    fn feed(&mut self, from: &str, text: String) -> Vec<(u16, String)> {
        let peer = Peer {
            transport: TransportKind::Udp,
            addr: addr(from),
            conn: None,
        };
        self.shard.handle(
            self.now,
            Inbound::new(peer, addr(SERVER), Bytes::from(text)),
        );
        self.drain()
    }

    /// What the shard sent, by destination port; everything else it asked for
    /// is dropped, as a host without a store would.
    fn drain(&mut self) -> Vec<(u16, String)> {
        let mut sent = Vec::new();
        while let Some(o) = self.shard.poll_output() {
            if let Output::Transmit { dest, bytes, .. } = o {
                sent.push((
                    dest.addr.port(),
                    String::from_utf8(bytes.to_vec()).expect("SIP is text"),
                ));
            }
        }
        sent
    }

    /// Runs every timer up to `until`, jumping from one to the next.
    fn run_until(&mut self, until: Instant) {
        while let Some(t) = self.shard.poll_timeout() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.shard.handle_timeout(self.now);
            drop(self.drain());
        }
        self.now = until;
    }

    /// The digest answer to the challenge in `reply` (header `name`).
    fn answer(reply: &str, name: &str, method: &str, uri: &str, user: &str) -> String {
        let challenge = header(reply, name).expect("a challenge");
        let challenge = Challenge::parse(challenge).expect("the challenge parses");
        Credentials::answer(
            &challenge,
            method,
            uri,
            user,
            &format!("pw{user}"),
            "c0ffee",
        )
        .header_value()
    }

    fn register(&mut self, user: &str, at: &str) {
        let uri = format!("sip:{DOMAIN}");
        let request = |cseq: u32, auth: Option<&str>| {
            format!(
                "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bKreg{user}-{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag=r{user}\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: reg-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{at}>\r\nExpires: 3600\r\n{}Content-Length: 0\r\n\r\n",
                auth.map(|a| format!("Authorization: {a}\r\n"))
                    .unwrap_or_default()
            )
        };
        let out = self.feed(at, request(1, None));
        let challenge = &out.first().expect("a challenge").1;
        assert_eq!(status(challenge), Some(401), "REGISTER is challenged");
        let auth = Self::answer(challenge, "WWW-Authenticate", "REGISTER", &uri, user);
        let out = self.feed(at, request(2, Some(&auth)));
        assert_eq!(
            out.first().and_then(|(_, m)| status(m)),
            Some(200),
            "REGISTER of {user} accepted"
        );
    }

    /// Call `i` from 1000 to 1001, up to the caller's ACK of the 200. Writes
    /// the caller's To (with the host's tag) into `to`, which has room for it.
    fn call(&mut self, i: usize, to: &mut String) {
        let uri = format!("sip:1001@{DOMAIN}");
        let invite = |cseq: u32, auth: Option<&str>| {
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKinv{i}-{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@{DOMAIN}>;tag=a{i}\r\nTo: <{uri}>\r\nCall-ID: mem-call-{i}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:1000@{CALLER}>\r\n{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
                auth.map(|a| format!("Proxy-Authorization: {a}\r\n"))
                    .unwrap_or_default(),
                OFFER.len()
            )
        };
        let out = self.feed(CALLER, invite(1, None));
        let challenge = &out.first().expect("a challenge").1;
        assert_eq!(status(challenge), Some(407), "INVITE is challenged");
        let auth = Self::answer(challenge, "Proxy-Authenticate", "INVITE", &uri, "1000");
        let out = self.feed(CALLER, invite(2, Some(&auth)));
        let forked = out
            .iter()
            .find(|(port, m)| *port == 7001 && is_request(m, "INVITE"))
            .map(|(_, m)| m.clone())
            .expect("the callee is rung");
        assert!(
            out.iter()
                .any(|(port, m)| *port == 7000 && status(m) == Some(100)),
            "100 Trying to the caller"
        );
        let ringing = self.feed(CALLEE, Self::response(&forked, 180, "Ringing", i, ""));
        assert!(
            ringing.iter().any(|(_, m)| status(m) == Some(180)),
            "180 relayed"
        );
        let out = self.feed(CALLEE, Self::response(&forked, 200, "OK", i, ANSWER));
        let ok = out
            .iter()
            .find(|(port, m)| *port == 7000 && status(m) == Some(200))
            .map(|(_, m)| m.as_str())
            .expect("200 relayed to the caller");
        assert!(
            out.iter()
                .any(|(port, m)| *port == 7001 && is_request(m, "ACK")),
            "the callee's 200 is acknowledged"
        );
        let to_value = header(ok, "To").expect("To");
        assert!(to_value.len() <= to.capacity(), "room for the caller's To");
        to.clear();
        to.push_str(to_value);
        let ack = Self::in_dialog("ACK", 2, i, to);
        assert!(self.feed(CALLER, ack).is_empty(), "the ACK is absorbed");
    }

    /// The caller sends an INFO in call `i`; the callee answers it, and the
    /// answer is relayed back. Leaves a completed server and client
    /// transaction behind, waiting out timers J and K.
    fn info(&mut self, i: usize, to: &str) {
        let out = self.feed(CALLER, Self::in_dialog("INFO", 3, i, to));
        let info = out
            .iter()
            .find(|(port, m)| *port == 7001 && is_request(m, "INFO"))
            .map(|(_, m)| m.clone())
            .expect("INFO relayed to the callee");
        let out = self.feed(CALLEE, Self::response(&info, 200, "OK", i, ""));
        assert!(
            out.iter()
                .any(|(port, m)| *port == 7000 && status(m) == Some(200)),
            "the answer is relayed to the caller"
        );
    }

    /// The caller hangs up call `i`; the callee answers the BYE relayed to it.
    fn hang_up(&mut self, i: usize, to: &str) {
        let out = self.feed(CALLER, Self::in_dialog("BYE", 4, i, to));
        assert!(
            out.iter()
                .any(|(port, m)| *port == 7000 && status(m) == Some(200)),
            "the caller's BYE is answered"
        );
        let bye = out
            .iter()
            .find(|(port, m)| *port == 7001 && is_request(m, "BYE"))
            .map(|(_, m)| m.clone())
            .expect("BYE relayed to the callee");
        let out = self.feed(CALLEE, Self::response(&bye, 200, "OK", i, ""));
        assert!(out.is_empty(), "nothing more to send");
    }

    /// A request of the caller in call `i`'s dialog.
    fn in_dialog(method: &str, cseq: u32, i: usize, to: &str) -> String {
        format!(
            "{method} sip:pbx@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK{method}{i}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@{DOMAIN}>;tag=a{i}\r\nTo: {to}\r\nCall-ID: mem-call-{i}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// The callee's response to a request the host sent it.
    fn response(request: &str, code: u16, reason: &str, i: usize, sdp: &str) -> String {
        let mut s = format!("SIP/2.0 {code} {reason}\r\n");
        for v in headers(request, "Via") {
            s.push_str(&format!("Via: {v}\r\n"));
        }
        let to = header(request, "To").expect("To");
        let to = if to.contains(";tag=") {
            to.to_string()
        } else {
            format!("{to};tag=b{i}")
        };
        s.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:1001@{CALLEE}>\r\n{}Content-Length: {}\r\n\r\n{sdp}",
            header(request, "From").expect("From"),
            header(request, "Call-ID").expect("Call-ID"),
            header(request, "CSeq").expect("CSeq"),
            if sdp.is_empty() { "" } else { "Content-Type: application/sdp\r\n" },
            sdp.len(),
        ));
        s
    }
}

/// Drives `calls` calls and `registrations` registrations through one shard,
/// reading the heap with `probe` at each point of interest. With `stop_at`,
/// the run ends right after that reading and leaks everything, so a heap
/// profile taken at exit shows what was live there.
pub(crate) fn run(
    calls: usize,
    registrations: usize,
    stop_at: Option<&str>,
    probe: impl Fn() -> Heap,
) -> Report {
    let start = Instant::now();
    let shared: Arc<Shared> = Shared::new(
        CoreConfig::default(),
        directory(registrations),
        Vec::new(),
        (start, 1_700_000_000_000),
        1,
    );
    let mut d = Driver {
        shard: Shard::new(0, shared.clone()),
        now: start,
    };
    d.register("1001", CALLEE);
    // Warm up: one call through every state and its timers, so lazily grown
    // tables (the timer heap, the output queue) are not counted against the
    // first calls measured.
    let mut to: Vec<String> = (0..calls.max(1))
        .map(|_| String::with_capacity(160))
        .collect();
    d.call(usize::MAX, &mut to[0]);
    d.info(usize::MAX, &to[0]);
    d.hang_up(usize::MAX, &to[0]);
    let later = d.now + Duration::from_secs(400);
    d.run_until(later);
    assert_eq!(d.shard.active_calls(), 0, "warm-up call reaped");

    // Room for every reading now, so keeping them adds nothing to a reading.
    let mut readings = Vec::with_capacity(8);
    let tx = |d: &Driver| d.shard.transactions();
    let mut read = |label, base: Heap, per, unit, d: &Driver| {
        let (bytes, blocks) = probe().minus(base);
        readings.push(Reading {
            label,
            bytes,
            blocks,
            per,
            unit,
            transactions: tx(d),
        });
        stop_at == Some(label)
    };
    let report = |readings| Report {
        calls,
        registrations,
        readings,
    };

    let base = probe();
    for (i, to) in to.iter_mut().enumerate().take(calls) {
        d.call(i, to);
    }
    assert_eq!(d.shard.active_calls(), calls, "every call is up");
    if read(ANSWERED, base, calls, "call", &d) {
        std::mem::forget((d, to));
        return report(readings);
    }

    // Past Timer L and M (64*T1) the INVITE transactions are gone; the calls
    // stay up.
    let settled = d.now + Duration::from_secs(40);
    d.run_until(settled);
    assert_eq!(d.shard.active_calls(), calls, "calls still up");
    if read(SETTLED, base, calls, "call", &d) {
        std::mem::forget((d, to));
        return report(readings);
    }

    // One INFO relayed in each call: what the completed transactions add is
    // measured against the settled calls.
    let settled_heap = probe();
    for (i, to) in to.iter().enumerate().take(calls) {
        d.info(i, to);
    }
    let (servers, clients) = d.shard.transactions();
    assert_eq!(
        (servers, clients),
        (calls, calls),
        "INFO transactions completed"
    );
    if read(COMPLETED_TX, settled_heap, servers + clients, "tx", &d) {
        std::mem::forget((d, to));
        return report(readings);
    }

    // Past timers J and K the INFO transactions are gone; then every call
    // is hung up.
    let quiet = d.now + Duration::from_secs(40);
    d.run_until(quiet);
    assert_eq!(d.shard.transactions(), (0, 0), "INFO transactions ended");
    for (i, to) in to.iter().enumerate().take(calls) {
        d.hang_up(i, to);
    }
    if read(ENDED_CALL, base, calls, "call", &d) {
        std::mem::forget((d, to));
        return report(readings);
    }

    let later = d.now + Duration::from_secs(400);
    d.run_until(later);
    assert_eq!(d.shard.active_calls(), 0, "every call reaped");
    assert_eq!(d.shard.transactions(), (0, 0), "every transaction ended");
    if read(AFTER_TIMERS, base, calls, "call", &d) {
        std::mem::forget((d, to));
        return report(readings);
    }

    let base = probe();
    for n in 0..registrations {
        let user = (FIRST_PHONE + n as u32).to_string();
        let port = 10_000 + n;
        d.register(&user, &format!("127.0.0.1:{port}"));
    }
    if read(REGISTERED, base, registrations, "reg", &d) {
        std::mem::forget((d, to));
        return report(readings);
    }
    drop(to);
    report(readings)
}
