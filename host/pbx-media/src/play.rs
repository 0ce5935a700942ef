//! Playback: [`Player`] turns queued [`Prompt`]s into G.711 RTP packets of
//! 20 ms (RFC 3551 §4.5.14; 20 ms is its default packetization interval,
//! §4.2), each due at an exact instant. Sans-IO like the rest: `play(prompt, now)`, then
//! `poll_timeout()` says when the next packet is due and `poll_packet(now)`
//! hands out the packets due by `now`.
//!
//! # RTP stream (RFC 3550)
//! - A random SSRC, initial sequence number and timestamp (§5.1), kept for the
//!   player's life: prompts played one after another continue the sequence and
//!   the timestamp.
//! - The marker bit is set on the first packet of each talkspurt (RFC 3551
//!   §4.1): the first packet ever, and the first after the player fell silent.
//!   After a silence the timestamp jumps by the time that passed, so it keeps
//!   following the sampling clock; a prompt queued before the previous one's
//!   last packet has played out follows it without a gap or a marker.
//! - The last packet of a prompt is padded with silence to 20 ms.
//!
//! # Pacing
//! Packet *n* of a talkspurt is due at its start plus *n* × 20 ms: the schedule
//! is absolute, so a driver that wakes late does not make later packets late.
//! A packet more than [`MAX_LATE`] behind its due time moves the schedule
//! (the next one is due 20 ms after it was sent) instead of being followed by
//! a burst.
//!
//! Bounded: at most [`MAX_QUEUED_PROMPTS`] prompts wait; one packet is built at
//! a time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::g711::G711;
use crate::prompt::{Prompt, SAMPLE_RATE};

/// The packet interval.
pub const PTIME: Duration = Duration::from_millis(20);

/// Samples in one packet (20 ms at 8 kHz).
pub const FRAME_SAMPLES: usize = 160;

/// Prompts that may wait behind the one playing.
pub const MAX_QUEUED_PROMPTS: usize = 16;

/// A packet this late moves the schedule instead of starting a catch-up burst.
pub const MAX_LATE: Duration = Duration::from_millis(60);

const RTP_HEADER: usize = 12;

/// One packet handed out by [`Player::poll_packet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Played {
    /// When it was due.
    pub due: Instant,
    /// The plaintext RTP packet.
    pub packet: Bytes,
    /// Whether it is the last packet of a prompt.
    pub finished_prompt: bool,
}

/// Plays prompts as one paced RTP stream. See the module docs.
#[derive(Debug)]
pub struct Player {
    codec: G711,
    payload_type: u8,
    ssrc: u32,
    /// Sequence number and timestamp of the next packet.
    seq: u16,
    ts: u32,
    marker: bool,
    queue: VecDeque<Prompt>,
    /// Samples of the front prompt already sent.
    at: usize,
    next_due: Option<Instant>,
    /// Due instant of the last packet sent.
    last_due: Option<Instant>,
}

fn samples_in(d: Duration) -> u32 {
    (d.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000) as u32
}

impl Player {
    /// A player sending `codec` as `payload_type`, with a random SSRC,
    /// sequence number and timestamp.
    pub fn new(codec: G711, payload_type: u8) -> Self {
        Self::with_stream(
            codec,
            payload_type,
            rand::random(),
            rand::random(),
            rand::random(),
        )
    }

    /// A player whose stream starts at the given SSRC, sequence number and timestamp.
    pub fn with_stream(codec: G711, payload_type: u8, ssrc: u32, seq: u16, ts: u32) -> Self {
        Self {
            codec,
            payload_type: payload_type & 0x7f,
            ssrc,
            seq,
            ts,
            marker: true,
            queue: VecDeque::new(),
            at: 0,
            next_due: None,
            last_due: None,
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The law and payload type packets are sent with.
    pub fn format(&self) -> (G711, u8) {
        (self.codec, self.payload_type)
    }

    /// Changes the law and payload type of the packets still to come (a new
    /// answer chose another); the stream goes on.
    pub fn set_format(&mut self, codec: G711, payload_type: u8) {
        self.codec = codec;
        self.payload_type = payload_type & 0x7f;
    }

    /// Queues `prompt`; it starts at `now` when nothing is playing.
    pub fn play(&mut self, prompt: Prompt, now: Instant) -> Result<()> {
        if self.queue.len() > MAX_QUEUED_PROMPTS {
            return Err(Error::Prompt(format!(
                "more than {MAX_QUEUED_PROMPTS} prompts are queued"
            )));
        }
        self.queue.push_back(prompt);
        if self.next_due.is_none() {
            self.next_due = Some(self.start(now));
        }
        Ok(())
    }

    /// When a new talkspurt starting at `now` plays its first packet, with the
    /// timestamp and marker set for it.
    fn start(&mut self, now: Instant) -> Instant {
        let Some(last) = self.last_due else {
            return now;
        };
        let seamless = last + PTIME;
        if now <= seamless {
            return seamless;
        }
        self.ts = self.ts.wrapping_add(samples_in(now - seamless));
        self.marker = true;
        now
    }

    /// Drops the prompt playing and those queued (barge-in); returns whether
    /// anything was playing. The stream goes on with the next prompt.
    pub fn stop(&mut self) -> bool {
        let was = self.next_due.take().is_some();
        self.queue.clear();
        self.at = 0;
        was
    }

    /// Prompts queued, the one playing included; each is followed by one
    /// packet with [`Played::finished_prompt`] unless stopped.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a prompt is playing.
    pub fn is_playing(&self) -> bool {
        self.next_due.is_some()
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_due
    }

    /// The next packet, if it is due by `now`.
    pub fn poll_packet(&mut self, now: Instant) -> Option<Played> {
        let due = self.next_due.filter(|d| *d <= now)?;
        let prompt = self.queue.front()?;
        let mut packet = BytesMut::with_capacity(RTP_HEADER + FRAME_SAMPLES);
        packet.put_u8(0x80);
        packet.put_u8((u8::from(self.marker) << 7) | self.payload_type);
        packet.put_u16(self.seq);
        packet.put_u32(self.ts);
        packet.put_u32(self.ssrc);
        let mut payload = [0u8; FRAME_SAMPLES];
        self.codec
            .encode_frame(prompt.chunk(self.at, FRAME_SAMPLES), &mut payload);
        packet.put_slice(&payload);

        self.at += FRAME_SAMPLES;
        let finished_prompt = self.at >= prompt.samples();
        if finished_prompt {
            self.queue.pop_front();
            self.at = 0;
        }
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
        self.marker = false;
        // A packet far behind moves the schedule to when it actually left.
        let sent = if now - due > MAX_LATE { now } else { due };
        self.last_due = Some(sent);
        self.next_due = (!self.queue.is_empty()).then_some(sent + PTIME);
        Some(Played {
            due,
            packet: packet.freeze(),
            finished_prompt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(p: &[u8]) -> (bool, u8, u16, u32, u32) {
        (
            p[1] & 0x80 != 0,
            p[1] & 0x7f,
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        )
    }

    /// Drives `player` on a virtual clock from `t` until it stops, stepping to
    /// each due instant; returns the packets and the instant the last was sent.
    fn drain(player: &mut Player, mut t: Instant) -> (Vec<Played>, Instant) {
        let mut out = Vec::new();
        while let Some(due) = player.poll_timeout() {
            assert!(player.poll_packet(due - Duration::from_nanos(1)).is_none());
            t = due;
            out.push(player.poll_packet(t).unwrap());
            assert!(player.poll_packet(t).is_none(), "one packet per due time");
        }
        (out, t)
    }

    #[test]
    fn a_one_second_prompt_is_fifty_packets_twenty_ms_apart() {
        let t0 = Instant::now();
        let mut p = Player::with_stream(G711::Pcmu, 0, 0xabcd, 65530, u32::MAX - 400);
        assert_eq!(p.poll_timeout(), None);
        p.play(Prompt::beep(), t0).unwrap();
        assert_eq!(p.poll_timeout(), Some(t0));
        let (pkts, _) = drain(&mut p, t0);
        assert_eq!(pkts.len(), 50);
        for (i, pk) in pkts.iter().enumerate() {
            assert_eq!(pk.due, t0 + PTIME * i as u32);
            assert_eq!(pk.packet.len(), 12 + 160);
            let (marker, pt, seq, ts, ssrc) = header(&pk.packet);
            assert_eq!((marker, pt, ssrc), (i == 0, 0, 0xabcd));
            assert_eq!(seq, 65530u16.wrapping_add(i as u16), "wraps");
            assert_eq!(ts, (u32::MAX - 400).wrapping_add(160 * i as u32));
            assert_eq!(pk.finished_prompt, i == 49);
        }
        // The payload is the beep in µ-law: silence at the faded edges.
        assert_eq!(pkts[0].packet[12], 0xff);
        assert_ne!(pkts[0].packet[12 + 18], 0xff, "a crest of the sine");
        assert!(!p.is_playing());
    }

    #[test]
    fn prompts_continue_the_stream_and_silences_move_the_timestamp() {
        let t0 = Instant::now();
        let mut p = Player::with_stream(G711::Pcma, 8, 7, 100, 1000);
        let short = Prompt::silence(Duration::from_millis(50)).unwrap(); // 3 packets, padded
        p.play(short.clone(), t0).unwrap();
        p.play(short.clone(), t0).unwrap();
        let (first, end) = drain(&mut p, t0);
        assert_eq!(first.len(), 6);
        assert!(first.iter().skip(1).all(|pk| !header(&pk.packet).0));
        assert_eq!(first.iter().filter(|pk| pk.finished_prompt).count(), 2);
        assert!(
            first
                .iter()
                .all(|pk| pk.packet[12..].iter().all(|b| *b == 0xd5))
        );
        assert_eq!(end, t0 + PTIME * 5);

        // Queued within the last packet's 20 ms: seamless, no marker.
        p.play(short.clone(), end + Duration::from_millis(5))
            .unwrap();
        assert_eq!(p.poll_timeout(), Some(end + PTIME));
        let (second, end) = drain(&mut p, end);
        let (m, _, seq, ts, _) = header(&second[0].packet);
        assert_eq!((m, seq, ts), (false, 106, 1000 + 6 * 160));

        // After a second of silence: marker, and the timestamp moved by it.
        let later = end + PTIME + Duration::from_secs(1);
        p.play(short, later).unwrap();
        let (third, _) = drain(&mut p, later);
        let (m, _, seq, ts, _) = header(&third[0].packet);
        assert_eq!((m, seq), (true, 109));
        assert_eq!(ts, 1000 + 9 * 160 + 8000);
    }

    #[test]
    fn late_driving_catches_up_a_little_and_reschedules_a_lot() {
        let t0 = Instant::now();
        let mut p = Player::with_stream(G711::Pcmu, 0, 1, 1, 1);
        p.play(Prompt::beep(), t0).unwrap();
        // 45 ms late: the three due packets go at once, the schedule holds.
        let t = t0 + Duration::from_millis(45);
        let burst: Vec<Played> = std::iter::from_fn(|| p.poll_packet(t)).collect();
        assert_eq!(burst.len(), 3);
        assert_eq!(p.poll_timeout(), Some(t0 + PTIME * 3));
        // 200 ms late: one packet, then the schedule starts again from now.
        let t = t0 + Duration::from_millis(260);
        assert!(p.poll_packet(t).is_some());
        assert!(p.poll_packet(t).is_none());
        assert_eq!(p.poll_timeout(), Some(t + PTIME));
    }

    #[test]
    fn stop_drops_the_queue_and_the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut p = Player::new(G711::Pcmu, 0);
        let tone = Prompt::dtmf('5', Duration::from_millis(100)).unwrap();
        for _ in 0..=MAX_QUEUED_PROMPTS {
            p.play(tone.clone(), t0).unwrap();
        }
        assert!(matches!(p.play(tone.clone(), t0), Err(Error::Prompt(_))));
        assert_eq!(p.queued(), MAX_QUEUED_PROMPTS + 1);
        assert!(p.poll_packet(t0).is_some());
        assert!(p.stop());
        assert_eq!(p.queued(), 0);
        assert!(!p.stop());
        assert_eq!((p.poll_timeout(), p.poll_packet(t0 + PTIME)), (None, None));
        // Playing again starts with the prompt's first packet.
        p.play(tone, t0 + PTIME * 10).unwrap();
        let (pkts, _) = drain(&mut p, t0);
        assert_eq!(pkts.len(), 5);
        assert!(header(&pkts[0].packet).0);
    }
}
