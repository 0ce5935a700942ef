//! DTMF: the keypad's tone pairs (ITU-T Q.23) and the receiving side of RFC 4733
//! telephone events, which turns a stream of event packets into one digit per
//! key press.
//!
//! # Receiving events (RFC 4733 §2.5.2)
//! A key press is one event, identified by its RTP timestamp (the start of the
//! event) and SSRC. The sender repeats it with a growing duration while the key
//! is held, then sends the end packet (E bit) three times. [`DtmfReceiver`]
//! reports the digit once, on the first end packet, with the duration it gives;
//! later packets of the same event (retransmitted ends, late updates) and
//! packets older than the current event are ignored. An event whose end packets
//! were all lost is reported when the next event starts, or once no update came
//! for [`EVENT_STALE`]. A long press split into segments (§2.5.1.3: a new
//! timestamp where the last segment's duration ran out) stays one digit.
//!
//! Bounded: one event's state per receiver, and at most [`MAX_DIGITS_PER_SECOND`]
//! digits reported per second (a person dials about ten); the rest are counted.

use std::time::{Duration, Instant};

use crate::rtp;

/// The keypad in RFC 4733 event-code order: codes 0–15 are `0`–`9`, `*`, `#`,
/// `A`–`D` (RFC 4733 §3.2).
const EVENT_DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The digit of an RFC 4733 DTMF event code.
pub fn event_digit(code: u8) -> Option<char> {
    EVENT_DIGITS.get(usize::from(code)).copied()
}

/// The RFC 4733 event code of a keypad digit (`0`–`9`, `*`, `#`, `A`–`D`,
/// lowercase letters accepted).
pub fn digit_event(digit: char) -> Option<u8> {
    let d = digit.to_ascii_uppercase();
    EVENT_DIGITS.iter().position(|c| *c == d).map(|i| i as u8)
}

/// The low- and high-group frequencies in Hz of a keypad digit (ITU-T Q.23).
pub fn tone_pair(digit: char) -> Option<(u32, u32)> {
    const LOW: [u32; 4] = [697, 770, 852, 941];
    const HIGH: [u32; 4] = [1209, 1336, 1477, 1633];
    const KEYPAD: [[char; 4]; 4] = [
        ['1', '2', '3', 'A'],
        ['4', '5', '6', 'B'],
        ['7', '8', '9', 'C'],
        ['*', '0', '#', 'D'],
    ];
    let d = digit.to_ascii_uppercase();
    KEYPAD.iter().enumerate().find_map(|(row, keys)| {
        keys.iter()
            .position(|k| *k == d)
            .map(|col| (LOW[row], HIGH[col]))
    })
}

/// An event with no update for this long is taken as ended (its end packets
/// were lost); senders update every 50 ms or so.
pub const EVENT_STALE: Duration = Duration::from_millis(500);

/// Digits reported per second and receiver at most.
pub const MAX_DIGITS_PER_SECOND: u32 = 25;

/// A key press heard on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// `0`–`9`, `*`, `#`, `A`–`D`.
    pub digit: char,
    /// How long the key was held, in milliseconds.
    pub duration_ms: u32,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    ssrc: u32,
    /// Timestamp of the current segment.
    ts: u32,
    code: u8,
    /// Duration of the segments before the current one.
    earlier: u32,
    /// Duration of the current segment.
    duration: u32,
    reported: bool,
    updated: Instant,
}

impl Event {
    fn total(&self) -> u32 {
        self.earlier.saturating_add(self.duration)
    }
}

/// Turns RFC 4733 packets of one payload type into digits. See the module docs.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    payload_type: u8,
    clock_rate: u32,
    current: Option<Event>,
    window: Option<(Instant, u32)>,
    suppressed: u64,
}

impl DtmfReceiver {
    /// A receiver for telephone events on `payload_type` at `clock_rate` Hz.
    pub fn new(payload_type: u8, clock_rate: u32) -> Self {
        Self {
            payload_type,
            clock_rate: clock_rate.max(1),
            current: None,
            window: None,
            suppressed: 0,
        }
    }

    /// The payload type listened to.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Digits dropped by the rate limit.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Takes one plaintext RTP packet; packets of other payload types, malformed
    /// ones and events that are not digits are ignored. Returns up to two
    /// digits: an earlier press whose end was lost, and this one.
    pub fn on_rtp(&mut self, now: Instant, pkt: &[u8]) -> [Option<Digit>; 2] {
        let mut out = [None, None];
        let Some((ssrc, ts, code, end, duration)) = self.parse(pkt) else {
            return out;
        };
        if let Some(cur) = &mut self.current
            && cur.ssrc == ssrc
        {
            if cur.ts == ts {
                if !cur.reported && cur.code == code {
                    cur.duration = cur.duration.max(u32::from(duration));
                    cur.updated = now;
                    if end {
                        cur.reported = true;
                        let done = *cur;
                        out[1] = self.report(now, &done);
                    }
                }
                return out;
            }
            // Older than the current event: a late packet of an earlier one.
            if (ts.wrapping_sub(cur.ts) as i32) < 0 {
                return out;
            }
            // The next segment of a long press (RFC 4733 §2.5.1.3).
            if !cur.reported && cur.code == code && ts == cur.ts.wrapping_add(cur.duration) {
                cur.earlier = cur.total();
                cur.ts = ts;
                cur.duration = u32::from(duration);
                cur.updated = now;
                if end {
                    cur.reported = true;
                    let done = *cur;
                    out[1] = self.report(now, &done);
                }
                return out;
            }
        }
        if let Some(prev) = self.current.take()
            && !prev.reported
        {
            out[0] = self.report(now, &prev);
        }
        let event = Event {
            ssrc,
            ts,
            code,
            earlier: 0,
            duration: u32::from(duration),
            reported: end,
            updated: now,
        };
        self.current = Some(event);
        if end {
            out[1] = self.report(now, &event);
        }
        out
    }

    /// When an unfinished event will be taken as ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current
            .filter(|e| !e.reported)
            .map(|e| e.updated + EVENT_STALE)
    }

    /// Reports an event whose end packets never came, once it is stale.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Digit> {
        let cur = self.current.as_mut()?;
        if cur.reported || now < cur.updated + EVENT_STALE {
            return None;
        }
        cur.reported = true;
        let done = *cur;
        self.report(now, &done)
    }

    fn parse(&self, pkt: &[u8]) -> Option<(u32, u32, u8, bool, u16)> {
        let payload = rtp::payload(pkt)?;
        if pkt[1] & 0x7f != self.payload_type {
            return None;
        }
        let &[code, flags, d0, d1, ..] = payload else {
            return None;
        };
        event_digit(code)?;
        let ts = rtp::timestamp(pkt)?;
        let ssrc = rtp::ssrc(pkt, rtp::Channel::Rtp)?;
        Some((
            ssrc,
            ts,
            code,
            flags & 0x80 != 0,
            u16::from_be_bytes([d0, d1]),
        ))
    }

    fn report(&mut self, now: Instant, event: &Event) -> Option<Digit> {
        let (start, count) = match self.window {
            Some((start, count)) if now < start + Duration::from_secs(1) => (start, count),
            _ => (now, 0),
        };
        if count >= MAX_DIGITS_PER_SECOND {
            self.suppressed += 1;
            return None;
        }
        self.window = Some((start, count + 1));
        let ms = u64::from(event.total()) * 1000 / u64::from(self.clock_rate);
        Some(Digit {
            digit: event_digit(event.code)?,
            duration_ms: u32::try_from(ms).unwrap_or(u32::MAX),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An RFC 4733 packet: payload type 101, the given header fields and event.
    pub(crate) fn event(seq: u16, ts: u32, code: u8, end: bool, duration: u16) -> Vec<u8> {
        let mut p = vec![0x80, 101];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[code, if end { 0x80 | 10 } else { 10 }]);
        p.extend_from_slice(&duration.to_be_bytes());
        p
    }

    /// A press of `code` at `ts` as a phone sends it: updates every 50 ms
    /// (400 samples) and the end packet three times.
    pub(crate) fn press(seq: &mut u16, ts: u32, code: u8, samples: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut d = 0u16;
        while d + 400 < samples {
            d += 400;
            out.push(event(*seq, ts, code, false, d));
            *seq = seq.wrapping_add(1);
        }
        for _ in 0..3 {
            out.push(event(*seq, ts, code, true, samples));
            *seq = seq.wrapping_add(1);
        }
        out
    }

    fn feed(rx: &mut DtmfReceiver, now: Instant, pkts: &[Vec<u8>]) -> Vec<Digit> {
        pkts.iter()
            .flat_map(|p| rx.on_rtp(now, p))
            .flatten()
            .collect()
    }

    #[test]
    fn keypad_tables() {
        assert_eq!(tone_pair('1'), Some((697, 1209)));
        assert_eq!(tone_pair('0'), Some((941, 1336)));
        assert_eq!(tone_pair('#'), Some((941, 1477)));
        assert_eq!(tone_pair('d'), Some((941, 1633)));
        assert_eq!(tone_pair('x'), None);
        assert_eq!(digit_event('*'), Some(10));
        assert_eq!(digit_event('b'), Some(13));
        for code in 0..16 {
            assert_eq!(digit_event(event_digit(code).unwrap()), Some(code));
        }
        assert_eq!(event_digit(16), None);
    }

    #[test]
    fn a_press_with_retransmitted_ends_is_one_digit() {
        let t = Instant::now();
        let mut rx = DtmfReceiver::new(101, 8000);
        let mut seq = 100;
        let pkts = press(&mut seq, 16000, 5, 1600);
        assert_eq!(
            feed(&mut rx, t, &pkts),
            [Digit {
                digit: '5',
                duration_ms: 200
            }]
        );
        // A replayed update or end of the same event changes nothing.
        assert!(feed(&mut rx, t, &pkts).is_empty());
        // The next press is a new digit; then a late end of the first is ignored.
        let second = press(&mut seq, 24000, 11, 800);
        assert_eq!(feed(&mut rx, t, &second)[0].digit, '#');
        assert!(feed(&mut rx, t, &pkts[pkts.len() - 1..]).is_empty());
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn lost_ends_are_reported_by_the_next_press_or_the_timeout() {
        let t = Instant::now();
        let mut rx = DtmfReceiver::new(101, 8000);
        let mut seq = 1;
        let mut first = press(&mut seq, 8000, 1, 1200);
        first.truncate(first.len() - 3);
        assert!(feed(&mut rx, t, &first).is_empty());
        let got = feed(&mut rx, t, &press(&mut seq, 16000, 2, 800));
        assert_eq!(got.iter().map(|d| d.digit).collect::<String>(), "12");
        assert_eq!(got[0].duration_ms, 100, "last update before the loss");

        let mut third = press(&mut seq, 24000, 3, 800);
        third.truncate(1);
        assert!(feed(&mut rx, t, &third).is_empty());
        let due = rx.poll_timeout().unwrap();
        assert_eq!(due, t + EVENT_STALE);
        assert_eq!(rx.handle_timeout(due - Duration::from_millis(1)), None);
        assert_eq!(rx.handle_timeout(due).map(|d| d.digit), Some('3'));
        assert_eq!(rx.handle_timeout(due + EVENT_STALE), None);
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn a_long_press_in_segments_is_one_digit() {
        let t = Instant::now();
        let mut rx = DtmfReceiver::new(101, 8000);
        let start = u32::MAX - 100; // and the timestamp wraps
        assert!(
            feed(
                &mut rx,
                t,
                &[
                    event(1, start, 9, false, 400),
                    event(2, start, 9, false, 0xffff)
                ]
            )
            .is_empty()
        );
        let next = start.wrapping_add(0xffff);
        let got = feed(
            &mut rx,
            t,
            &[
                event(3, next, 9, false, 8000),
                event(4, next, 9, true, 8000),
            ],
        );
        assert_eq!(
            got,
            [Digit {
                digit: '9',
                duration_ms: (0xffff + 8000) / 8
            }]
        );
    }

    #[test]
    fn garbage_and_foreign_payload_types_yield_nothing() {
        let t = Instant::now();
        let mut rx = DtmfReceiver::new(101, 8000);
        let mut audio = event(1, 0, 1, true, 800);
        audio[1] = 0; // PCMU
        let mut short = event(1, 0, 1, true, 800);
        short.truncate(14);
        let mut flash = event(1, 0, 16, true, 800); // hook flash, not a digit
        flash[1] = 101;
        let mut padded = event(1, 0, 1, true, 800);
        padded[0] |= 0x20;
        padded.push(200); // padding longer than the packet
        for bad in [
            audio,
            short,
            flash,
            padded,
            vec![],
            vec![0x80],
            vec![0xff; 40],
        ] {
            assert_eq!(rx.on_rtp(t, &bad), [None, None]);
        }
        // Correct padding is honoured.
        let mut ok = event(2, 800, 7, true, 800);
        ok[0] |= 0x20;
        ok.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(rx.on_rtp(t, &ok)[1].map(|d| d.digit), Some('7'));
    }

    #[test]
    fn random_packets_never_panic() {
        let t = Instant::now();
        let mut rx = DtmfReceiver::new(101, 8000);
        for i in 0..20_000u32 {
            let len = rand::random_range(0..40);
            let mut p: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if len > 1 {
                // Mostly well-formed RTP of the right payload type.
                p[0] = 0x80 | (p[0] & 0x3f);
                p[1] = (p[1] & 0x80) | 101;
            }
            let now = t + Duration::from_millis(u64::from(i));
            let _ = rx.on_rtp(now, &p);
            let _ = rx.handle_timeout(now);
        }
    }

    #[test]
    fn a_flood_of_events_is_rate_limited() {
        let t = Instant::now();
        let mut rx = DtmfReceiver::new(101, 8000);
        let digits: Vec<Digit> = (0..100u32)
            .flat_map(|i| rx.on_rtp(t, &event(i as u16, i * 160, 1, true, 160)))
            .flatten()
            .collect();
        assert_eq!(digits.len(), MAX_DIGITS_PER_SECOND as usize);
        assert_eq!(rx.suppressed(), 100 - u64::from(MAX_DIGITS_PER_SECOND));
        let later = t + Duration::from_secs(1);
        assert!(rx.on_rtp(later, &event(200, 1_000_000, 2, true, 160))[1].is_some());
    }
}
