//! A passive tap on the loopback interface: a raw packet socket (`AF_PACKET`,
//! which needs root or `CAP_NET_RAW`) reading every IPv4 UDP and TCP packet
//! on the host, keeping those to or from chosen ports. It sends nothing and
//! changes nothing: what it sees is what any local observer of the traffic
//! would see.
//!
//! Also the two judgements the interop tests make on what was captured:
//! whether SIP went in clear, and whether media looks like plain audio.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Most packets kept (the rest are not stored).
const MAX_KEPT: usize = 50_000;
/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// The transport of a captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// One captured packet's addresses and transport payload.
#[derive(Debug, Clone)]
pub struct Captured {
    pub proto: Proto,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

impl Captured {
    /// Whether either end uses one of `ports`.
    pub fn touches(&self, ports: &[u16]) -> bool {
        ports.contains(&self.src.port()) || ports.contains(&self.dst.port())
    }
}

/// A running capture; [`Tap::stop`] returns what it kept, [`Tap::count`]
/// looks at it while it runs.
pub struct Tap {
    stop: Arc<AtomicBool>,
    kept: Arc<Mutex<Vec<Captured>>>,
    thread: Option<JoinHandle<()>>,
}

impl Tap {
    /// Starts capturing packets to or from any of `ports` on 127.0.0.0/8.
    /// Fails (permission denied) without the privilege a raw socket needs.
    pub fn start(ports: Vec<u16>) -> std::io::Result<Tap> {
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (flag, into) = (stop.clone(), kept.clone());
        let thread = std::thread::spawn(move || capture(&socket, &ports, &flag, &into));
        Ok(Tap {
            stop,
            kept,
            thread: Some(thread),
        })
    }

    /// How many of the packets kept so far match `filter` (for a test that
    /// waits until some traffic has been seen).
    pub fn count(&self, filter: impl Fn(&Captured) -> bool) -> usize {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter().filter(|c| filter(c)).count()
    }

    /// Stops capturing and returns the packets kept, in arrival order.
    pub fn stop(mut self) -> Vec<Captured> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn capture(socket: &Socket, ports: &[u16], stop: &AtomicBool, kept: &Mutex<Vec<Captured>>) {
    let mut frame = vec![0u8; 65_536];
    let mut reader = socket;
    while !stop.load(Ordering::Relaxed) {
        let n = match reader.read(&mut frame) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        if let Some(c) = parse_frame(frame.get(..n).unwrap_or_default())
            && c.src.ip().is_loopback()
            && c.touches(ports)
        {
            let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() < MAX_KEPT {
                kept.push(c);
            }
        }
    }
}

/// An Ethernet frame (loopback frames carry a zeroed Ethernet header)
/// holding IPv4 with UDP or TCP.
fn parse_frame(frame: &[u8]) -> Option<Captured> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype != 0x0800 {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let ip = ip.get(..total.min(ip.len()))?;
    let proto = match ip.get(9)? {
        17 => Proto::Udp,
        6 => Proto::Tcp,
        _ => return None,
    };
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let b = ip.get(at..at + 4)?;
        Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    let (src_ip, dst_ip) = (addr(12)?, addr(16)?);
    let l4 = ip.get(ihl..)?;
    let port = |at: usize| Some(u16::from_be_bytes([*l4.get(at)?, *l4.get(at + 1)?]));
    let (src_port, dst_port) = (port(0)?, port(2)?);
    let header = match proto {
        Proto::Udp => 8,
        Proto::Tcp => usize::from(l4.get(12)? >> 4) * 4,
    };
    Some(Captured {
        proto,
        src: SocketAddrV4::new(src_ip, src_port),
        dst: SocketAddrV4::new(dst_ip, dst_port),
        payload: l4.get(header..)?.to_vec(),
    })
}

/// The captured payloads that carry SIP in clear (a SIP request or status
/// line, or a `SIP/2.0` version anywhere).
pub fn sip_in_clear(packets: &[Captured]) -> Vec<&Captured> {
    packets
        .iter()
        .filter(|c| {
            let p = &c.payload;
            find(p, b"SIP/2.0").is_some()
                || [&b"REGISTER sip"[..], b"INVITE sip", b"ACK sip", b"BYE sip"]
                    .iter()
                    .any(|m| find(p, m).is_some())
        })
        .collect()
}

/// Media as a passive observer sees it: RTP packets (version 2) with a G.711
/// payload, and how many of them carry audio an observer can listen to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaView {
    /// RTP-shaped UDP packets seen.
    pub rtp: usize,
    /// Of those, G.711 (payload type 0 or 8).
    pub g711: usize,
    /// Of those, payloads whose decoded samples follow each other like
    /// sound (a tone, silence, speech) rather than like noise: plain audio.
    pub audible: usize,
}

/// Judges the UDP packets to or from `ports` as media. A plain G.711 payload
/// decodes to samples that change smoothly (lag-1 autocorrelation near 1 for
/// a tone, constant for silence); an encrypted (SRTP) one decodes to noise
/// (autocorrelation near 0).
pub fn media_view(packets: &[Captured], ports: &[u16]) -> MediaView {
    let mut view = MediaView::default();
    for c in packets
        .iter()
        .filter(|c| c.proto == Proto::Udp && c.touches(ports))
    {
        let p = &c.payload;
        if p.len() < 12 + 80 || p[0] >> 6 != 2 {
            continue;
        }
        view.rtp += 1;
        let pt = p[1] & 0x7f;
        if pt != 0 && pt != 8 {
            continue;
        }
        view.g711 += 1;
        let csrc = usize::from(p[0] & 0x0f) * 4;
        let Some(body) = p.get(12 + csrc..) else {
            continue;
        };
        // an SRTP tag, if any, is a few bytes at the end: judge the first 160
        let body = &body[..body.len().min(160)];
        let samples: Vec<f64> = body
            .iter()
            .map(|&b| f64::from(if pt == 0 { ulaw(b) } else { alaw(b) }))
            .collect();
        if sounds_like_audio(&samples) {
            view.audible += 1;
        }
    }
    view
}

fn sounds_like_audio(samples: &[f64]) -> bool {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    if var < 1.0 {
        return true; // silence
    }
    let cov = samples
        .windows(2)
        .map(|w| (w[0] - mean) * (w[1] - mean))
        .sum::<f64>()
        / (n - 1.0);
    cov / var > 0.5
}

/// G.711 µ-law to linear.
fn ulaw(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = i16::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 { -magnitude } else { magnitude }
}

/// G.711 A-law to linear.
fn alaw(b: u8) -> i16 {
    let b = b ^ 0x55;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = i16::from(b & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if sign != 0 { magnitude } else { -magnitude }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(pt: u8, payload: &[u8]) -> Captured {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend_from_slice(payload);
        Captured {
            proto: Proto::Udp,
            src: "127.0.0.1:30000".parse().unwrap(),
            dst: "127.0.0.1:20000".parse().unwrap(),
            payload: p,
        }
    }

    /// A µ-law encoder good enough to make test tones.
    fn encode_ulaw(sample: i16) -> u8 {
        let sign = if sample < 0 { 0x80 } else { 0 };
        let mut m = (i32::from(sample).abs().min(32_635) + 0x84) as u32;
        let mut exponent = 7;
        while exponent > 0 && m & (0x4000 >> (7 - exponent)) == 0 {
            exponent -= 1;
        }
        m >>= exponent + 3;
        !(sign | ((exponent as u8) << 4) | (m as u8 & 0x0f))
    }

    #[test]
    fn tones_and_silence_are_audible_noise_is_not() {
        let tone: Vec<u8> = (0..160)
            .map(|i| {
                let x = (f64::from(i) * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin();
                encode_ulaw((x * 8000.0) as i16)
            })
            .collect();
        let silence = vec![0xffu8; 160];
        let mut seed = 0x1234_5678u32;
        let noise: Vec<u8> = (0..170)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let packets = vec![
            rtp(0, &tone),
            rtp(0, &silence),
            rtp(8, &noise),
            rtp(0, &noise),
        ];
        let view = media_view(&packets, &[20000]);
        assert_eq!(
            view,
            MediaView {
                rtp: 4,
                g711: 4,
                audible: 2
            }
        );
        assert_eq!(ulaw(0xff), 0);
        assert_eq!(ulaw(0x00), -32_124);
        assert_eq!(alaw(0xd5), 8);
    }

    #[test]
    fn sip_is_found_in_clear_text_only() {
        let mut c = rtp(0, &[0; 100]);
        c.payload = b"INVITE sip:1001@acme.example SIP/2.0\r\n".to_vec();
        let mut tls = c.clone();
        tls.payload = vec![0x17, 0x03, 0x03, 0x00, 0x20, 0x9a, 0x11];
        let list = [c, tls];
        assert_eq!(sip_in_clear(&list).len(), 1);
    }

    #[test]
    fn frames_parse_to_udp_payloads() {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
        ];
        let udp = [0x75, 0x30, 0x4e, 0x20, 0, 11, 0, 0, b'a', b'b', b'c'];
        let total = (ip.len() + udp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&udp);
        f.extend_from_slice(&[0; 6]); // padding after the IP packet is ignored
        let c = parse_frame(&f).expect("parses");
        assert_eq!(c.proto, Proto::Udp);
        assert_eq!(c.src, "127.0.0.1:30000".parse().unwrap());
        assert_eq!(c.dst, "127.0.0.2:20000".parse().unwrap());
        assert_eq!(c.payload, b"abc");
        assert!(parse_frame(&f[..20]).is_none());
        assert!(parse_frame(&[]).is_none());
    }
}
