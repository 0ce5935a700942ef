//! The tokio layer: a port pool, one task per call that moves datagrams between
//! the call's four sockets through its [`MediaSession`], and idle reporting.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::rtp::Channel;
use crate::session::{CallMediaStats, EncryptionPolicy, Leg, LocalPorts, MediaSession, Security};

/// Relay configuration, parsed once at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Address the media sockets bind to.
    pub bind_ip: IpAddr,
    /// Address put in SDP; defaults to `bind_ip`, required when that is unspecified.
    pub advertise_ip: Option<IpAddr>,
    /// Lowest port of the range (inclusive).
    pub port_min: u16,
    /// Highest port of the range (inclusive).
    pub port_max: u16,
    /// A call with no media for this long is reported idle.
    pub idle_timeout: Duration,
}

/// Identifies a call within one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Something the owner of the relay should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No media arrived on the call since `since` for at least the idle timeout;
    /// the owner usually hangs the call up. Reported once per idle period.
    Idle {
        /// The call.
        call: CallId,
        /// When media last arrived.
        since: Instant,
    },
}

struct Pool {
    free: Mutex<VecDeque<u16>>,
}

/// One reserved RTP/RTCP port pair; returns to the pool when dropped.
struct PortPair {
    rtp: u16,
    pool: Arc<Pool>,
}

impl Drop for PortPair {
    fn drop(&mut self) {
        self.pool.free.lock().push_back(self.rtp);
    }
}

struct RelayInner {
    config: MediaConfig,
    advertise: IpAddr,
    pool: Arc<Pool>,
    next_id: AtomicU64,
    events: mpsc::UnboundedSender<MediaEvent>,
}

/// Owns the media port range and opens calls.
#[derive(Clone)]
pub struct MediaRelay {
    inner: Arc<RelayInner>,
}

impl std::fmt::Debug for MediaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRelay")
            .field("config", &self.inner.config)
            .field("free_port_pairs", &self.free_port_pairs())
            .finish()
    }
}

impl MediaRelay {
    /// A relay over `config`'s port range, and the receiver of its events.
    pub fn new(config: MediaConfig) -> Result<(Self, mpsc::UnboundedReceiver<MediaEvent>)> {
        let advertise = config.advertise_ip.unwrap_or(config.bind_ip);
        if advertise.is_unspecified() {
            return Err(Error::Config(
                "advertise_ip is needed when bind_ip is unspecified",
            ));
        }
        if config.port_min == 0 || config.port_max <= config.port_min {
            return Err(Error::Config("port range must be non-empty and above 0"));
        }
        if config.idle_timeout.is_zero() {
            return Err(Error::Config("idle_timeout must be positive"));
        }
        let first = config.port_min + config.port_min % 2;
        let free: VecDeque<u16> = (first..config.port_max).step_by(2).collect();
        if free.is_empty() {
            return Err(Error::Config("port range holds no even/odd pair"));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = RelayInner {
            config,
            advertise,
            pool: Arc::new(Pool {
                free: Mutex::new(free),
            }),
            next_id: AtomicU64::new(1),
            events: tx,
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    /// Port pairs currently free.
    pub fn free_port_pairs(&self) -> usize {
        self.inner.pool.free.lock().len()
    }

    fn allocate(&self) -> Result<(PortPair, [UdpSocket; 2])> {
        let ip = self.inner.config.bind_ip;
        let tries = self.free_port_pairs();
        for _ in 0..tries {
            let Some(port) = self.inner.pool.free.lock().pop_front() else {
                break;
            };
            let pair = PortPair {
                rtp: port,
                pool: self.inner.pool.clone(),
            };
            // A port taken by another process is skipped and retried later.
            if let Ok(sockets) = bind_pair(ip, port) {
                return Ok((pair, sockets));
            }
        }
        Err(Error::PortsExhausted)
    }

    /// Opens a call: reserves a port pair per leg and starts its relay task.
    /// Must be called within a tokio runtime.
    pub fn open_call(&self) -> Result<CallMedia> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("open_call needs a tokio runtime"))?;
        let (pa, sa) = self.allocate()?;
        let (pb, sb) = self.allocate()?;
        let local = LocalPorts {
            ip: self.inner.advertise,
            a: pa.rtp,
            b: pb.rtp,
        };
        let id = CallId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let now = tokio::time::Instant::now().into_std();
        let session = Arc::new(Mutex::new(MediaSession::new(local, now)));
        let task = runtime.spawn(run_call(CallTask {
            id,
            session: session.clone(),
            sockets: [sa, sb],
            idle_timeout: self.inner.config.idle_timeout,
            events: self.inner.events.clone(),
            _ports: [pa, pb],
        }));
        Ok(CallMedia { id, session, task })
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> Result<[UdpSocket; 2]> {
    let bind = |p: u16| -> Result<UdpSocket> {
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, p))?;
        s.set_nonblocking(true)?;
        Ok(UdpSocket::from_std(s)?)
    };
    let rtp = bind(port)?;
    let rtcp = bind(port.checked_add(1).ok_or(Error::PortsExhausted)?)?;
    Ok([rtp, rtcp])
}

/// The media of one call. Dropping it (or [`CallMedia::close`]) stops the relay
/// task; the ports return to the pool once the task has ended.
pub struct CallMedia {
    id: CallId,
    session: Arc<Mutex<MediaSession>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl CallMedia {
    /// The call's id (as reported in [`MediaEvent`]s).
    pub fn id(&self) -> CallId {
        self.id
    }

    /// Our address and the ports facing each leg.
    pub fn local(&self) -> LocalPorts {
        self.session.lock().local()
    }

    /// See [`MediaSession::offer_from`].
    pub fn offer_from(
        &self,
        leg: Leg,
        sdp: &[u8],
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        self.session.lock().offer_from(leg, sdp, security, policy)
    }

    /// See [`MediaSession::answer_from`].
    pub fn answer_from(
        &self,
        leg: Leg,
        sdp: &[u8],
        security: Security,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        self.session.lock().answer_from(leg, sdp, security, policy)
    }

    /// See [`MediaSession::answer_here`].
    pub fn answer_here(
        &self,
        leg: Leg,
        sdp: &[u8],
        from_secure: bool,
        policy: EncryptionPolicy,
    ) -> Result<Vec<u8>> {
        self.session
            .lock()
            .answer_here(leg, sdp, from_secure, policy)
    }

    /// Counters of both legs.
    pub fn stats(&self) -> CallMediaStats {
        self.session.lock().stats()
    }

    /// When media last arrived.
    pub fn idle_since(&self) -> Instant {
        self.session.lock().idle_since()
    }

    /// Stops relaying and frees the ports.
    pub fn close(self) {}
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct CallTask {
    id: CallId,
    session: Arc<Mutex<MediaSession>>,
    sockets: [[UdpSocket; 2]; 2],
    idle_timeout: Duration,
    events: mpsc::UnboundedSender<MediaEvent>,
    // Dropped after the sockets (field order), so a freed port is closed.
    _ports: [PortPair; 2],
}

const BUF: usize = 2048;

async fn run_call(task: CallTask) {
    let [[a_rtp, a_rtcp], [b_rtp, b_rtcp]] = &task.sockets;
    let (mut b0, mut b1, mut b2, mut b3) = ([0u8; BUF], [0u8; BUF], [0u8; BUF], [0u8; BUF]);
    let mut reported: Option<Instant> = None;
    loop {
        let since = task.session.lock().idle_since();
        let armed = reported != Some(since);
        let deadline = tokio::time::Instant::from_std(since) + task.idle_timeout;
        let (leg, channel, res) = tokio::select! {
            r = a_rtp.recv_from(&mut b0) => (Leg::A, Channel::Rtp, r.map(|(n, f)| (&b0[..n], f))),
            r = a_rtcp.recv_from(&mut b1) => (Leg::A, Channel::Rtcp, r.map(|(n, f)| (&b1[..n], f))),
            r = b_rtp.recv_from(&mut b2) => (Leg::B, Channel::Rtp, r.map(|(n, f)| (&b2[..n], f))),
            r = b_rtcp.recv_from(&mut b3) => (Leg::B, Channel::Rtcp, r.map(|(n, f)| (&b3[..n], f))),
            () = tokio::time::sleep_until(deadline), if armed => {
                reported = Some(since);
                let event = MediaEvent::Idle { call: task.id, since };
                if task.events.send(event).is_err() {
                    tracing::debug!(call = task.id.0, "media event receiver gone");
                }
                continue;
            }
        };
        // Receive errors on UDP (e.g. ICMP port unreachable surfaced) are not fatal.
        let Ok((data, from)) = res else { continue };
        let now = tokio::time::Instant::now().into_std();
        let out = task.session.lock().handle(now, leg, channel, from, data);
        if let Some(t) = out {
            let socket = &task.sockets[usize::from(t.leg == Leg::B)]
                [usize::from(t.channel == Channel::Rtcp)];
            if let Err(e) = socket.send_to(&t.data, t.to).await {
                tracing::debug!(call = task.id.0, error = %e, "media send failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdes::{self, KeyMaterial};
    use crate::sdp::Sdp;
    use crate::srtp::{SrtpReceiver, SrtpSender};

    fn config(port_min: u16, port_max: u16) -> MediaConfig {
        MediaConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            advertise_ip: None,
            port_min,
            port_max,
            idle_timeout: Duration::from_secs(30),
        }
    }

    fn sdp(port: u16, proto: &str, crypto: Option<String>) -> Vec<u8> {
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        if let Some(c) = crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        s.into_bytes()
    }

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0x55; 160]);
        p
    }

    async fn recv(sock: &UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("datagram expected")
            .unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn config_is_checked() {
        let mut c = config(21000, 21001);
        c.bind_ip = "0.0.0.0".parse().unwrap();
        assert!(matches!(MediaRelay::new(c), Err(Error::Config(_))));
        assert!(matches!(
            MediaRelay::new(config(21001, 21002)),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            MediaRelay::new(config(21010, 21000)),
            Err(Error::Config(_))
        ));
        let (relay, _rx) = MediaRelay::new(config(21001, 21006)).unwrap();
        assert_eq!(relay.free_port_pairs(), 2); // 21002 and 21004
        assert!(
            matches!(relay.open_call(), Err(Error::Config(_))),
            "no runtime"
        );
    }

    #[tokio::test]
    async fn ports_are_reused_and_exhaustion_is_an_error() {
        let (relay, _events) = MediaRelay::new(config(21100, 21107)).unwrap();
        assert_eq!(relay.free_port_pairs(), 4);
        for _ in 0..50 {
            let c1 = relay.open_call().unwrap();
            let c2 = relay.open_call().unwrap();
            assert!(matches!(relay.open_call(), Err(Error::PortsExhausted)));
            let l = c1.local();
            assert!(l.a % 2 == 0 && l.b % 2 == 0 && l.a != l.b);
            c1.close();
            drop(c2);
            for _ in 0..100 {
                if relay.free_port_pairs() == 4 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(relay.free_port_pairs(), 4);
        }
    }

    #[tokio::test]
    async fn plain_leg_a_to_srtp_leg_b_end_to_end() {
        let (relay, _events) = MediaRelay::new(config(21200, 21299)).unwrap();
        let call = relay.open_call().unwrap();
        let local = call.local();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a_port = a.local_addr().unwrap().port();
        let b_port = b.local_addr().unwrap().port();

        // A is plain on an insecure transport; B is reached over TLS.
        let to_b = call
            .offer_from(
                Leg::A,
                &sdp(a_port, "RTP/AVP", None),
                Security {
                    from_secure: false,
                    to_secure: true,
                },
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let offer_b = Sdp::parse(&to_b).unwrap();
        assert_eq!(offer_b.media[0].port, local.b);
        let line = offer_b.media[0]
            .cryptos()
            .into_iter()
            .find(|c| c.suite == "AES_CM_128_HMAC_SHA1_80")
            .unwrap();
        let relay_to_b = sdes::negotiate(std::slice::from_ref(&line))
            .unwrap()
            .unwrap()
            .remote;
        let b_key = KeyMaterial::generate(crate::Suite::AesCm128HmacSha1_80);
        let to_a = call
            .answer_from(
                Leg::B,
                &sdp(b_port, "RTP/AVP", Some(b_key.to_attr(line.tag).to_value())),
                Security {
                    from_secure: true,
                    to_secure: false,
                },
                EncryptionPolicy::Optional,
            )
            .unwrap();
        let answer_a = Sdp::parse(&to_a).unwrap();
        assert_eq!(answer_a.media[0].port, local.a);
        assert!(
            answer_a.media[0].cryptos().is_empty(),
            "no keys to the plain leg"
        );

        let mut b_tx = SrtpSender::new(&b_key).unwrap();
        let mut b_rx = SrtpReceiver::new(&relay_to_b).unwrap();
        let relay_a = SocketAddr::new(local.ip, local.a);
        let relay_b = SocketAddr::new(local.ip, local.b);
        for seq in [1u16, 2, 4] {
            a.send_to(&rtp(0xaaaa, seq), relay_a).await.unwrap();
            let got = recv(&b).await;
            assert_ne!(got, rtp(0xaaaa, seq), "B must get SRTP");
            let plain = b_rx
                .unprotect(Channel::Rtp, &got)
                .expect("decrypts with B's key");
            assert_eq!(&plain[..], &rtp(0xaaaa, seq)[..]);

            let enc = b_tx.protect(Channel::Rtp, &rtp(0xbbbb, seq)).unwrap();
            b.send_to(&enc, relay_b).await.unwrap();
            assert_eq!(recv(&a).await, rtp(0xbbbb, seq));
        }
        // A forged packet towards B's port is dropped and counted.
        let mut forged = b_tx
            .protect(Channel::Rtp, &rtp(0xbbbb, 5))
            .unwrap()
            .to_vec();
        forged[30] ^= 1;
        b.send_to(&forged, relay_b).await.unwrap();
        // A marker packet after it shows the relay has processed the forged one.
        let enc = b_tx.protect(Channel::Rtp, &rtp(0xbbbb, 6)).unwrap();
        b.send_to(&enc, relay_b).await.unwrap();
        assert_eq!(recv(&a).await, rtp(0xbbbb, 6));

        let st = call.stats();
        assert_eq!(st.a.packets_in, 3);
        assert_eq!(st.a.bytes_in, 3 * 172);
        assert_eq!(st.b.packets_out, 3);
        assert_eq!(st.b.bytes_out, 3 * (172 + 10));
        assert_eq!(st.b.packets_in, 5);
        assert_eq!(st.a.packets_out, 4);
        assert_eq!(st.b.srtp_auth_failures, 1);
        assert_eq!(st.a.packets_lost, 1);
        assert_eq!(st.b.packets_lost, 2, "3 and the forged 5");
        assert_eq!(st.a.latched, Some(a.local_addr().unwrap()));
        assert!(st.b.srtp && !st.a.srtp);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_call_is_reported_once() {
        let (relay, mut events) = MediaRelay::new(config(21300, 21309)).unwrap();
        let call = relay.open_call().unwrap();
        let opened = tokio::time::Instant::now();
        call.offer_from(
            Leg::A,
            &sdp(4000, "RTP/AVP", None),
            Security {
                from_secure: false,
                to_secure: false,
            },
            EncryptionPolicy::Optional,
        )
        .unwrap();
        let event = events.recv().await.unwrap();
        assert_eq!(
            event,
            MediaEvent::Idle {
                call: call.id(),
                since: call.idle_since()
            }
        );
        assert!(opened.elapsed() >= Duration::from_secs(30));
        assert!(opened.elapsed() < Duration::from_secs(31));
        // Not reported again while it stays idle.
        let again = tokio::time::timeout(Duration::from_secs(3600), events.recv()).await;
        assert!(again.is_err());
    }
}
