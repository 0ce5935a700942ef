//! Just enough RTP/RTCP header reading (RFC 3550, RFC 5761 demultiplexing) for the
//! relay: classify a datagram, read SSRC and sequence number, count sequence gaps.

/// Which of the two media flows a datagram belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// RTP (even port).
    Rtp,
    /// RTCP (odd port, or multiplexed on the RTP port).
    Rtcp,
}

/// Classifies a datagram as RTP or RTCP by its header (RFC 5761 §4), or `None`
/// when it is neither (wrong version, too short, malformed header).
pub(crate) fn classify(pkt: &[u8]) -> Option<Channel> {
    if pkt.len() < 8 || pkt[0] >> 6 != 2 {
        return None;
    }
    if (192..=223).contains(&pkt[1]) {
        return Some(Channel::Rtcp);
    }
    rtp_header_len(pkt).map(|_| Channel::Rtp)
}

/// The length of a valid RTP header including CSRCs and extension.
pub(crate) fn rtp_header_len(pkt: &[u8]) -> Option<usize> {
    if pkt.len() < 12 || pkt[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(pkt[0] & 0x0f);
    if pkt[0] & 0x10 != 0 {
        let ext = pkt.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (len <= pkt.len()).then_some(len)
}

/// The payload of an RTP packet: after the header, before any padding (RFC 3550
/// §5.1: the last octet counts the padding); `None` when malformed.
pub(crate) fn payload(pkt: &[u8]) -> Option<&[u8]> {
    let header = rtp_header_len(pkt)?;
    let padding = if pkt[0] & 0x20 != 0 {
        usize::from(*pkt.last()?)
    } else {
        0
    };
    pkt.get(header..pkt.len().checked_sub(padding)?)
}

/// RTP timestamp.
pub(crate) fn timestamp(pkt: &[u8]) -> Option<u32> {
    let b = pkt.get(4..8)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// RTP SSRC (bytes 8..12) or RTCP sender SSRC (bytes 4..8).
pub(crate) fn ssrc(pkt: &[u8], channel: Channel) -> Option<u32> {
    let at = match channel {
        Channel::Rtp => 8,
        Channel::Rtcp => 4,
    };
    let b = pkt.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// RTP sequence number.
pub(crate) fn seq(pkt: &[u8]) -> Option<u16> {
    let b = pkt.get(2..4)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Counts packets missing from an RTP sequence (gaps), forgiving reordering.
#[derive(Debug, Default, Clone)]
pub(crate) struct LossCounter {
    highest: Option<(u32, u16)>,
    lost: u64,
}

/// Jumps larger than this are taken as a new stream, not as loss.
const MAX_GAP: u16 = 3000;

impl LossCounter {
    pub(crate) fn on_packet(&mut self, ssrc: u32, seq: u16) {
        match self.highest {
            Some((s, high)) if s == ssrc => {
                let delta = seq.wrapping_sub(high);
                if delta == 0 {
                    // duplicate
                } else if delta < MAX_GAP {
                    self.lost += u64::from(delta - 1);
                    self.highest = Some((ssrc, seq));
                } else if high.wrapping_sub(seq) < MAX_GAP {
                    // late packet filling a gap counted before
                    self.lost = self.lost.saturating_sub(1);
                } else {
                    self.highest = Some((ssrc, seq));
                }
            }
            _ => self.highest = Some((ssrc, seq)),
        }
    }

    pub(crate) fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    }

    #[test]
    fn classify_rtp_rtcp_and_garbage() {
        assert_eq!(classify(&rtp(1)), Some(Channel::Rtp));
        assert_eq!(
            classify(&[0x80, 200, 0, 6, 1, 2, 3, 4]),
            Some(Channel::Rtcp)
        );
        assert_eq!(classify(&[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(classify(&[0x80, 0, 0]), None);
        // extension header claims more bytes than present
        let mut p = rtp(1);
        p[0] |= 0x10;
        p.truncate(16);
        p[14] = 0xff;
        assert_eq!(classify(&p), None);
        assert_eq!(ssrc(&rtp(1), Channel::Rtp), Some(0x01020304));
        assert_eq!(seq(&rtp(513)), Some(513));
    }

    #[test]
    fn payload_skips_header_and_padding() {
        let mut p = rtp(1);
        p[4..8].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(timestamp(&p), Some(7));
        assert_eq!(payload(&p).map(<[u8]>::len), Some(20));
        // CSRC count 1: four more header bytes.
        p[0] |= 1;
        assert_eq!(payload(&p).map(<[u8]>::len), Some(16));
        // Padding of 3 (the count included).
        p[0] = 0x80 | 0x20;
        *p.last_mut().unwrap() = 3;
        assert_eq!(payload(&p).map(<[u8]>::len), Some(17));
        *p.last_mut().unwrap() = 200;
        assert_eq!(payload(&p), None, "padding longer than the packet");
    }

    #[test]
    fn loss_counts_gaps_and_forgives_reordering() {
        let mut l = LossCounter::default();
        for s in [65530u16, 65531, 65534, 1, 2] {
            l.on_packet(1, s);
        }
        // missing: 65532, 65533, 65535, 0
        assert_eq!(l.lost(), 4);
        l.on_packet(1, 0); // late
        assert_eq!(l.lost(), 3);
        l.on_packet(2, 40000); // new SSRC restarts
        l.on_packet(2, 40001);
        assert_eq!(l.lost(), 3);
    }
}
