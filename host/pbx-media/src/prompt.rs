//! What the host plays: 8 kHz mono 16-bit PCM, from a WAV file, a built-in tone
//! (a beep, DTMF per ITU-T Q.23) or silence.
//!
//! A [`Prompt`] is cheap to clone (the samples are shared), so one loaded file
//! can be played into many calls. WAV files are read with `hound` when they hold
//! 16-bit PCM; G.711 µ-law and A-law files (format tags 7 and 6, which `hound`
//! does not read) are parsed here and expanded to PCM, so they play on either
//! law. Everything else is refused with an error that says what is accepted.
//!
//! Bounded: a prompt holds at most [`MAX_PROMPT`] of audio, and a WAV file is
//! refused past [`MAX_WAV_BYTES`] before it is parsed.

use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::dtmf;
use crate::error::{Error, Result};
use crate::g711::G711;

/// The sample rate of every prompt (G.711's).
pub const SAMPLE_RATE: u32 = 8000;

/// The longest prompt accepted.
pub const MAX_PROMPT: Duration = Duration::from_secs(300);

/// Samples in [`MAX_PROMPT`].
pub const MAX_PROMPT_SAMPLES: usize = 300 * SAMPLE_RATE as usize;

/// The largest WAV file read: [`MAX_PROMPT`] of 16-bit samples plus room for
/// metadata chunks.
pub const MAX_WAV_BYTES: usize = 2 * MAX_PROMPT_SAMPLES + 64 * 1024;

/// The peak of a sine at 0 dBm0 in 16-bit linear PCM: G.711 µ-law overloads at
/// +3.17 dBm0, a peak of 32 636.
pub(crate) const DBM0_PEAK: f64 = 22_662.0;

/// Level of each frequency of a DTMF tone, in dBm0.
pub const DTMF_LEVEL_DBM0: f64 = -7.0;

/// Level of [`Prompt::beep`], in dBm0.
pub const BEEP_LEVEL_DBM0: f64 = -10.0;

/// Length of the linear fade at each end of a tone, so it starts and stops
/// without a click.
const FADE_SAMPLES: usize = 16;

#[derive(Clone)]
enum Audio {
    Pcm(Arc<[i16]>),
    Silence(usize),
}

/// Audio to play: 8 kHz mono PCM, never empty. See the module docs.
#[derive(Clone)]
pub struct Prompt {
    audio: Audio,
}

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.audio {
            Audio::Pcm(_) => "pcm",
            Audio::Silence(_) => "silence",
        };
        f.debug_struct("Prompt")
            .field("kind", &kind)
            .field("samples", &self.samples())
            .finish()
    }
}

/// Whole samples at [`SAMPLE_RATE`] in `d` (rounded down).
pub(crate) fn samples_in(d: Duration) -> usize {
    (d.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000)
        .try_into()
        .unwrap_or(usize::MAX)
}

/// The time `n` samples at [`SAMPLE_RATE`] last.
pub(crate) fn duration_of(n: usize) -> Duration {
    Duration::from_nanos(n as u64 * 1_000_000_000 / u64::from(SAMPLE_RATE))
}

fn check_len(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::Prompt("a prompt holds no audio".into()));
    }
    if n > MAX_PROMPT_SAMPLES {
        return Err(Error::Prompt(format!(
            "a prompt is longer than {} s",
            MAX_PROMPT.as_secs()
        )));
    }
    Ok(())
}

impl Prompt {
    /// 8 kHz mono 16-bit samples.
    pub fn from_pcm(samples: Vec<i16>) -> Result<Self> {
        check_len(samples.len())?;
        Ok(Self {
            audio: Audio::Pcm(samples.into()),
        })
    }

    /// Silence of `duration` (rounded down to whole samples).
    pub fn silence(duration: Duration) -> Result<Self> {
        let n = samples_in(duration);
        check_len(n)?;
        Ok(Self {
            audio: Audio::Silence(n),
        })
    }

    /// The sum of sines at `freqs` Hz, each at `level_dbm0`, for `duration`,
    /// faded in and out over 2 ms.
    pub fn tone(freqs: &[u32], level_dbm0: f64, duration: Duration) -> Result<Self> {
        let n = samples_in(duration);
        check_len(n)?;
        if freqs.is_empty() || freqs.iter().any(|f| *f == 0 || *f >= SAMPLE_RATE / 2) {
            return Err(Error::Prompt(
                "tone frequencies must be between 1 and 3999 Hz".into(),
            ));
        }
        let amplitude = DBM0_PEAK * 10f64.powf(level_dbm0 / 20.0);
        let fade = FADE_SAMPLES.min(n / 2).max(1) as f64;
        let samples = (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                let v: f64 = freqs
                    .iter()
                    .map(|f| (std::f64::consts::TAU * f64::from(*f) * t).sin())
                    .sum();
                let edge = i.min(n - 1 - i) as f64;
                let gain = (edge / fade).min(1.0);
                (v * amplitude * gain)
                    .round()
                    .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
            })
            .collect();
        Self::from_pcm(samples)
    }

    /// One second of 1000 Hz at [`BEEP_LEVEL_DBM0`].
    pub fn beep() -> Self {
        Self::tone(&[1000], BEEP_LEVEL_DBM0, Duration::from_secs(1))
            .expect("a one-second 1 kHz tone is a valid prompt")
    }

    /// The DTMF tone pair of `digit` (ITU-T Q.23: `0`–`9`, `*`, `#`, `A`–`D`)
    /// for `duration`, each frequency at [`DTMF_LEVEL_DBM0`]. Q.24 asks for at
    /// least 40 ms of tone.
    pub fn dtmf(digit: char, duration: Duration) -> Result<Self> {
        let (low, high) = dtmf::tone_pair(digit)
            .ok_or_else(|| Error::Prompt(format!("{digit:?} is not a DTMF digit")))?;
        Self::tone(&[low, high], DTMF_LEVEL_DBM0, duration)
    }

    /// A WAV file's audio: 8 kHz mono 16-bit PCM, or 8 kHz mono G.711 µ-law or
    /// A-law, at most [`MAX_WAV_BYTES`] long.
    pub fn from_wav(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_WAV_BYTES {
            return Err(Error::Prompt(format!(
                "a WAV file is larger than {MAX_WAV_BYTES} bytes"
            )));
        }
        let reader = match hound::WavReader::new(Cursor::new(bytes)) {
            Ok(r) => r,
            Err(hound::Error::Unsupported) => return g711_wav(bytes),
            Err(e) => return Err(Error::Wav(e)),
        };
        let spec = reader.spec();
        if spec.channels != 1
            || spec.sample_rate != SAMPLE_RATE
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(unsupported(
                spec.sample_rate,
                spec.channels,
                &format!(
                    "{}-bit {}",
                    spec.bits_per_sample,
                    match spec.sample_format {
                        hound::SampleFormat::Int => "PCM",
                        hound::SampleFormat::Float => "float",
                    }
                ),
            ));
        }
        check_len(usize::try_from(reader.duration()).unwrap_or(usize::MAX))?;
        let samples = reader
            .into_samples::<i16>()
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Self::from_pcm(samples)
    }

    /// Reads a WAV file (see [`Prompt::from_wav`]); a file larger than
    /// [`MAX_WAV_BYTES`] is refused without reading it all.
    pub fn read_wav(path: &Path) -> Result<Self> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_WAV_BYTES as u64 + 1)
            .read_to_end(&mut bytes)?;
        Self::from_wav(&bytes)
    }

    /// The audio as 16-bit PCM samples.
    pub fn pcm(&self) -> Vec<i16> {
        match &self.audio {
            Audio::Pcm(s) => s.to_vec(),
            Audio::Silence(n) => vec![0; *n],
        }
    }

    /// Length in samples.
    pub fn samples(&self) -> usize {
        match &self.audio {
            Audio::Pcm(s) => s.len(),
            Audio::Silence(n) => *n,
        }
    }

    /// Length in time.
    pub fn duration(&self) -> Duration {
        duration_of(self.samples())
    }

    /// Up to `n` samples from `at`; silence reads as no samples (the encoder
    /// pads with silence).
    pub(crate) fn chunk(&self, at: usize, n: usize) -> &[i16] {
        match &self.audio {
            Audio::Pcm(s) => s.get(at..s.len().min(at + n)).unwrap_or(&[]),
            Audio::Silence(_) => &[],
        }
    }
}

fn unsupported(rate: u32, channels: u16, encoding: &str) -> Error {
    Error::Prompt(format!(
        "WAV prompts must be 8 kHz mono 16-bit PCM or G.711; this one is {rate} Hz, \
         {channels} channel(s), {encoding}"
    ))
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn malformed(what: &str) -> Error {
    Error::Prompt(format!("malformed WAV file: {what}"))
}

/// The law of a G.711 `fmt ` chunk (WAVE_FORMAT_ALAW 6, WAVE_FORMAT_MULAW 7,
/// or WAVE_FORMAT_EXTENSIBLE with one of them as sub-format).
fn g711_fmt(body: &[u8]) -> Result<G711> {
    let (Some(mut tag), Some(channels), Some(rate), Some(bits)) =
        (le16(body, 0), le16(body, 2), le32(body, 4), le16(body, 14))
    else {
        return Err(malformed("short fmt chunk"));
    };
    if tag == 0xfffe {
        tag = le16(body, 24).ok_or_else(|| malformed("short extensible fmt chunk"))?;
    }
    let law = match tag {
        6 => G711::Pcma,
        7 => G711::Pcmu,
        other => {
            return Err(unsupported(
                rate,
                channels,
                &format!("encoding tag {other:#06x}"),
            ));
        }
    };
    if channels != 1 || rate != SAMPLE_RATE || bits != 8 {
        return Err(unsupported(
            rate,
            channels,
            &format!("{bits}-bit {}", law.encoding()),
        ));
    }
    Ok(law)
}

/// A G.711 WAV file: walks the RIFF chunks to `fmt ` and `data`.
fn g711_wav(bytes: &[u8]) -> Result<Prompt> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(malformed("no RIFF/WAVE header"));
    }
    let mut law = None;
    let mut at = 12usize;
    while let (Some(id), Some(len)) = (bytes.get(at..at + 4), le32(bytes, at + 4)) {
        let len = len as usize;
        let body_at = at + 8;
        match id {
            b"fmt " => {
                let body = bytes
                    .get(body_at..body_at.saturating_add(len))
                    .ok_or_else(|| malformed("truncated fmt chunk"))?;
                law = Some(g711_fmt(body)?);
            }
            b"data" => {
                let law = law.ok_or_else(|| malformed("data before fmt"))?;
                let body = bytes
                    .get(body_at..body_at.saturating_add(len))
                    .ok_or_else(|| malformed("truncated data chunk"))?;
                check_len(body.len())?;
                return Prompt::from_pcm(body.iter().map(|c| law.decode(*c)).collect());
            }
            _ => {}
        }
        at = body_at.saturating_add(len).saturating_add(len & 1);
    }
    Err(malformed("no data chunk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(spec: hound::WavSpec, n: usize) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..n {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(0.5f32).unwrap(),
                (_, 8) => w.write_sample(i as i8).unwrap(),
                _ => w.write_sample((i as i16).wrapping_mul(97)).unwrap(),
            }
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn spec(rate: u32, channels: u16, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    /// A G.711 WAV file by hand: fmt with `tag` (extensible when `extensible`),
    /// a LIST chunk to skip, then the data.
    fn g711_file(tag: u16, extensible: bool, data: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&(if extensible { 0xfffe } else { tag }).to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        if extensible {
            fmt.extend_from_slice(&22u16.to_le_bytes());
            fmt.extend_from_slice(&8u16.to_le_bytes());
            fmt.extend_from_slice(&4u32.to_le_bytes());
            fmt.extend_from_slice(&tag.to_le_bytes());
            fmt.extend_from_slice(&[0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]);
        } else {
            fmt.extend_from_slice(&0u16.to_le_bytes());
        }
        let mut body = b"WAVE".to_vec();
        for (id, chunk) in [(b"fmt ", &fmt[..]), (b"LIST", b"odd"), (b"data", data)] {
            body.extend_from_slice(id);
            body.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            body.extend_from_slice(chunk);
            if chunk.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&body);
        file
    }

    #[test]
    fn pcm_wav_is_read_and_others_are_refused_clearly() {
        let p = Prompt::from_wav(&wav(spec(8000, 1, 16), 1000)).unwrap();
        assert_eq!(p.samples(), 1000);
        assert_eq!(p.duration(), Duration::from_millis(125));
        assert_eq!(
            p.chunk(160, 2),
            [160i16.wrapping_mul(97), 161i16.wrapping_mul(97)]
        );
        assert_eq!(p.chunk(990, 160).len(), 10);
        for (bad, says) in [
            (spec(16000, 1, 16), "16000 Hz"),
            (spec(8000, 2, 16), "2 channel(s)"),
            (spec(8000, 1, 8), "8-bit PCM"),
            (
                hound::WavSpec {
                    sample_format: hound::SampleFormat::Float,
                    ..spec(8000, 1, 32)
                },
                "32-bit float",
            ),
        ] {
            let e = Prompt::from_wav(&wav(bad, 100)).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("8 kHz mono 16-bit"), "{e}");
        }
        assert!(matches!(
            Prompt::from_wav(&wav(spec(8000, 1, 16), 0)),
            Err(Error::Prompt(_))
        ));
    }

    #[test]
    fn g711_wav_is_expanded() {
        let codes: Vec<u8> = (0..=255).collect();
        for (tag, law) in [(7, G711::Pcmu), (6, G711::Pcma)] {
            for extensible in [false, true] {
                let p = Prompt::from_wav(&g711_file(tag, extensible, &codes)).unwrap();
                let want: Vec<i16> = codes.iter().map(|c| law.decode(*c)).collect();
                assert_eq!(p.chunk(0, 256), &want[..], "{law:?} {extensible}");
            }
        }
        // ADPCM (tag 2) is refused by name.
        let e = Prompt::from_wav(&g711_file(2, false, &codes)).unwrap_err();
        assert!(e.to_string().contains("encoding tag 0x0002"), "{e}");
    }

    #[test]
    fn malformed_and_oversized_files_are_errors() {
        let good = g711_file(7, false, &[0xff; 100]);
        for cut in [0, 4, 11, 12, 30, 50, good.len() - 1] {
            assert!(Prompt::from_wav(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut garbage = good.clone();
        garbage[0] = b'X';
        assert!(Prompt::from_wav(&garbage).is_err());
        // A data chunk claiming more than the file holds.
        let mut lying = wav(spec(8000, 1, 16), 10);
        let at = lying.len() - 20 - 4;
        lying[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Prompt::from_wav(&lying).is_err());
        assert!(matches!(
            Prompt::from_wav(&vec![0u8; MAX_WAV_BYTES + 1]),
            Err(Error::Prompt(_))
        ));
        // Longer than MAX_PROMPT although within the byte limit (G.711 is one
        // byte a sample).
        let long = g711_file(6, false, &vec![0xd5; MAX_PROMPT_SAMPLES + 1]);
        assert!(matches!(Prompt::from_wav(&long), Err(Error::Prompt(_))));
        assert!(Prompt::read_wav(Path::new("/nonexistent/prompt.wav")).is_err());
    }

    #[test]
    fn mutated_files_never_panic() {
        let files = [
            wav(spec(8000, 1, 16), 300),
            g711_file(7, false, &[0x55; 300]),
            g711_file(6, true, &[0x55; 300]),
        ];
        for _ in 0..3000 {
            let mut f = files[rand::random_range(0..files.len())].clone();
            for _ in 0..rand::random_range(1..4) {
                let at = rand::random_range(0..f.len());
                f[at] = rand::random();
            }
            if let Ok(p) = Prompt::from_wav(&f) {
                assert!(p.samples() > 0 && p.samples() <= MAX_PROMPT_SAMPLES);
            }
        }
    }

    /// Power of `pcm` at `freq` (Goertzel).
    fn power(pcm: &[i16], freq: f64) -> f64 {
        let k = std::f64::consts::TAU * freq / f64::from(SAMPLE_RATE);
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in pcm {
            let s = f64::from(*x) + 2.0 * k.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - 2.0 * k.cos() * s1 * s2
    }

    #[test]
    fn tones_have_their_frequencies_and_levels() {
        let beep = Prompt::beep();
        assert_eq!(beep.samples(), 8000);
        let pcm = beep.chunk(0, 8000);
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        let want = DBM0_PEAK * 10f64.powf(BEEP_LEVEL_DBM0 / 20.0);
        assert!((f64::from(peak) - want).abs() < 2.0, "{peak} vs {want}");
        assert!(power(pcm, 1000.0) > 1000.0 * power(pcm, 1100.0));
        assert_eq!((pcm[0], pcm[7999]), (0, 0), "faded in and out");

        for (digit, low, high) in [
            ('1', 697.0, 1209.0),
            ('#', 941.0, 1477.0),
            ('d', 941.0, 1633.0),
        ] {
            let t = Prompt::dtmf(digit, Duration::from_millis(100)).unwrap();
            assert_eq!(t.samples(), 800);
            let pcm = t.chunk(0, 800);
            let others = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
            let floor = others
                .iter()
                .filter(|f| **f != low && **f != high)
                .map(|f| power(pcm, *f))
                .fold(0.0, f64::max);
            assert!(power(pcm, low) > 50.0 * floor, "{digit}");
            assert!(power(pcm, high) > 50.0 * floor, "{digit}");
        }
        assert!(Prompt::dtmf('x', Duration::from_millis(100)).is_err());
        assert!(Prompt::tone(&[5000], -10.0, Duration::from_secs(1)).is_err());
        assert!(Prompt::tone(&[], -10.0, Duration::from_secs(1)).is_err());
        assert!(Prompt::silence(Duration::ZERO).is_err());
        assert!(Prompt::silence(MAX_PROMPT + Duration::from_secs(1)).is_err());
        let quiet = Prompt::silence(Duration::from_millis(30)).unwrap();
        assert_eq!((quiet.samples(), quiet.chunk(0, 160)), (240, &[][..]));
    }
}
