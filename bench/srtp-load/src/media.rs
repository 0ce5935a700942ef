//! SRTP streams: G.711 A-law at 50 packets/s per leg, sent by a few pacer tasks
//! (each ticks every 20 ms and sends one packet for each of its streams), and
//! received by one task per leg that authenticates, decrypts and counts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webrtc_srtp::context::Context;

use crate::sdp::{Key, Suite};

/// Packet interval.
pub(crate) const PTIME: Duration = Duration::from_millis(20);
/// A-law samples (bytes) per packet.
const SAMPLES: usize = 160;
/// RTP payload type of PCMA.
const PCMA: u8 = 8;

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

enum Cmd {
    Add(u64, Box<Sender>),
    Remove(u64, oneshot::Sender<(u64, u64)>),
}

/// The pacers and the audio they send.
pub(crate) struct Media {
    pacers: Vec<mpsc::UnboundedSender<Cmd>>,
    audio: Arc<Vec<u8>>,
}

/// One leg's UDP socket: a tokio handle to receive, a plain one to send.
///
/// Sending goes straight to the kernel: tokio's `try_send_to` refuses to send
/// on a socket whose write readiness the reactor has not seen yet (a fresh one).
pub(crate) struct LegSocket {
    recv: UdpSocket,
    send: std::net::UdpSocket,
    /// Its local address (for the SDP).
    pub(crate) local: SocketAddr,
}

impl LegSocket {
    /// A non-blocking socket on `ip`, any port.
    pub(crate) fn bind(ip: IpAddr) -> std::io::Result<LegSocket> {
        let (recv, send, local) = split_socket(SocketAddr::new(ip, 0))?;
        Ok(LegSocket { recv, send, local })
    }
}

/// Binds `addr` (non-blocking): a tokio socket to receive, a clone to send, the address.
pub(crate) fn split_socket(
    addr: SocketAddr,
) -> std::io::Result<(UdpSocket, std::net::UdpSocket, SocketAddr)> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let send = socket.try_clone()?;
    let local = socket.local_addr()?;
    Ok((UdpSocket::from_std(socket)?, send, local))
}

/// What a leg sends: its socket, the relay's address, its SRTP context.
struct Sender {
    socket: std::net::UdpSocket,
    peer: SocketAddr,
    ctx: Context,
    ssrc: u32,
    seq: u16,
    ts: u32,
    first: bool,
    sent: u64,
    errors: u64,
    audio: Arc<Vec<u8>>,
    pos: usize,
}

impl Sender {
    fn send_one(&mut self) {
        let mut pkt = Vec::with_capacity(12 + SAMPLES);
        pkt.push(0x80);
        pkt.push(if self.first { 0x80 | PCMA } else { PCMA });
        pkt.extend_from_slice(&self.seq.to_be_bytes());
        pkt.extend_from_slice(&self.ts.to_be_bytes());
        pkt.extend_from_slice(&self.ssrc.to_be_bytes());
        if self.pos + SAMPLES > self.audio.len() {
            self.pos = 0;
        }
        pkt.extend_from_slice(&self.audio[self.pos..self.pos + SAMPLES]);
        self.pos += SAMPLES;
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(SAMPLES as u32);
        match self.ctx.encrypt_rtp(&pkt) {
            Ok(srtp) if self.socket.send_to(&srtp, self.peer).is_ok() => self.sent += 1,
            _ => self.errors += 1,
        }
    }
}

impl Media {
    /// Starts `pacers` pacer tasks, their ticks spread over one packet interval.
    /// `audio` is raw A-law, looped (at least 160 bytes; silence when empty).
    pub(crate) fn start(pacers: usize, audio: Vec<u8>) -> Media {
        let audio = Arc::new(if audio.len() < SAMPLES {
            vec![0xD5; SAMPLES]
        } else {
            audio
        });
        let pacers = (0..pacers.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::unbounded_channel();
                let offset = PTIME * i as u32 / pacers.max(1) as u32;
                tokio::spawn(pace(rx, offset));
                tx
            })
            .collect();
        Media { pacers, audio }
    }

    /// Starts stream `id` from `socket` to `peer`: sends with SSRC `ssrc`
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
        let receive_ctx = context(peer_key, suite)?;
        let sender = Sender {
            socket: socket.send,
            peer,
            ctx: context(key, suite)?,
            ssrc,
            // Start values derived from the SSRC: fixed per stream, not all equal.
            seq: (ssrc.wrapping_mul(2_654_435_761) >> 16) as u16 & 0x7fff,
            ts: ssrc.wrapping_mul(40_503),
            first: true,
            sent: 0,
            errors: 0,
            audio: self.audio.clone(),
            pos: 0,
        };
        let pacer = self.pacers[id as usize % self.pacers.len()].clone();
        let _ = pacer.send(Cmd::Add(id, Box::new(sender)));
        let (stop, stopped) = oneshot::channel();
        let receiver = tokio::spawn(receive(socket.recv, receive_ctx, peer_ssrc, stopped));
        Ok(Stream {
            id,
            pacer,
            stop,
            receiver,
        })
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
    stop: oneshot::Sender<()>,
    receiver: tokio::task::JoinHandle<LegStats>,
}

impl Stream {
    /// Stops sending and receiving.
    pub(crate) async fn stop(self) -> LegStats {
        let (tx, rx) = oneshot::channel();
        let _ = self.pacer.send(Cmd::Remove(self.id, tx));
        let (sent, errors) = rx.await.unwrap_or_default();
        let _ = self.stop.send(());
        let mut stats = self.receiver.await.unwrap_or_default();
        stats.sent = sent;
        stats.send_errors = errors;
        stats
    }
}

async fn pace(mut rx: mpsc::UnboundedReceiver<Cmd>, offset: Duration) {
    let mut tick = tokio::time::interval_at(Instant::now() + offset, PTIME);
    let mut streams: HashMap<u64, Box<Sender>> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for s in streams.values_mut() {
                    s.send_one();
                }
            }
            cmd = rx.recv() => match cmd {
                Some(Cmd::Add(id, s)) => {
                    streams.insert(id, s);
                }
                Some(Cmd::Remove(id, done)) => {
                    let figures = streams.remove(&id).map(|s| (s.sent, s.errors));
                    let _ = done.send(figures.unwrap_or_default());
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

async fn receive(
    socket: UdpSocket,
    mut ctx: Context,
    peer_ssrc: u32,
    mut stop: oneshot::Receiver<()>,
) -> LegStats {
    let start = Instant::now();
    let mut r = Reception::default();
    let mut buf = vec![0u8; 2048];
    loop {
        let n = tokio::select! {
            _ = &mut stop => break,
            got = socket.recv_from(&mut buf) => match got {
                Ok((n, _)) => n,
                Err(_) => continue,
            },
        };
        let arrival = start.elapsed().as_secs_f64();
        let pkt = &buf[..n];
        if n < 12 || pkt[0] >> 6 != 2 {
            continue;
        }
        if (192..=223).contains(&pkt[1]) {
            r.stats.rtcp += 1;
            continue;
        }
        match ctx.decrypt_rtp(pkt) {
            Ok(plain) => {
                let seq = u16::from_be_bytes([plain[2], plain[3]]);
                let ts = u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]);
                let ssrc = u32::from_be_bytes([plain[8], plain[9], plain[10], plain[11]]);
                if ssrc != peer_ssrc {
                    r.stats.other_ssrc += 1;
                }
                r.packet(seq, ts, arrival);
            }
            Err(_) => r.stats.auth_failures += 1,
        }
    }
    r.finish()
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
