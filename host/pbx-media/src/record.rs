//! Recording: [`Recorder`] turns the G.711 RTP packets a caller sends into
//! 8 kHz linear PCM, a [`Recording`], and decides when it ends. Sans-IO like
//! the rest: packets and `now` go in (`on_rtp`), `poll_timeout()` says when a
//! deadline falls, `handle_timeout(now)` applies it, and an end, once reached,
//! is returned to the caller, who takes the audio with `finish`.
//!
//! # Placing audio
//! The first packet is the recording's first sample. Each later packet is
//! placed by its RTP timestamp (RFC 3550 §5.1; G.711 counts one per sample)
//! relative to the samples before it:
//! - a timestamp past the end of what is recorded by at most [`MAX_GAP`] leaves
//!   a gap, filled with silence (lost packets, a sender's silence suppression);
//! - one behind it by at most [`MAX_GAP`] is a duplicate or came late and is
//!   ignored (no reordering buffer: a gap once filled stays silent);
//! - a new SSRC, or a jump either way larger than [`MAX_GAP`] (a sender that
//!   restarted its clock), goes on directly after what is recorded.
//!
//! Only the payload type the host's answer chose is recorded; telephone
//! events, comfort noise and anything else are left to others.
//!
//! # Ends
//! - [`RecordingEnd::MaxLength`]: the recording holds `max` of audio, or `max`
//!   has passed since it started (packets or not). `max` is capped at
//!   [`MAX_RECORDING`], which bounds the memory a recording holds
//!   ([`MAX_RECORDING_SAMPLES`] samples, 9.6 MB).
//! - [`RecordingEnd::Silence`]: with [`RecordSpec::silence`], that long
//!   without voice (a packet whose level reaches [`VOICE_LEVEL_DBM0`]), on the
//!   recording's own timeline or, when packets stop coming, on the clock. The
//!   trailing silence is trimmed. Before any voice the time since the start
//!   counts as silence too, so a caller who says nothing ends the recording
//!   `silence` after it started, with no audio.
//! - [`RecordingEnd::FinishKey`] and [`RecordingEnd::Stopped`] are decided by
//!   the session (a key press, a call to stop); the audio is kept as it is.

use std::io::Cursor;
use std::time::{Duration, Instant};

use crate::g711::G711;
use crate::prompt::{DBM0_PEAK, SAMPLE_RATE, duration_of, samples_in};
use crate::rtp;

/// The longest recording: a longer [`RecordSpec::max`] is cut to this.
pub const MAX_RECORDING: Duration = Duration::from_secs(600);

/// Samples in [`MAX_RECORDING`].
pub const MAX_RECORDING_SAMPLES: usize = 600 * SAMPLE_RATE as usize;

/// The largest timestamp jump taken as a gap (or a late packet) rather than a
/// restarted clock.
pub const MAX_GAP: Duration = Duration::from_secs(5);

/// A packet at or above this level (RMS, in dBm0) is voice; below it, silence.
/// Speech is around −20 dBm0, a quiet line's noise −60 dBm0 or below.
pub const VOICE_LEVEL_DBM0: f64 = -40.0;

/// How to record. See the module docs for what ends a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpec {
    /// The longest recording (capped at [`MAX_RECORDING`]).
    pub max: Duration,
    /// Whether a beep ([`crate::Prompt::beep`]) is played first; the recording
    /// starts when it has finished.
    pub beep: bool,
    /// A key (`0`–`9`, `*`, `#`, `A`–`D`) that ends the recording; it is not
    /// reported as a digit.
    pub finish_key: Option<char>,
    /// Silence that ends the recording.
    pub silence: Option<Duration>,
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingEnd {
    /// It reached [`RecordSpec::max`].
    MaxLength,
    /// [`RecordSpec::silence`] passed without voice.
    Silence,
    /// The caller pressed [`RecordSpec::finish_key`].
    FinishKey,
    /// It was stopped (`stop_recording`).
    Stopped,
}

/// What was recorded: 8 kHz mono linear PCM, from the first packet heard.
#[derive(Clone, PartialEq, Eq)]
pub struct Recording {
    /// 8 kHz mono 16-bit linear PCM.
    pub samples: Vec<i16>,
    /// Why it ended.
    pub end: RecordingEnd,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("samples", &self.samples.len())
            .field("duration", &self.duration())
            .field("end", &self.end)
            .finish()
    }
}

impl Recording {
    /// How long the audio lasts.
    pub fn duration(&self) -> Duration {
        duration_of(self.samples.len())
    }

    /// The audio as a WAV file: 8 kHz mono 16-bit PCM.
    pub fn to_wav(&self) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::with_capacity(44 + 2 * self.samples.len()));
        // Writing to memory fails only past 4 GB, far above MAX_RECORDING.
        let mut w = hound::WavWriter::new(&mut out, spec).expect("a WAV header in memory");
        for s in &self.samples {
            w.write_sample(*s).expect("a WAV sample in memory");
        }
        w.finalize().expect("a WAV file in memory");
        out.into_inner()
    }
}

/// The RMS a packet needs to count as voice: [`VOICE_LEVEL_DBM0`] of a sine
/// whose peak is 0 dBm0's.
fn voice_rms() -> f64 {
    DBM0_PEAK / std::f64::consts::SQRT_2 * 10f64.powf(VOICE_LEVEL_DBM0 / 20.0)
}

fn is_voice(pcm: &[i16]) -> bool {
    if pcm.is_empty() {
        return false;
    }
    let energy: f64 = pcm.iter().map(|s| f64::from(*s).powi(2)).sum();
    energy / pcm.len() as f64 >= voice_rms().powi(2)
}

/// Records one leg. See the module docs.
#[derive(Debug)]
pub struct Recorder {
    max: Duration,
    max_samples: usize,
    silence: Option<Duration>,
    created: Instant,
    started: Option<Instant>,
    samples: Vec<i16>,
    /// SSRC and RTP timestamp of the sample that would follow the recorded ones.
    next: Option<(u32, u32)>,
    /// The end of the last packet of voice, in samples.
    voiced_until: usize,
    /// When the last packet of voice arrived (the start before any).
    last_voice: Instant,
}

impl Recorder {
    /// A recorder that starts at `now`.
    pub fn new(spec: &RecordSpec, now: Instant) -> Self {
        let mut r = Self::pending(spec, now);
        r.start(now);
        r
    }

    /// A recorder that waits for [`Recorder::start`] (after a beep); it takes
    /// no packets and has no deadline until then.
    pub fn pending(spec: &RecordSpec, now: Instant) -> Self {
        let max = spec.max.min(MAX_RECORDING);
        Self {
            max,
            max_samples: samples_in(max).min(MAX_RECORDING_SAMPLES),
            silence: spec.silence,
            created: now,
            started: None,
            samples: Vec::new(),
            next: None,
            voiced_until: 0,
            last_voice: now,
        }
    }

    /// Starts recording at `now`, or when the recorder was made if that is
    /// later; a started recorder stays as it is.
    pub fn start(&mut self, now: Instant) {
        if self.started.is_none() {
            let at = now.max(self.created);
            self.started = Some(at);
            self.last_voice = at;
        }
    }

    /// When it was made.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Whether it has started.
    pub fn is_started(&self) -> bool {
        self.started.is_some()
    }

    /// Samples recorded so far.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// Takes one plaintext RTP packet; only `payload_type`, decoded with `law`,
    /// is recorded. Returns the end the recording reached, if it did.
    pub fn on_rtp(
        &mut self,
        now: Instant,
        pkt: &[u8],
        payload_type: u8,
        law: G711,
    ) -> Option<RecordingEnd> {
        self.started?;
        if let Some(end) = self.expired(now) {
            return Some(end);
        }
        let payload = rtp::payload(pkt)?;
        if pkt[1] & 0x7f != payload_type || payload.is_empty() {
            return None;
        }
        let ssrc = rtp::ssrc(pkt, rtp::Channel::Rtp)?;
        let ts = rtp::timestamp(pkt)?;
        let len = self.samples.len();
        let max_gap = samples_in(MAX_GAP) as i64;
        let at = match self.next {
            Some((s, next_ts)) if s == ssrc => {
                let delta = i64::from(ts.wrapping_sub(next_ts) as i32);
                if (-max_gap..0).contains(&delta) {
                    return None; // a duplicate or a late packet
                }
                if delta > max_gap || delta < 0 {
                    len // a restarted clock
                } else {
                    len + delta as usize
                }
            }
            _ => len, // the first packet, or a new source
        };
        self.next = Some((ssrc, ts.wrapping_add(payload.len() as u32)));
        let at = at.min(self.max_samples);
        self.samples.resize(at, 0);
        let room = self.max_samples - at;
        let take = payload.len().min(room);
        self.samples.reserve(take);
        self.samples
            .extend(payload[..take].iter().map(|c| law.decode(*c)));
        if is_voice(&self.samples[at..]) {
            self.voiced_until = self.samples.len();
            self.last_voice = now;
        }
        if self.samples.len() >= self.max_samples {
            return Some(RecordingEnd::MaxLength);
        }
        let silent = self.samples.len() - self.voiced_until;
        if self.silence.is_some_and(|s| silent >= samples_in(s)) {
            return Some(RecordingEnd::Silence);
        }
        None
    }

    /// The deadlines: the start plus `max`, and the last voice plus `silence`.
    fn deadlines(&self) -> Option<(Instant, Option<Instant>)> {
        let started = self.started?;
        Some((
            started + self.max,
            self.silence.map(|s| self.last_voice + s),
        ))
    }

    fn expired(&self, now: Instant) -> Option<RecordingEnd> {
        let (max, silence) = self.deadlines()?;
        match silence {
            Some(s) if s <= max && now >= s => Some(RecordingEnd::Silence),
            _ if now >= max => Some(RecordingEnd::MaxLength),
            Some(s) if now >= s => Some(RecordingEnd::Silence),
            _ => None,
        }
    }

    /// When [`Recorder::handle_timeout`] has a deadline to apply.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (max, silence) = self.deadlines()?;
        Some(silence.map_or(max, |s| s.min(max)))
    }

    /// The end a deadline passed by `now` brings, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<RecordingEnd> {
        self.expired(now)
    }

    /// The recording, ended by `end`; after [`RecordingEnd::Silence`] without
    /// its trailing silence.
    pub fn finish(mut self, end: RecordingEnd) -> Recording {
        if end == RecordingEnd::Silence {
            self.samples.truncate(self.voiced_until);
        }
        Recording {
            samples: self.samples,
            end,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::prompt::Prompt;

    /// PCMU packets of `pcm`, 160 samples each, from timestamp `ts0`.
    pub(crate) fn packets(law: G711, pt: u8, ssrc: u32, ts0: u32, pcm: &[i16]) -> Vec<Vec<u8>> {
        pcm.chunks(160)
            .enumerate()
            .map(|(i, chunk)| {
                let mut p = vec![0x80, pt];
                p.extend_from_slice(&(i as u16).to_be_bytes());
                p.extend_from_slice(&ts0.wrapping_add(160 * i as u32).to_be_bytes());
                p.extend_from_slice(&ssrc.to_be_bytes());
                let mut payload = vec![0u8; chunk.len()];
                law.encode_frame(chunk, &mut payload);
                p.extend_from_slice(&payload);
                p
            })
            .collect()
    }

    /// What `pcm` is after G.711 and back.
    pub(crate) fn through(law: G711, pcm: &[i16]) -> Vec<i16> {
        pcm.iter().map(|s| law.decode(law.encode(*s))).collect()
    }

    pub(crate) fn tone(ms: u64) -> Vec<i16> {
        let t = Prompt::tone(&[440], -10.0, Duration::from_millis(ms)).unwrap();
        t.chunk(0, t.samples()).to_vec()
    }

    fn spec(max: u64, silence: Option<u64>) -> RecordSpec {
        RecordSpec {
            max: Duration::from_secs(max),
            beep: false,
            finish_key: None,
            silence: silence.map(Duration::from_millis),
        }
    }

    const MS20: Duration = Duration::from_millis(20);

    #[test]
    fn packets_are_placed_by_timestamp() {
        let t0 = Instant::now();
        let mut r = Recorder::new(&spec(60, None), t0);
        let pcm = tone(200);
        let mut pkts = packets(G711::Pcma, 8, 9, u32::MAX - 500, &pcm);
        // Lose the fourth packet, repeat the second, bring the sixth late.
        pkts.remove(3);
        let dup = pkts[1].clone();
        pkts.insert(2, dup);
        let late = pkts.remove(5);
        pkts.insert(7, late);
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(r.on_rtp(t0 + MS20 * i as u32, p, 8, G711::Pcma), None);
        }
        let mut want = through(G711::Pcma, &pcm);
        want[480..640].fill(0); // lost
        want[5 * 160..6 * 160].fill(0); // came after a later one
        let got = r.finish(RecordingEnd::Stopped);
        assert_eq!(got.samples.len(), 1600, "the timestamp wrapped");
        assert_eq!(got.samples, want);
        assert_eq!(got.duration(), Duration::from_millis(200));
    }

    #[test]
    fn other_payload_types_and_garbage_are_not_recorded() {
        let t0 = Instant::now();
        let mut r = Recorder::new(&spec(60, None), t0);
        let pcm = tone(40);
        let mut pkts = packets(G711::Pcmu, 0, 1, 0, &pcm);
        pkts[1][1] = 101;
        pkts.push(vec![0x80, 0, 0, 1]);
        pkts.push(vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        for p in &pkts {
            assert_eq!(r.on_rtp(t0, p, 0, G711::Pcmu), None);
        }
        assert_eq!(r.samples(), 160);
    }

    #[test]
    fn restarted_clocks_and_new_sources_follow_on() {
        let t0 = Instant::now();
        let mut r = Recorder::new(&spec(60, None), t0);
        let pcm = tone(40);
        let back = 5u32.wrapping_sub(8000 * 6);
        for (ssrc, ts) in [(1, 1000), (1, 1000 + 8000 * 6), (2, 5), (2, back)] {
            for p in packets(G711::Pcmu, 0, ssrc, ts, &pcm) {
                r.on_rtp(t0, &p, 0, G711::Pcmu);
            }
        }
        // A gap of up to MAX_GAP is silence.
        for p in packets(G711::Pcmu, 0, 2, back + 320 + 8000 * 5, &pcm) {
            r.on_rtp(t0, &p, 0, G711::Pcmu);
        }
        assert_eq!(r.samples(), 5 * 320 + 8000 * 5);
    }

    #[test]
    fn nothing_is_taken_before_the_start() {
        let t0 = Instant::now();
        let mut r = Recorder::pending(&spec(1, None), t0);
        let pkt = &packets(G711::Pcmu, 0, 1, 0, &tone(20))[0];
        assert_eq!(r.on_rtp(t0, pkt, 0, G711::Pcmu), None);
        assert_eq!((r.samples(), r.poll_timeout()), (0, None));
        r.start(t0 - Duration::from_secs(1));
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        r.start(t0 + Duration::from_secs(5));
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn max_bounds_the_audio_and_the_time() {
        let t0 = Instant::now();
        let mut r = Recorder::new(&spec(1, None), t0);
        let pkts = packets(G711::Pcmu, 0, 1, 0, &tone(1100));
        for (i, p) in pkts.iter().enumerate() {
            let end = r.on_rtp(t0 + MS20 * i as u32, p, 0, G711::Pcmu);
            assert_eq!(end.is_some(), i == 49, "{i}");
            if end.is_some() {
                break;
            }
        }
        assert_eq!(r.finish(RecordingEnd::MaxLength).samples.len(), 8000);

        // A timestamp far ahead is filled with silence only up to max.
        let mut r = Recorder::new(&spec(3, None), t0);
        r.on_rtp(t0, &pkts[0], 0, G711::Pcmu);
        let mut far = pkts[1].clone();
        far[4..8].copy_from_slice(&(160u32 + 8000 * 4).to_be_bytes());
        assert_eq!(
            r.on_rtp(t0, &far, 0, G711::Pcmu),
            Some(RecordingEnd::MaxLength)
        );
        assert_eq!(r.samples(), 24000);

        // Longer than MAX_RECORDING is cut to it.
        let r = Recorder::new(&spec(3600, None), t0);
        assert_eq!(r.poll_timeout(), Some(t0 + MAX_RECORDING));
        assert_eq!(r.max_samples, MAX_RECORDING_SAMPLES);
    }

    #[test]
    fn voice_is_told_from_silence_by_level() {
        let level = |dbm0: f64| {
            let t = Prompt::tone(&[1000], dbm0, Duration::from_millis(20)).unwrap();
            // Away from the fades at the ends.
            is_voice(&t.chunk(0, 160)[20..140])
        };
        assert!(level(-10.0) && level(-35.0));
        assert!(!level(-45.0) && !level(-60.0));
        assert!(!is_voice(&[]) && !is_voice(&[8; 160]));
    }

    #[test]
    fn silence_ends_on_the_timeline_or_the_clock_and_is_trimmed() {
        let t0 = Instant::now();
        let mut pcm = tone(300);
        pcm.extend(std::iter::repeat_n(0i16, 8000));
        let pkts = packets(G711::Pcmu, 0, 1, 0, &pcm);
        let mut r = Recorder::new(&spec(60, Some(500)), t0);
        let mut ended = None;
        for (i, p) in pkts.iter().enumerate() {
            if let Some(end) = r.on_rtp(t0 + MS20 * i as u32, p, 0, G711::Pcmu) {
                ended = Some((i, end));
                break;
            }
        }
        assert_eq!(ended, Some((15 + 25 - 1, RecordingEnd::Silence)));
        let got = r.finish(RecordingEnd::Silence);
        // The tone's last packet fades out but is still voice.
        assert_eq!(got.samples, through(G711::Pcmu, &pcm[..2400]));

        // Packets stop after the voice: the clock ends it.
        let mut r = Recorder::new(&spec(60, Some(500)), t0);
        for (i, p) in pkts[..15].iter().enumerate() {
            assert_eq!(r.on_rtp(t0 + MS20 * i as u32, p, 0, G711::Pcmu), None);
        }
        let last_voice = t0 + MS20 * 14;
        assert_eq!(
            r.poll_timeout(),
            Some(last_voice + Duration::from_millis(500))
        );
        assert_eq!(
            r.handle_timeout(last_voice + Duration::from_millis(499)),
            None
        );
        assert_eq!(
            r.handle_timeout(last_voice + Duration::from_millis(500)),
            Some(RecordingEnd::Silence)
        );
        assert_eq!(r.finish(RecordingEnd::Silence).samples.len(), 2400);

        // Nothing but silence: ends `silence` after the start, empty.
        let mut r = Recorder::new(&spec(60, Some(2000)), t0);
        let quiet = packets(G711::Pcmu, 0, 1, 0, &[0; 8000 * 3]);
        let mut at = None;
        for (i, p) in quiet.iter().enumerate() {
            if r.on_rtp(t0 + MS20 * i as u32, p, 0, G711::Pcmu).is_some() {
                at = Some(i);
                break;
            }
        }
        assert_eq!(at, Some(99));
        assert!(r.finish(RecordingEnd::Silence).samples.is_empty());
        let r = Recorder::new(&spec(60, Some(2000)), t0);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn the_wav_file_holds_the_samples() {
        let rec = Recording {
            samples: through(G711::Pcmu, &tone(100)),
            end: RecordingEnd::Stopped,
        };
        let wav = rec.to_wav();
        assert_eq!(wav.len(), 44 + 1600);
        let r = hound::WavReader::new(Cursor::new(&wav)).unwrap();
        assert_eq!(
            r.spec(),
            hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            }
        );
        let back: Vec<i16> = r.into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(back, rec.samples);
        // It plays back as a prompt.
        let p = Prompt::from_wav(&wav).unwrap();
        assert_eq!(p.chunk(0, 800), &rec.samples[..]);
        assert!(format!("{rec:?}").len() < 100, "no samples in Debug");
        let empty = Recording {
            samples: Vec::new(),
            end: RecordingEnd::Silence,
        };
        assert_eq!(empty.to_wav().len(), 44);
        assert_eq!(empty.duration(), Duration::ZERO);
    }
}
