//! SRTP streams: G.711 A-law at 50 packets/s per leg, run by a few pacer
//! tasks. Every 20 ms a pacer takes each of its streams in turn: it reads what
//! the relay sent since the last tick (non-blocking, with the kernel's arrival
//! time stamp), authenticates, decrypts and counts it, then sends the stream's
//! next packet. No task wakes per packet.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webrtc_srtp::context::Context;

use crate::sdp::{Key, Suite};

/// Packet interval.
const PTIME: Duration = Duration::from_millis(20);
/// A-law samples (bytes) per packet.
const SAMPLES: usize = 160;
/// RTP payload type of PCMA.
const PCMA: u8 = 8;
/// Packets read from one stream's socket per tick at most (one is due).
const DRAIN: usize = 8;

/// Figures of one leg's stream, as the generator saw them.
#[derive(Debug, Clone, Default)]
pub(crate) struct LegStats {
    /// SRTP packets sent.
    pub(crate) sent: u64,
    /// Packets the socket refused (buffer full).
    pub(crate) send_errors: u64,
    /// Packets received that authenticated.
    pub(crate) received: u64,
    /// Packets missing from the received sequence numbers.
    pub(crate) lost: u64,
    /// Packets that failed SRTP authentication.
    pub(crate) auth_failures: u64,
    /// Authenticated packets whose SSRC is not the one the other end sent.
    pub(crate) other_ssrc: u64,
    /// RTCP packets received (ignored).
    pub(crate) rtcp: u64,
    /// RFC 3550 interarrival jitter at the end of the call, in ms.
    pub(crate) jitter_ms: Option<f64>,
}

/// One leg's UDP socket (non-blocking, receive times stamped by the kernel).
pub(crate) struct LegSocket {
    socket: UdpSocket,
    /// Its local address (for the SDP).
    pub(crate) local: SocketAddr,
}

impl LegSocket {
    /// A socket on `ip`, any port.
    pub(crate) fn bind(ip: IpAddr) -> anyhow::Result<LegSocket> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        socket.set_nonblocking(true)?;
        setsockopt(socket.as_raw_fd(), sockopt::ReceiveTimestampns, &true)?;
        let local = socket.local_addr()?;
        Ok(LegSocket { socket, local })
    }
}

/// Binds `addr` (non-blocking) for SIP: a tokio socket to receive, a clone to
/// send with, the address. Sending goes straight to the kernel: tokio's
/// `try_send_to` refuses to send on a socket whose write readiness its reactor
/// has not seen yet (a fresh one).
pub(crate) fn split_socket(
    addr: SocketAddr,
) -> std::io::Result<(tokio::net::UdpSocket, UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let send = socket.try_clone()?;
    let local = socket.local_addr()?;
    Ok((tokio::net::UdpSocket::from_std(socket)?, send, local))
}

/// One running leg: what it sends and what it receives, on its socket.
struct Leg {
    socket: UdpSocket,
    peer: SocketAddr,
    send_ctx: Context,
    recv_ctx: Context,
    ssrc: u32,
    peer_ssrc: u32,
    seq: u16,
    ts: u32,
    first: bool,
    pos: usize,
    reception: Reception,
}

impl Leg {
    /// Sends the next packet of `audio` (looped).
    fn send_one(&mut self, audio: &[u8]) {
        let mut pkt = Vec::with_capacity(12 + SAMPLES);
        pkt.push(0x80);
        pkt.push(if self.first { 0x80 | PCMA } else { PCMA });
        pkt.extend_from_slice(&self.seq.to_be_bytes());
        pkt.extend_from_slice(&self.ts.to_be_bytes());
        pkt.extend_from_slice(&self.ssrc.to_be_bytes());
        if self.pos + SAMPLES > audio.len() {
            self.pos = 0;
        }
        pkt.extend_from_slice(&audio[self.pos..self.pos + SAMPLES]);
        self.pos += SAMPLES;
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(SAMPLES as u32);
        let stats = &mut self.reception.stats;
        match self.send_ctx.encrypt_rtp(&pkt) {
            Ok(srtp) if self.socket.send_to(&srtp, self.peer).is_ok() => stats.sent += 1,
            _ => stats.send_errors += 1,
        }
    }

    /// Reads what has arrived (up to [`DRAIN`] packets) into the counts.
    fn drain(&mut self, buf: &mut [u8], start: std::time::SystemTime) {
        for _ in 0..DRAIN {
            let Some((n, at)) = recv_stamped(&self.socket, buf) else {
                return;
            };
            let arrival = at
                .and_then(|t| t.duration_since(start).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            self.take(&buf[..n], arrival);
        }
    }

    /// Counts one received datagram that arrived at `arrival` seconds.
    fn take(&mut self, pkt: &[u8], arrival: f64) {
        let r = &mut self.reception;
        if pkt.len() < 12 || pkt[0] >> 6 != 2 {
            return;
        }
        if (192..=223).contains(&pkt[1]) {
            r.stats.rtcp += 1;
            return;
        }
        match self.recv_ctx.decrypt_rtp(pkt) {
            Ok(plain) => {
                let seq = u16::from_be_bytes([plain[2], plain[3]]);
                let ts = u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]);
                let ssrc = u32::from_be_bytes([plain[8], plain[9], plain[10], plain[11]]);
                if ssrc != self.peer_ssrc {
                    r.stats.other_ssrc += 1;
                }
                r.packet(seq, ts, arrival);
            }
            Err(_) => r.stats.auth_failures += 1,
        }
    }
}

/// One datagram without blocking, with the kernel's receive time (`SO_TIMESTAMPNS`).
fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> Option<(usize, Option<std::time::SystemTime>)> {
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    let at = msg.cmsgs().find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(t) => Some(
            std::time::UNIX_EPOCH
                + Duration::new(t.tv_sec().max(0) as u64, t.tv_nsec().max(0) as u32),
        ),
        _ => None,
    });
    Some((msg.bytes, at))
}

enum Cmd {
    Add(u64, Box<Leg>),
    Remove(u64, oneshot::Sender<LegStats>),
}

/// The pacers.
pub(crate) struct Media {
    pacers: Vec<mpsc::UnboundedSender<Cmd>>,
}

impl Media {
    /// Starts `pacers` pacer tasks, their ticks spread over one packet interval.
    /// `audio` is raw A-law, looped (at least 160 bytes; silence when shorter).
    pub(crate) fn start(pacers: usize, audio: Vec<u8>) -> Media {
        let audio = std::sync::Arc::new(if audio.len() < SAMPLES {
            vec![0xD5; SAMPLES]
        } else {
            audio
        });
        let count = pacers.max(1);
        let pacers = (0..count)
            .map(|i| {
                let (tx, rx) = mpsc::unbounded_channel();
                let offset = PTIME * i as u32 / count as u32;
                tokio::spawn(pace(rx, offset, audio.clone()));
                tx
            })
            .collect();
        Media { pacers }
    }

    /// Starts stream `id` on `socket` towards `peer`: sends with SSRC `ssrc`
    /// under `key`, receives under `peer_key` expecting SSRC `peer_ssrc`, both
    /// in `suite`.
    #[allow(clippy::too_many_arguments)] // one stream's whole description
    pub(crate) fn stream(
        &self,
        id: u64,
        socket: LegSocket,
        peer: SocketAddr,
        ssrc: u32,
        key: &Key,
        peer_key: &Key,
        peer_ssrc: u32,
        suite: Suite,
    ) -> anyhow::Result<Stream> {
        let leg = Leg {
            socket: socket.socket,
            peer,
            send_ctx: context(key, suite)?,
            recv_ctx: context(peer_key, suite)?,
            ssrc,
            peer_ssrc,
            // Start values derived from the SSRC: fixed per stream, not all equal.
            seq: (ssrc.wrapping_mul(2_654_435_761) >> 16) as u16 & 0x7fff,
            ts: ssrc.wrapping_mul(40_503),
            first: true,
            pos: 0,
            reception: Reception::default(),
        };
        let pacer = self.pacers[(id / 2) as usize % self.pacers.len()].clone();
        let _ = pacer.send(Cmd::Add(id, Box::new(leg)));
        Ok(Stream { id, pacer })
    }
}

fn context(key: &Key, suite: Suite) -> anyhow::Result<Context> {
    Ok(Context::new(
        key.master(),
        key.salt(),
        suite.profile(),
        None,
        None,
    )?)
}

/// A running stream; [`Stream::stop`] ends it and gives its figures.
pub(crate) struct Stream {
    id: u64,
    pacer: mpsc::UnboundedSender<Cmd>,
}

impl Stream {
    /// Stops sending and receiving.
    pub(crate) async fn stop(self) -> LegStats {
        let (tx, rx) = oneshot::channel();
        let _ = self.pacer.send(Cmd::Remove(self.id, tx));
        rx.await.unwrap_or_default()
    }
}

async fn pace(
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    offset: Duration,
    audio: std::sync::Arc<Vec<u8>>,
) {
    let mut tick = tokio::time::interval_at(Instant::now() + offset, PTIME);
    let mut legs: HashMap<u64, Box<Leg>> = HashMap::new();
    let start = std::time::SystemTime::now();
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for leg in legs.values_mut() {
                    leg.drain(&mut buf, start);
                    leg.send_one(&audio);
                }
            }
            cmd = rx.recv() => match cmd {
                Some(Cmd::Add(id, leg)) => {
                    legs.insert(id, leg);
                }
                Some(Cmd::Remove(id, done)) => {
                    let stats = legs.remove(&id).map(|mut leg| {
                        leg.drain(&mut buf, start);
                        leg.reception.finish()
                    });
                    let _ = done.send(stats.unwrap_or_default());
                }
                None => break,
            },
        }
    }
}

/// Receive-side state of one stream (RFC 3550 A.1 and A.8, simplified).
#[derive(Default)]
struct Reception {
    stats: LegStats,
    first_seq: Option<i64>,
    max_seq: i64,
    jitter: f64,
    last: Option<(f64, u32)>,
}

impl Reception {
    /// Counts one authenticated packet arriving at `arrival` seconds.
    fn packet(&mut self, seq: u16, ts: u32, arrival: f64) {
        self.stats.received += 1;
        let ext = match self.first_seq {
            None => {
                self.first_seq = Some(seq as i64);
                self.max_seq = seq as i64;
                seq as i64
            }
            Some(_) => {
                let delta = (seq.wrapping_sub(self.max_seq as u16) as i16) as i64;
                self.max_seq + delta
            }
        };
        self.max_seq = self.max_seq.max(ext);
        if let Some((t0, ts0)) = self.last {
            let d = (arrival - t0) * 8000.0 - ts.wrapping_sub(ts0) as i32 as f64;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last = Some((arrival, ts));
    }

    fn finish(mut self) -> LegStats {
        if let Some(first) = self.first_seq {
            let expected = (self.max_seq - first + 1) as u64;
            self.stats.lost = expected.saturating_sub(self.stats.received);
            self.stats.jitter_ms = Some(self.jitter / 8.0);
        }
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_jitter_of_a_sequence() {
        let mut r = Reception::default();
        // 65534, 65535, (0 lost), 1, 2 across the wrap; steady 20 ms spacing
        for (i, seq) in [65534u16, 65535, 1, 2].into_iter().enumerate() {
            let k = if i >= 2 { i + 1 } else { i } as u32;
            r.packet(seq, k * 160, k as f64 * 0.02);
        }
        let s = r.finish();
        assert_eq!(s.received, 4);
        assert_eq!(s.lost, 1);
        assert!(s.jitter_ms.unwrap() < 1e-6);
    }

    #[test]
    fn protected_packets_round_trip() {
        let key = Key::generate();
        let mut tx = context(&key, Suite::Sha1_80).unwrap();
        let mut rx = context(&key, Suite::Sha1_80).unwrap();
        let mut pkt = vec![0x80, PCMA, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        pkt.extend_from_slice(&[0xD5; SAMPLES]);
        let srtp = tx.encrypt_rtp(&pkt).unwrap();
        assert_eq!(srtp.len(), pkt.len() + 10);
        assert_eq!(&srtp[..12], &pkt[..12], "the header stays in clear");
        assert_eq!(&rx.decrypt_rtp(&srtp).unwrap()[..], &pkt[..]);
        let mut other = context(&Key::generate(), Suite::Sha1_80).unwrap();
        assert!(other.decrypt_rtp(&srtp).is_err());
    }
}
