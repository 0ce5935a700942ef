//! SRTP/SRTCP per leg over `webrtc-srtp`, hardened for a relay facing the Internet.
//!
//! - Replay protection is on ([`REPLAY_WINDOW`] packets), for RTP and RTCP.
//! - A [`SrtpReceiver`] pins the leg's SSRC on the first packet that authenticates;
//!   packets with any other SSRC are dropped before the library sees them, so they
//!   create no per-SSRC state. Until the pin, a packet that fails authentication
//!   resets the context, so unauthenticated SSRCs cannot accumulate either.
//! - SRTCP packets without the E (encrypted) flag are dropped: the library would
//!   hand them out unauthenticated.
//! - A [`SrtpSender`] encrypts at most [`MAX_SEND_SSRCS`] distinct SSRCs, bounding
//!   its state when the other leg is plain RTP and sends what it likes.
//!
//! RTP and RTCP use separate library contexts so that resetting one never loses the
//! other's rollover and replay state.
//!
//! The replay windows are the receiver's own (webrtc-util's detector, one per pinned
//! stream), not the library context's: the context builds a fresh detector, with its
//! allocations, every time it looks a stream up (twice per packet) and throws it away
//! when the stream exists. The library contexts run with its no-op detector, which
//! allocates nothing; the checks and their order (check before decrypting, accept
//! after the packet authenticated) are the same as the library's.

use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_no_replay_protection, srtp_no_replay_protection};
use webrtc_util::replay_detector::{ReplayDetector, WrappedSlidingWindowDetector};

use crate::error::Result;
use crate::rtp::{self, Channel};
use crate::sdes::{KeyMaterial, Suite};

/// Replay window, in packets (libsrtp's default is 128).
pub const REPLAY_WINDOW: usize = 256;

/// Distinct SSRCs a sender will encrypt for.
pub const MAX_SEND_SSRCS: usize = 8;

/// Packets a receiver or sender dropped, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SrtpCounters {
    /// Authentication (or AEAD) failures.
    pub auth_failures: u64,
    /// Replayed packets.
    pub replays: u64,
    /// Packets with an SSRC other than the pinned one (or beyond the sender's cap).
    pub foreign_ssrc: u64,
    /// Packets too short or malformed to process.
    pub malformed: u64,
}

/// Highest SRTP sequence number and SRTCP index (RFC 3711 §3.3 and §3.4).
const MAX_SEQUENCE: u64 = 0xffff;
const MAX_SRTCP_INDEX: u64 = 0x7fff_ffff;

/// A library context without its own replay detection (see the module doc).
fn new_context(keys: &KeyMaterial) -> Result<Context> {
    Ok(Context::new(
        keys.key(),
        keys.salt(),
        keys.suite().profile(),
        Some(srtp_no_replay_protection()),
        Some(srtcp_no_replay_protection()),
    )?)
}

fn new_replay_window(channel: Channel) -> WrappedSlidingWindowDetector {
    let max = match channel {
        Channel::Rtp => MAX_SEQUENCE,
        Channel::Rtcp => MAX_SRTCP_INDEX,
    };
    WrappedSlidingWindowDetector::new(REPLAY_WINDOW, max)
}

/// Bytes after the payload: the auth tag (and, for SRTCP, the index word).
fn rtp_trailer(suite: Suite) -> usize {
    match suite {
        Suite::AesCm128HmacSha1_80 => 10,
        Suite::AesCm128HmacSha1_32 => 4,
        Suite::AeadAes128Gcm => 16,
    }
}

fn rtcp_tag(suite: Suite) -> usize {
    match suite {
        Suite::AeadAes128Gcm => 16,
        _ => 10,
    }
}

struct Pinned {
    ctx: Context,
    ssrc: Option<u32>,
    replay: WrappedSlidingWindowDetector,
}

impl Pinned {
    fn new(keys: &KeyMaterial, channel: Channel) -> Result<Self> {
        Ok(Self {
            ctx: new_context(keys)?,
            ssrc: None,
            replay: new_replay_window(channel),
        })
    }
}

/// Decrypts what one leg sends (the key from that leg's own `a=crypto`).
pub struct SrtpReceiver {
    keys: KeyMaterial,
    rtp: Pinned,
    rtcp: Pinned,
    counters: SrtpCounters,
}

impl std::fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("suite", &self.keys.suite())
            .field("ssrc", &self.rtp.ssrc)
            .field("counters", &self.counters)
            .finish()
    }
}

impl SrtpReceiver {
    /// A receiver for `keys`.
    pub fn new(keys: &KeyMaterial) -> Result<Self> {
        Ok(Self {
            keys: keys.clone(),
            rtp: Pinned::new(keys, Channel::Rtp)?,
            rtcp: Pinned::new(keys, Channel::Rtcp)?,
            counters: SrtpCounters::default(),
        })
    }

    /// The key this receiver uses.
    pub fn keys(&self) -> &KeyMaterial {
        &self.keys
    }

    /// The pinned RTP SSRC, once a packet has authenticated.
    pub fn pinned_ssrc(&self) -> Option<u32> {
        self.rtp.ssrc
    }

    /// Drop counters.
    pub fn counters(&self) -> SrtpCounters {
        self.counters
    }

    /// Authenticates and decrypts one SRTP or SRTCP packet; `None` when it is
    /// dropped (and counted).
    pub fn unprotect(&mut self, channel: Channel, pkt: &[u8]) -> Option<Bytes> {
        let suite = self.keys.suite();
        // The packet's sequence number (RTP) or SRTCP index, for the replay window.
        let index = match channel {
            Channel::Rtp => rtp::rtp_header_len(pkt)
                .filter(|h| pkt.len() >= h + rtp_trailer(suite))
                .and_then(|_| rtp::seq(pkt))
                .map(u64::from),
            Channel::Rtcp => {
                let tag = rtcp_tag(suite);
                // header + sender SSRC, the E|index word, the tag; the E flag must be set
                let index_at = match suite {
                    Suite::AeadAes128Gcm => pkt.len().wrapping_sub(4),
                    _ => pkt.len().wrapping_sub(tag + 4),
                };
                pkt.get(index_at..index_at.wrapping_add(4))
                    .filter(|w| pkt.len() >= 8 + 4 + tag && w[0] & 0x80 != 0)
                    .map(|w| {
                        u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]])) & MAX_SRTCP_INDEX
                    })
            }
        };
        let ssrc = rtp::ssrc(pkt, channel);
        let (Some(index), Some(ssrc)) = (index, ssrc) else {
            self.counters.malformed += 1;
            return None;
        };
        let slot = match channel {
            Channel::Rtp => &mut self.rtp,
            Channel::Rtcp => &mut self.rtcp,
        };
        if slot.ssrc.is_some_and(|p| p != ssrc) {
            self.counters.foreign_ssrc += 1;
            return None;
        }
        if !slot.replay.check(index) {
            self.counters.replays += 1;
            return None;
        }
        let result = match channel {
            Channel::Rtp => slot.ctx.decrypt_rtp(pkt),
            Channel::Rtcp => slot.ctx.decrypt_rtcp(pkt),
        };
        match result {
            Ok(plain) => {
                slot.replay.accept();
                slot.ssrc = Some(ssrc);
                Some(plain)
            }
            Err(_) => {
                self.counters.auth_failures += 1;
                if slot.ssrc.is_none() {
                    // Forget the state the failed attempt created.
                    match Pinned::new(&self.keys, channel) {
                        Ok(fresh) => *slot = fresh,
                        Err(_) => self.counters.malformed += 1,
                    }
                }
                None
            }
        }
    }
}

/// Encrypts what we send to one leg (with the key we gave that leg).
pub struct SrtpSender {
    keys: KeyMaterial,
    rtp: Context,
    rtcp: Context,
    ssrcs: Vec<u32>,
    counters: SrtpCounters,
}

impl std::fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSender")
            .field("suite", &self.keys.suite())
            .field("ssrcs", &self.ssrcs)
            .finish()
    }
}

impl SrtpSender {
    /// A sender for `keys`.
    pub fn new(keys: &KeyMaterial) -> Result<Self> {
        Ok(Self {
            keys: keys.clone(),
            rtp: new_context(keys)?,
            rtcp: new_context(keys)?,
            ssrcs: Vec::new(),
            counters: SrtpCounters::default(),
        })
    }

    /// The key this sender uses.
    pub fn keys(&self) -> &KeyMaterial {
        &self.keys
    }

    /// Drop counters (`foreign_ssrc` counts packets beyond the SSRC cap).
    pub fn counters(&self) -> SrtpCounters {
        self.counters
    }

    /// Encrypts one RTP or RTCP packet; `None` when it is dropped (and counted).
    pub fn protect(&mut self, channel: Channel, pkt: &[u8]) -> Option<Bytes> {
        let well_formed = match channel {
            Channel::Rtp => rtp::rtp_header_len(pkt).is_some(),
            Channel::Rtcp => pkt.len() >= 8 && pkt[0] >> 6 == 2,
        };
        let (true, Some(ssrc)) = (well_formed, rtp::ssrc(pkt, channel)) else {
            self.counters.malformed += 1;
            return None;
        };
        if !self.ssrcs.contains(&ssrc) {
            if self.ssrcs.len() >= MAX_SEND_SSRCS {
                self.counters.foreign_ssrc += 1;
                return None;
            }
            self.ssrcs.push(ssrc);
        }
        let result = match channel {
            Channel::Rtp => self.rtp.encrypt_rtp(pkt),
            Channel::Rtcp => self.rtcp.encrypt_rtcp(pkt),
        };
        match result {
            Ok(b) => Some(b),
            Err(_) => {
                self.counters.malformed += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp_packet(ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..payload_len).map(|i| i as u8));
        p
    }

    fn rtcp_rr(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 201, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn pair(suite: Suite) -> (SrtpSender, SrtpReceiver) {
        let k = KeyMaterial::generate(suite);
        (SrtpSender::new(&k).unwrap(), SrtpReceiver::new(&k).unwrap())
    }

    #[test]
    fn protect_unprotect_round_trip_every_suite() {
        for suite in Suite::ALL {
            let (mut tx, mut rx) = pair(suite);
            for seq in 0..5u16 {
                let plain = rtp_packet(0xdeadbeef, seq, 160);
                let enc = tx.protect(Channel::Rtp, &plain).unwrap();
                assert_ne!(&enc[12..172], &plain[12..]);
                let dec = rx.unprotect(Channel::Rtp, &enc).unwrap();
                assert_eq!(&dec[..], &plain[..], "{suite:?}");
            }
            let rr = rtcp_rr(0xdeadbeef);
            let enc = tx.protect(Channel::Rtcp, &rr).unwrap();
            assert_eq!(&rx.unprotect(Channel::Rtcp, &enc).unwrap()[..], &rr[..]);
            assert_eq!(rx.counters(), SrtpCounters::default());
            assert_eq!(rx.pinned_ssrc(), Some(0xdeadbeef));
        }
    }

    #[test]
    fn tampered_packet_is_dropped_and_counted() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let mut enc = tx
            .protect(Channel::Rtp, &rtp_packet(7, 1, 160))
            .unwrap()
            .to_vec();
        enc[40] ^= 1;
        assert!(rx.unprotect(Channel::Rtp, &enc).is_none());
        assert_eq!(rx.counters().auth_failures, 1);
        assert_eq!(rx.pinned_ssrc(), None);
        // the genuine packet still goes through after the reset
        enc[40] ^= 1;
        assert!(rx.unprotect(Channel::Rtp, &enc).is_some());
    }

    #[test]
    fn replay_is_dropped_and_counted() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let first = tx.protect(Channel::Rtp, &rtp_packet(7, 1, 160)).unwrap();
        let second = tx.protect(Channel::Rtp, &rtp_packet(7, 2, 160)).unwrap();
        assert!(rx.unprotect(Channel::Rtp, &first).is_some());
        assert!(rx.unprotect(Channel::Rtp, &second).is_some());
        assert!(rx.unprotect(Channel::Rtp, &first).is_none());
        assert!(rx.unprotect(Channel::Rtp, &second).is_none());
        assert_eq!(rx.counters().replays, 2);
        let rr = tx.protect(Channel::Rtcp, &rtcp_rr(7)).unwrap();
        assert!(rx.unprotect(Channel::Rtcp, &rr).is_some());
        assert!(rx.unprotect(Channel::Rtcp, &rr).is_none());
        assert_eq!(rx.counters().replays, 3);
    }

    #[test]
    fn the_window_follows_the_sequence_across_its_wrap() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let seqs: Vec<u16> = (65530..=65535).chain(0..6).collect();
        let sent: Vec<Bytes> = seqs
            .iter()
            .map(|&seq| tx.protect(Channel::Rtp, &rtp_packet(9, seq, 160)).unwrap())
            .collect();
        // In order, then one late packet from before the wrap, then the replays.
        for (enc, &seq) in sent.iter().zip(&seqs) {
            if seq != 65534 {
                let dec = rx.unprotect(Channel::Rtp, enc).unwrap();
                assert_eq!(&dec[..], &rtp_packet(9, seq, 160)[..], "seq {seq}");
            }
        }
        assert!(
            rx.unprotect(Channel::Rtp, &sent[4]).is_some(),
            "late, not replayed"
        );
        for enc in &sent {
            assert!(rx.unprotect(Channel::Rtp, enc).is_none());
        }
        assert_eq!(rx.counters().replays, sent.len() as u64);
        assert_eq!(rx.counters().auth_failures, 0);
        // A packet older than the window is refused as a replay too.
        let mut seq = 5u16;
        let mut late = None;
        for _ in 0..REPLAY_WINDOW + 1 {
            seq += 1;
            let enc = tx.protect(Channel::Rtp, &rtp_packet(9, seq, 20)).unwrap();
            if late.is_none() {
                late = Some(enc);
            } else {
                assert!(rx.unprotect(Channel::Rtp, &enc).is_some());
            }
        }
        assert!(rx.unprotect(Channel::Rtp, &late.unwrap()).is_none());
        assert_eq!(rx.counters().replays, sent.len() as u64 + 1);
    }

    #[test]
    fn foreign_ssrc_dropped_without_state() {
        let k = KeyMaterial::generate(Suite::AesCm128HmacSha1_80);
        let mut tx = SrtpSender::new(&k).unwrap();
        let mut rx = SrtpReceiver::new(&k).unwrap();
        assert!(
            rx.unprotect(
                Channel::Rtp,
                &tx.protect(Channel::Rtp, &rtp_packet(1, 1, 20)).unwrap()
            )
            .is_some()
        );
        // A validly keyed packet from another SSRC is still refused once pinned.
        let mut other = SrtpSender::new(&k).unwrap();
        for ssrc in 2..200u32 {
            let enc = other.protect(Channel::Rtp, &rtp_packet(ssrc, 1, 20));
            if let Some(enc) = enc {
                assert!(rx.unprotect(Channel::Rtp, &enc).is_none());
            }
            let mut garbage = rtp_packet(ssrc, 1, 40);
            garbage[30] = 0x55;
            assert!(rx.unprotect(Channel::Rtp, &garbage).is_none());
        }
        assert_eq!(rx.counters().auth_failures, 0);
        assert!(rx.counters().foreign_ssrc >= 198);
        assert_eq!(rx.pinned_ssrc(), Some(1));
        // The sender itself refuses SSRCs beyond its cap.
        assert_eq!(other.counters().foreign_ssrc, 198 - MAX_SEND_SSRCS as u64);
        // Before pinning, garbage under random SSRCs fails authentication and
        // leaves no trace: the genuine stream pins afterwards.
        let mut fresh = SrtpReceiver::new(&k).unwrap();
        for ssrc in 1000..1100u32 {
            assert!(
                fresh
                    .unprotect(Channel::Rtp, &rtp_packet(ssrc, 1, 40))
                    .is_none()
            );
        }
        assert_eq!(fresh.counters().auth_failures, 100);
        assert_eq!(fresh.pinned_ssrc(), None);
        let enc = tx.protect(Channel::Rtp, &rtp_packet(1, 2, 20)).unwrap();
        assert!(fresh.unprotect(Channel::Rtp, &enc).is_some());
    }

    #[test]
    fn unencrypted_or_short_srtcp_is_refused() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let mut enc = tx.protect(Channel::Rtcp, &rtcp_rr(9)).unwrap().to_vec();
        let e_at = enc.len() - 10 - 4;
        enc[e_at] &= 0x7f;
        assert!(rx.unprotect(Channel::Rtcp, &enc).is_none());
        assert!(
            rx.unprotect(Channel::Rtcp, &[0x80, 201, 0, 1, 0, 0])
                .is_none()
        );
        assert!(rx.unprotect(Channel::Rtp, &[0x80, 0, 0, 1]).is_none());
        assert_eq!(rx.counters().malformed, 3);
    }
}
