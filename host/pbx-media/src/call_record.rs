//! Recording a bridged call: what both legs send, mixed into one 8 kHz mono
//! 16-bit track (the format of every other recording the host keeps, so the
//! store, quotas and players treat it like voicemail).
//!
//! # Design
//! Sans-IO: the session hands [`CallRecorder::on_rtp`] each RTP packet it
//! relays (after SRTP is removed), with the leg it came from and `now`.
//! A leg's packets are placed by their RTP timestamps (so jitter does not
//! move them), anchored to the call's timeline by when the leg's first packet
//! (or a new source) arrived, and added into the mix with saturation. Only
//! PCMU and PCMA in their static payload types (0 and 8) are heard; other
//! formats (and RFC 4733 events) leave silence. The mix is bounded by the
//! `max` given at the start, and memory grows with the call: 16 kB a second.

use std::time::{Duration, Instant};

use crate::g711::G711;
use crate::record::{Recording, RecordingEnd};
use crate::rtp;
use crate::session::Leg;

const RATE: u64 = 8000;

/// Where one leg's packets go in the mix.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    /// The RTP timestamp of the source's first packet and where it went.
    ts: u32,
    at: usize,
}

/// The recording of a bridged call under way.
#[derive(Debug)]
pub struct CallRecorder {
    start: Instant,
    max_samples: usize,
    mix: Vec<i16>,
    legs: [Option<Anchor>; 2],
}

fn samples_in(d: Duration) -> usize {
    usize::try_from(d.as_millis() as u64 * RATE / 1000).unwrap_or(usize::MAX)
}

impl CallRecorder {
    /// Starts at `now`, keeping at most `max` of audio.
    pub fn new(now: Instant, max: Duration) -> CallRecorder {
        CallRecorder {
            start: now,
            max_samples: samples_in(max),
            mix: Vec::new(),
            legs: [None, None],
        }
    }

    /// Adds what an RTP packet from `leg` carries.
    pub fn on_rtp(&mut self, now: Instant, leg: Leg, pkt: &[u8]) {
        let Some(payload) = rtp::payload(pkt) else {
            return;
        };
        let law = match pkt[1] & 0x7f {
            0 => G711::Pcmu,
            8 => G711::Pcma,
            _ => return,
        };
        let (Some(ssrc), Some(ts)) = (rtp::ssrc(pkt, rtp::Channel::Rtp), rtp::timestamp(pkt))
        else {
            return;
        };
        let slot = &mut self.legs[usize::from(leg == Leg::B)];
        let anchor = match *slot {
            Some(a) if a.ssrc == ssrc => a,
            _ => {
                let a = Anchor {
                    ssrc,
                    ts,
                    at: samples_in(now.saturating_duration_since(self.start)),
                };
                *slot = Some(a);
                a
            }
        };
        // A packet older than the source's first is dropped; one far ahead
        // of the clock (a jump in its timestamps) starts it again here.
        let offset = ts.wrapping_sub(anchor.ts) as i32;
        let Ok(offset) = usize::try_from(offset) else {
            return;
        };
        let wall = samples_in(now.saturating_duration_since(self.start));
        let mut at = anchor.at + offset;
        if at > wall + samples_in(Duration::from_secs(2)) {
            *slot = Some(Anchor { ssrc, ts, at: wall });
            at = wall;
        }
        if at >= self.max_samples {
            return;
        }
        let end = (at + payload.len()).min(self.max_samples);
        if self.mix.len() < end {
            self.mix.resize(end, 0);
        }
        for (sample, code) in self.mix[at..end].iter_mut().zip(payload) {
            *sample = sample.saturating_add(law.decode(*code));
        }
    }

    /// The mix so far, as a recording that was stopped.
    pub fn finish(self) -> Recording {
        Recording {
            samples: self.mix,
            end: RecordingEnd::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn both_legs_are_mixed_by_their_timestamps() {
        let t0 = Instant::now();
        let mut r = CallRecorder::new(t0, Duration::from_secs(60));
        let a = [G711::Pcmu.encode(1000); 160];
        let b = [G711::Pcma.encode(-300); 160];
        // A talks from the start; its second packet arrives late (jitter)
        // but goes where its timestamp says.
        r.on_rtp(t0, Leg::A, &packet(0, 1, 1, 5000, &a));
        r.on_rtp(
            t0 + Duration::from_millis(35),
            Leg::A,
            &packet(0, 1, 2, 5160, &a),
        );
        // B starts 10 ms in, with its own clock, in PCMA.
        r.on_rtp(
            t0 + Duration::from_millis(10),
            Leg::B,
            &packet(8, 2, 9, 77, &b),
        );
        // Telephone events and other formats are not audio.
        r.on_rtp(t0, Leg::B, &packet(101, 2, 10, 77, &[1, 2, 3, 4]));
        let rec = r.finish();
        assert_eq!(rec.samples.len(), 320);
        let a_val = G711::Pcmu.decode(G711::Pcmu.encode(1000));
        let b_val = G711::Pcma.decode(G711::Pcma.encode(-300));
        assert_eq!(rec.samples[0], a_val, "A alone");
        assert_eq!(rec.samples[100], a_val + b_val, "both");
        assert_eq!(rec.samples[200], a_val + b_val, "A's late packet in place");
        assert_eq!(rec.samples[300], a_val, "B's packet ended");
    }

    #[test]
    fn the_mix_is_bounded_and_survives_odd_packets() {
        let t0 = Instant::now();
        let mut r = CallRecorder::new(t0, Duration::from_millis(30));
        let loud = [G711::Pcmu.encode(i16::MAX); 160];
        r.on_rtp(t0, Leg::A, &packet(0, 1, 1, 0, &loud));
        r.on_rtp(t0, Leg::B, &packet(0, 2, 1, 0, &loud));
        r.on_rtp(t0, Leg::A, &packet(0, 1, 2, 160, &loud));
        // Truncated, older than the first, far ahead: none panics.
        r.on_rtp(t0, Leg::A, &[0x80, 0]);
        r.on_rtp(t0, Leg::A, &packet(0, 1, 0, u32::MAX - 10, &loud));
        r.on_rtp(t0, Leg::A, &packet(0, 1, 3, 9_000_000, &loud));
        let rec = r.finish();
        assert_eq!(rec.samples.len(), 240, "30 ms at most");
        assert!(rec.samples[..160].iter().all(|s| *s > 30_000), "saturated");
    }
}
