//! A client and a server transaction joined by a simulated lossy link, driven to
//! completion by jumping a virtual clock to the next timer or arrival.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{
    ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, TimerEvent, Timers, Transaction,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// One-way latency and a loss pattern: in each direction, every second packet is lost
/// (the first one when `drop_first`, else the second one).
struct Link {
    latency: Duration,
    drop_first: bool,
    /// Lose everything.
    dead: bool,
    sent: [u64; 2],
    dropped: u64,
    in_flight: Vec<(Instant, Dir, Bytes)>,
}

impl Link {
    fn new(drop_first: bool) -> Self {
        Self {
            latency: Duration::from_millis(10),
            drop_first,
            dead: false,
            sent: [0; 2],
            dropped: 0,
            in_flight: Vec::new(),
        }
    }

    fn send(&mut self, now: Instant, dir: Dir, bytes: Bytes) {
        let n = &mut self.sent[dir as usize];
        *n += 1;
        let odd = *n % 2 == 1;
        if self.dead || odd == self.drop_first {
            self.dropped += 1;
        } else {
            self.in_flight.push((now + self.latency, dir, bytes));
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(at, _, _)| *at).min()
    }

    fn take_arrived(&mut self, now: Instant) -> Vec<(Dir, Bytes)> {
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.in_flight = rest;
        due.into_iter()
            .map(|(_, dir, bytes)| (dir, bytes))
            .collect()
    }
}

/// Both ends plus minimal TUs. Requests on the wire are `INVITE`, `ACK` or `OPTIONS`;
/// responses are their status code in ASCII.
struct Pair {
    now: Instant,
    link: Link,
    reliable: bool,
    timers: Timers,
    client: Transaction,
    server: Option<Transaction>,
    /// The server TU answers every new request with a 100 and then this status.
    answer: u16,
    /// The UAS core retransmits a 2xx to INVITE itself until the ACK (§13.3.1.4).
    uas_2xx: Option<(Instant, Duration)>,
    client_tu: Vec<u16>,
    server_tu_requests: usize,
    server_tu_acks: usize,
    timed_out: usize,
}

fn status_bytes(status: u16) -> Bytes {
    Bytes::from(status.to_string())
}

impl Pair {
    fn new(invite: bool, answer: u16, drop_first: bool) -> Self {
        let now = Instant::now();
        let timers = Timers::default();
        let mut link = Link::new(drop_first);
        let (client, first) = if invite {
            let (tx, first) = ClientInvite::new(now, Bytes::from_static(b"INVITE"), false, timers);
            (Transaction::ClientInvite(tx), first)
        } else {
            let (tx, first) =
                ClientNonInvite::new(now, Bytes::from_static(b"OPTIONS"), false, timers);
            (Transaction::ClientNonInvite(tx), first)
        };
        link.send(now, Dir::ToServer, first);
        Self {
            now,
            link,
            reliable: false,
            timers,
            client,
            server: None,
            answer,
            uas_2xx: None,
            client_tu: Vec::new(),
            server_tu_requests: 0,
            server_tu_acks: 0,
            timed_out: 0,
        }
    }

    fn next_event(&self) -> Option<Instant> {
        [
            self.link.next_arrival(),
            self.client.poll_timeout(),
            self.server.as_ref().and_then(Transaction::poll_timeout),
            self.uas_2xx.map(|(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs until nothing is left to happen; returns the virtual time taken.
    fn drive(&mut self) -> Duration {
        let start = self.now;
        for _ in 0..10_000 {
            let Some(next) = self.next_event() else {
                return self.now - start;
            };
            self.now = self.now.max(next);
            for (dir, bytes) in self.link.take_arrived(self.now) {
                match dir {
                    Dir::ToServer => self.server_receives(&bytes),
                    Dir::ToClient => self.client_receives(&bytes),
                }
            }
            self.run_timers();
        }
        panic!("the pair did not settle");
    }

    fn run_timers(&mut self) {
        let now = self.now;
        match self.client.handle_timeout(now) {
            Some(TimerEvent::Retransmit(bytes)) => self.link.send(now, Dir::ToServer, bytes),
            Some(TimerEvent::TimedOut) => self.timed_out += 1,
            Some(TimerEvent::Terminated) | None => {}
        }
        if let Some(server) = &mut self.server {
            match server.handle_timeout(now) {
                Some(TimerEvent::Retransmit(bytes)) => self.link.send(now, Dir::ToClient, bytes),
                Some(TimerEvent::TimedOut) => self.timed_out += 1,
                Some(TimerEvent::Terminated) | None => {}
            }
            if server.is_terminated() {
                self.uas_2xx = None;
            }
        }
        if let Some((at, interval)) = self.uas_2xx
            && at <= now
        {
            self.link
                .send(now, Dir::ToClient, status_bytes(self.answer));
            let interval = (interval * 2).min(self.timers.t2);
            self.uas_2xx = Some((now + interval, interval));
        }
    }

    fn server_receives(&mut self, bytes: &[u8]) {
        let now = self.now;
        let reliable = self.reliable;
        let timers = self.timers;
        match (bytes, &mut self.server) {
            (b"ACK", Some(Transaction::ServerInvite(tx))) => {
                if tx.on_ack(now) {
                    self.server_tu_acks += 1;
                    self.uas_2xx = None;
                }
            }
            (_, Some(Transaction::ServerInvite(tx))) => {
                if let Some(resend) = tx.on_request_retransmission(now) {
                    self.link.send(now, Dir::ToClient, resend);
                }
            }
            (_, Some(Transaction::ServerNonInvite(tx))) => {
                if let Some(resend) = tx.on_request_retransmission(now) {
                    self.link.send(now, Dir::ToClient, resend);
                }
            }
            (b"INVITE", None) => {
                self.server_tu_requests += 1;
                let mut tx = ServerInvite::new(now, reliable, timers);
                for status in [100, self.answer] {
                    let out = tx.send_response(now, status, status_bytes(status));
                    self.link
                        .send(now, Dir::ToClient, out.expect("allowed response"));
                }
                if (200..300).contains(&self.answer) {
                    self.uas_2xx = Some((now + timers.t1, timers.t1));
                }
                self.server = Some(Transaction::ServerInvite(tx));
            }
            (b"OPTIONS", None) => {
                self.server_tu_requests += 1;
                let mut tx = ServerNonInvite::new(now, reliable, timers);
                for status in [100, self.answer] {
                    let out = tx.send_response(now, status, status_bytes(status));
                    self.link
                        .send(now, Dir::ToClient, out.expect("allowed response"));
                }
                self.server = Some(Transaction::ServerNonInvite(tx));
            }
            (other, _) => panic!("unexpected request {other:?}"),
        }
    }

    fn client_receives(&mut self, bytes: &[u8]) {
        let now = self.now;
        let status: u16 = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        match &mut self.client {
            Transaction::ClientInvite(tx) => {
                let action = tx.on_response(now, status, || Bytes::from_static(b"ACK"));
                if action.pass_to_tu {
                    self.client_tu.push(status);
                    if (200..300).contains(&status) {
                        // The UAC core ACKs every 2xx it is given (§13.2.2.4).
                        self.link
                            .send(now, Dir::ToServer, Bytes::from_static(b"ACK"));
                    }
                }
                if let Some(ack) = action.transmit {
                    self.link.send(now, Dir::ToServer, ack);
                }
            }
            Transaction::ClientNonInvite(tx) => {
                if tx.on_response(now, status) {
                    self.client_tu.push(status);
                }
            }
            _ => panic!("the client end holds a client transaction"),
        }
    }

    fn finals_seen_by_client(&self) -> Vec<u16> {
        self.client_tu
            .iter()
            .copied()
            .filter(|s| *s >= 200)
            .collect()
    }
}

#[test]
fn rejected_invite_completes_over_a_lossy_link() {
    for drop_first in [false, true] {
        let mut pair = Pair::new(true, 486, drop_first);
        let took = pair.drive();
        assert!(pair.link.dropped >= 2, "drop_first={drop_first}");
        assert!(pair.client.is_terminated());
        assert!(pair.server.as_ref().is_some_and(Transaction::is_terminated));
        assert_eq!(pair.timed_out, 0, "the ACK got through before timer H");
        assert_eq!(
            pair.server_tu_requests, 1,
            "INVITE retransmissions absorbed"
        );
        assert_eq!(
            pair.finals_seen_by_client(),
            [486],
            "486 retransmissions absorbed"
        );
        // Timer D (32 s) on the client is the last to fire.
        assert!(
            took >= Duration::from_secs(32) && took < Duration::from_secs(34),
            "{took:?}"
        );
    }
}

#[test]
fn accepted_invite_completes_over_a_lossy_link() {
    for drop_first in [false, true] {
        let mut pair = Pair::new(true, 200, drop_first);
        pair.drive();
        assert!(pair.link.dropped >= 2);
        assert!(pair.client.is_terminated());
        assert!(pair.server.as_ref().is_some_and(Transaction::is_terminated));
        assert_eq!(pair.timed_out, 0);
        assert_eq!(pair.server_tu_requests, 1);
        // 2xx retransmissions reach the client TU, which ACKs each; at least one ACK
        // reached the server TU and stopped the UAS core's retransmissions.
        assert!(!pair.finals_seen_by_client().is_empty());
        assert!(pair.finals_seen_by_client().iter().all(|s| *s == 200));
        assert!(pair.server_tu_acks >= 1);
        assert_eq!(pair.uas_2xx, None);
    }
}

#[test]
fn non_invite_completes_over_a_lossy_link() {
    for drop_first in [false, true] {
        let mut pair = Pair::new(false, 200, drop_first);
        pair.drive();
        assert!(pair.link.dropped >= 1);
        assert!(pair.client.is_terminated());
        assert!(pair.server.as_ref().is_some_and(Transaction::is_terminated));
        assert_eq!(pair.timed_out, 0);
        assert_eq!(
            pair.server_tu_requests, 1,
            "request retransmissions absorbed"
        );
        assert_eq!(
            pair.finals_seen_by_client(),
            [200],
            "exactly one final passed up"
        );
    }
}

#[test]
fn a_dead_link_times_the_client_out() {
    let mut pair = Pair::new(true, 486, false);
    pair.link.dead = true;
    pair.link.in_flight.clear();
    let took = pair.drive();
    // The first INVITE was taken off the wire by hand; timer A's six retransmissions
    // are all lost; then timer B.
    assert_eq!(pair.link.dropped, 6);
    assert_eq!(pair.timed_out, 1);
    assert!(pair.client.is_terminated());
    assert!(pair.server.is_none());
    assert_eq!(took, Duration::from_secs(32));
}
