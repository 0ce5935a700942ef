//! Uploaded WAV prompts in the formats people have: made into what the host
//! plays, 8 kHz mono 16-bit PCM.
//!
//! Accepted: integer PCM of 8, 16, 24 or 32 bits, or 32-bit float, with one or
//! two channels, at 8 to 48 kHz. Two channels are averaged to one; another
//! rate than 8 kHz is resampled by `rubato`'s FFT resampler, whose
//! anti-aliasing filter keeps what lies above 4 kHz out of the telephone band.
//! G.711 WAV files (8 kHz mono) are read by [`Prompt::from_wav`].
//!
//! The length is checked from the header, before any sample is read: at most
//! [`MAX_PROMPT`] of audio, from at most [`MAX_UPLOAD_BYTES`].

use std::io::Cursor;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::prompt::{MAX_PROMPT, Prompt, SAMPLE_RATE};
use crate::{Error, Result};

/// Largest WAV upload read (48 kHz stereo 16-bit holds about 87 s of it).
pub const MAX_UPLOAD_BYTES: usize = 16 << 20;
/// Lowest and highest sample rates accepted.
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=48_000;

/// The samples of a WAV upload at 8 kHz, mono, 16-bit.
pub fn wav_to_8k_mono(bytes: &[u8]) -> Result<Vec<i16>> {
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(Error::Prompt(format!(
            "a WAV upload is larger than {MAX_UPLOAD_BYTES} bytes"
        )));
    }
    let reader = match hound::WavReader::new(Cursor::new(bytes)) {
        Ok(r) => r,
        // G.711 WAV: 8 kHz mono already, read by the prompt reader.
        Err(hound::Error::Unsupported) => return Prompt::from_wav(bytes).map(|p| p.pcm()),
        Err(e) => return Err(Error::Wav(e)),
    };
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if !(1..=2).contains(&channels) || !RATES.contains(&spec.sample_rate) {
        return Err(Error::Prompt(format!(
            "{} Hz with {} channels: send mono or stereo at 8 to 48 kHz",
            spec.sample_rate, spec.channels
        )));
    }
    let frames = u64::from(reader.duration());
    if frames == 0 {
        return Err(Error::Prompt("a prompt holds no audio".into()));
    }
    if frames > MAX_PROMPT.as_secs() * u64::from(spec.sample_rate) {
        return Err(Error::Prompt(format!(
            "a prompt is longer than {} s",
            MAX_PROMPT.as_secs()
        )));
    }
    // Every sample as a float in [-1, 1].
    let interleaved: Vec<f64> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .map(|s| s.map(f64::from))
            .collect::<std::result::Result<_, _>>()?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let full = f64::from(1u32 << (bits - 1));
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| f64::from(v) / full))
                .collect::<std::result::Result<_, _>>()?
        }
        (format, bits) => {
            return Err(Error::Prompt(format!(
                "{bits}-bit {format:?} samples: send 8, 16, 24 or 32-bit PCM or 32-bit float"
            )));
        }
    };
    let mono: Vec<f64> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f64>() / channels as f64)
        .collect();
    let at_8k = if spec.sample_rate == SAMPLE_RATE {
        mono
    } else {
        resample(&mono, spec.sample_rate)?
    };
    Ok(at_8k
        .iter()
        .map(|s| (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect())
}

/// `mono` at `rate` resampled to 8 kHz.
fn resample(mono: &[f64], rate: u32) -> Result<Vec<f64>> {
    let failed = |e: &dyn std::fmt::Display| Error::Prompt(format!("resampling failed: {e}"));
    let mut resampler = Fft::<f64>::new(
        rate as usize,
        SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Both,
    )
    .map_err(|e| failed(&e))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| failed(&e))?;
    let output = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|e| failed(&e))?;
    Ok(output.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, bits: u16, float: bool, samples: &[f64]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for s in samples {
            for _ in 0..channels {
                if float {
                    w.write_sample(*s as f32).unwrap();
                } else {
                    let full = f64::from(1u32 << (bits - 1)) - 1.0;
                    w.write_sample((s * full) as i32).unwrap();
                }
            }
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    /// One second of a sine of `hz` at half scale, sampled at `rate`.
    fn sine(hz: f64, rate: u32) -> Vec<f64> {
        (0..rate)
            .map(|i| 0.5 * (2.0 * std::f64::consts::PI * hz * f64::from(i) / f64::from(rate)).sin())
            .collect()
    }

    /// The power of `samples` at `hz` (8 kHz), by correlation.
    fn power_at(samples: &[i16], hz: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, s) in samples.iter().enumerate() {
            let t = 2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0;
            re += f64::from(*s) * t.cos();
            im += f64::from(*s) * t.sin();
        }
        (re * re + im * im).sqrt() / samples.len() as f64
    }

    #[test]
    fn common_formats_become_8k_mono_of_the_same_length_and_pitch() {
        for (rate, channels, bits, float) in [
            (8000, 1, 16, false),
            (16000, 1, 16, false),
            (44100, 2, 16, false),
            (48000, 2, 24, false),
            (22050, 1, 8, false),
            (32000, 1, 32, true),
        ] {
            let bytes = wav(rate, channels, bits, float, &sine(1000.0, rate));
            let pcm = wav_to_8k_mono(&bytes).unwrap();
            let case = format!("{rate} Hz x{channels} {bits}-bit float={float}");
            assert!((7990..=8010).contains(&pcm.len()), "{case}: {}", pcm.len());
            // The tone is still at 1 kHz and about half scale (16 384 peak, so
            // about 8 192 by correlation), not at another frequency.
            let at_1k = power_at(&pcm, 1000.0);
            assert!((7_000.0..9_500.0).contains(&at_1k), "{case}: {at_1k}");
            assert!(power_at(&pcm, 1500.0) < 200.0, "{case}");
        }
    }

    #[test]
    fn what_lies_above_the_band_does_not_fold_back_into_it() {
        // 5 kHz at 16 kHz would alias to 3 kHz at 8 kHz without the filter.
        let bytes = wav(16000, 1, 16, false, &sine(5000.0, 16000));
        let pcm = wav_to_8k_mono(&bytes).unwrap();
        assert!(power_at(&pcm, 3000.0) < 200.0, "{}", power_at(&pcm, 3000.0));
    }

    #[test]
    fn bad_uploads_are_refused_from_their_header() {
        assert!(wav_to_8k_mono(b"not a wav").is_err());
        let six_channels = wav(8000, 6, 16, false, &[0.0; 10]);
        assert!(wav_to_8k_mono(&six_channels).is_err());
        let too_fast = wav(96000, 1, 16, false, &[0.0; 10]);
        assert!(wav_to_8k_mono(&too_fast).is_err());
        let empty = wav(16000, 1, 16, false, &[]);
        assert!(wav_to_8k_mono(&empty).is_err());
        // A header claiming more than five minutes is refused before reading.
        let mut long = wav(8000, 1, 16, false, &[0.0; 4]);
        let claimed = (MAX_PROMPT.as_secs() as u32 * 8000 + 8) * 2;
        long[40..44].copy_from_slice(&claimed.to_le_bytes());
        assert!(wav_to_8k_mono(&long).is_err());
        let too_big = vec![0u8; MAX_UPLOAD_BYTES + 1];
        assert!(wav_to_8k_mono(&too_big).is_err());
    }
}
