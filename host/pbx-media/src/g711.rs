//! G.711 (ITU-T, 1988): the two companding laws the host plays and decodes,
//! PCMU (µ-law) and PCMA (A-law), with their static RTP payload types
//! (RFC 3551 §6). The per-sample work is `audio-codec-algorithms`'; this
//! module names the law after its SDP encoding and works on 20 ms frames.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

/// One of the two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// µ-law, `PCMU/8000`, static payload type 0.
    Pcmu,
    /// A-law, `PCMA/8000`, static payload type 8.
    Pcma,
}

impl G711 {
    /// The law named by an `a=rtpmap` encoding name (case-insensitive).
    pub fn from_encoding(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(G711::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(G711::Pcma)
        } else {
            None
        }
    }

    /// The encoding name used in SDP.
    pub fn encoding(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }

    /// The static RTP payload type (RFC 3551 table 4).
    pub fn static_payload_type(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    /// Compresses one 16-bit linear sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            G711::Pcmu => encode_ulaw(sample),
            G711::Pcma => encode_alaw(sample),
        }
    }

    /// Expands one code word to a 16-bit linear sample.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            G711::Pcmu => decode_ulaw(code),
            G711::Pcma => decode_alaw(code),
        }
    }

    /// Compresses `pcm` into `out`, writing silence where `pcm` is shorter.
    pub(crate) fn encode_frame(self, pcm: &[i16], out: &mut [u8]) {
        let silence = self.encode(0);
        for (i, o) in out.iter_mut().enumerate() {
            *o = pcm.get(i).map_or(silence, |s| self.encode(*s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference quantisers written from G.711's tables, independently of the
    // crate: table 2a (µ-law) works on 14-bit magnitudes with segment ends
    // 2^(s+5) - 33 and steps of 2^(s+1); table 1a (A-law) on 13-bit magnitudes,
    // segment 0 and 1 of step 2, segment s >= 1 starting at 2^(s+4) with steps of
    // 2^s. Negative inputs fold by ones' complement, as the ITU-T G.191 reference
    // software does, so the codes are symmetric around zero.

    fn ulaw_reference_encode(x: i16) -> u8 {
        let (sign, folded) = if x < 0 { (0x80u8, !x) } else { (0, x) };
        let m = i32::from(folded >> 2);
        let ends = [31, 95, 223, 479, 991, 2015, 4063, 8159];
        let Some(s) = ends.iter().position(|&e| m < e) else {
            return !(sign | 0x7f);
        };
        let start = if s == 0 { -1 } else { ends[s - 1] };
        let q = ((m - start) >> (s + 1)) as u8;
        !(sign | ((s as u8) << 4) | q)
    }

    fn ulaw_reference_decode(code: u8) -> i16 {
        let c = !code;
        let s = i32::from((c >> 4) & 7);
        let q = i32::from(c & 15);
        let start = (1 << (s + 5)) - 33;
        let y = (start + q * (1 << (s + 1)) + (1 << s)) * 4;
        (if c & 0x80 != 0 { -y } else { y }) as i16
    }

    fn alaw_reference_encode(x: i16) -> u8 {
        let (sign, folded) = if x < 0 { (0u8, !x) } else { (0x80, x) };
        let m = i32::from(folded >> 3);
        let (s, q) = if m < 32 {
            (0, m >> 1)
        } else {
            // m < 4096: the highest set bit names the segment (1..=7)
            let s = (32 - (m as u32).leading_zeros()) as i32 - 5;
            (s, (m >> s) & 15)
        };
        (sign | ((s as u8) << 4) | q as u8) ^ 0x55
    }

    fn alaw_reference_decode(code: u8) -> i16 {
        let c = code ^ 0x55;
        let s = i32::from((c >> 4) & 7);
        let q = i32::from(c & 15);
        let y = if s == 0 {
            2 * q + 1
        } else {
            (1 << (s + 4)) + q * (1 << s) + (1 << (s - 1))
        } * 8;
        (if c & 0x80 != 0 { y } else { -y }) as i16
    }

    #[test]
    fn known_code_words() {
        // Silence, the smallest and the largest steps of each law.
        assert_eq!(G711::Pcmu.encode(0), 0xff);
        assert_eq!(G711::Pcmu.decode(0xff), 0);
        assert_eq!(G711::Pcmu.decode(0x80), 32124);
        assert_eq!(G711::Pcmu.decode(0x00), -32124);
        assert_eq!(G711::Pcmu.encode(i16::MAX), 0x80);
        assert_eq!(G711::Pcmu.encode(i16::MIN), 0x00);
        assert_eq!(G711::Pcma.encode(0), 0xd5);
        assert_eq!(G711::Pcma.decode(0xd5), 8);
        assert_eq!(G711::Pcma.decode(0x55), -8);
        assert_eq!(G711::Pcma.decode(0xaa), 32256);
        assert_eq!(G711::Pcma.decode(0x2a), -32256);
        assert_eq!(G711::Pcma.encode(i16::MAX), 0xaa);
        // The µ-law segment ends (14-bit 31, 95, ..., 4063) and the A-law ones
        // (13-bit 32, 64, ..., 2048) open a new segment.
        assert_eq!(G711::Pcmu.encode(31 * 4) ^ 0xff, 0x10);
        assert_eq!(G711::Pcmu.encode(4063 * 4) ^ 0xff, 0x70);
        assert_eq!(G711::Pcma.encode(32 * 8) ^ 0x55, 0x90);
        assert_eq!(G711::Pcma.encode(2048 * 8) ^ 0x55, 0xf0);
    }

    #[test]
    fn every_sample_and_code_matches_the_tables() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(G711::Pcmu.encode(x), ulaw_reference_encode(x), "µ {x}");
            assert_eq!(G711::Pcma.encode(x), alaw_reference_encode(x), "A {x}");
        }
        for c in 0..=255u8 {
            assert_eq!(G711::Pcmu.decode(c), ulaw_reference_decode(c), "µ {c:#x}");
            assert_eq!(G711::Pcma.decode(c), alaw_reference_decode(c), "A {c:#x}");
            // Decoding then encoding is the identity (except µ-law's -0).
            if c != 0x7f {
                assert_eq!(G711::Pcmu.encode(G711::Pcmu.decode(c)), c);
            }
            assert_eq!(G711::Pcma.encode(G711::Pcma.decode(c)), c);
        }
    }

    #[test]
    fn frames_pad_with_silence_and_names_round_trip() {
        let mut out = [0u8; 4];
        G711::Pcma.encode_frame(&[32767, -32768], &mut out);
        assert_eq!(out, [0xaa, 0x2a, 0xd5, 0xd5]);
        for law in [G711::Pcmu, G711::Pcma] {
            assert_eq!(
                G711::from_encoding(&law.encoding().to_lowercase()),
                Some(law)
            );
        }
        assert_eq!(G711::from_encoding("G722"), None);
        assert_eq!(G711::Pcma.static_payload_type(), 8);
    }
}
