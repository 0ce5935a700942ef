//! A tenant's prompts: uploaded audio its call handlers play by name
//! (`prompt.file`). An upload is a WAV of 16-bit PCM at 8 kHz mono
//! (`audio/wav`), or raw G.711 at 8 kHz (`audio/basic` for PCMU,
//! `audio/pcma`); it is checked (format, length, size) and stored as an 8 kHz
//! WAV against the tenant's media quota.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use pbx_media::{G711, Prompt, Recording, RecordingEnd};
use serde_json::json;
use store::{PromptInfo, TenantId};

use crate::access::{P, Principal, Source};
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

use super::Deleted;

/// A prompt's name: 1 to 64 letters, digits and `-_.` (what a call handler
/// may name).
pub fn valid_prompt_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// An upload as an 8 kHz mono 16-bit WAV and its length in milliseconds,
/// from its content type (`audio/wav`: PCM or float, mono or stereo, 8 to
/// 48 kHz, resampled to 8 kHz; G.711 WAV; `audio/basic` raw PCMU,
/// `audio/pcma` raw PCMA); or why it is refused. The API and `pbx prompt
/// upload` both use it.
pub fn prompt_wav(content_type: &str, body: &[u8]) -> Result<(Vec<u8>, u64), String> {
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let samples: Vec<i16> = match kind.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" => {
            pbx_media::upload::wav_to_8k_mono(body).map_err(|e| e.to_string())?
        }
        "audio/basic" | "audio/pcmu" => body.iter().map(|b| G711::Pcmu.decode(*b)).collect(),
        "audio/pcma" => body.iter().map(|b| G711::Pcma.decode(*b)).collect(),
        other => {
            return Err(format!(
                "{other:?} is not a prompt format: send audio/wav (PCM or float, mono or \
                 stereo, 8 to 48 kHz), audio/basic (PCMU) or audio/pcma"
            ));
        }
    };
    let prompt = Prompt::from_pcm(samples.clone()).map_err(|e| e.to_string())?;
    let ms = u64::try_from(prompt.duration().as_millis()).unwrap_or(u64::MAX);
    let wav = Recording {
        samples,
        end: RecordingEnd::Stopped,
    }
    .to_wav();
    Ok((wav, ms))
}

/// [`prompt_wav`], refusals as 415.
fn normalised(content_type: &str, body: &[u8]) -> ApiResult<(Vec<u8>, u64)> {
    prompt_wav(content_type, body)
        .map_err(|why| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_audio", why))
}

pub(super) async fn put(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, name)): P<(i64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PromptInfo>> {
    if !valid_prompt_name(&name) {
        return Err(ApiError::bad_request(
            "invalid_name",
            "a prompt name is 1 to 64 letters, digits and -_.",
        ));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("empty", "the upload has no audio"));
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (wav, ms) = normalised(content_type, &body)?;
    let tenant = TenantId(tenant);
    let info = state.store().put_prompt(tenant, &name, &wav, ms).await?;
    state
        .audit(
            &p,
            &source,
            "prompt.put",
            Some(tenant),
            json!({ "name": name, "bytes": info.bytes, "duration_ms": info.duration_ms }),
        )
        .await?;
    Ok(Json(info))
}

pub(super) async fn list(
    State(state): State<ApiState>,
    P(tenant): P<i64>,
) -> ApiResult<Json<Vec<PromptInfo>>> {
    Ok(Json(state.store().prompts(TenantId(tenant)).await?))
}

pub(super) async fn get(
    State(state): State<ApiState>,
    P((tenant, name)): P<(i64, String)>,
) -> ApiResult<Response> {
    match state.store().prompt_audio(TenantId(tenant), &name).await? {
        Some(wav) => Ok(([(CONTENT_TYPE, "audio/wav")], wav).into_response()),
        None => Err(ApiError::not_found()),
    }
}

pub(super) async fn delete(
    State(state): State<ApiState>,
    Extension(p): Extension<Principal>,
    Source(source): Source,
    P((tenant, name)): P<(i64, String)>,
) -> ApiResult<Json<Deleted>> {
    let tenant = TenantId(tenant);
    if !state.store().delete_prompt(tenant, &name).await? {
        return Err(ApiError::not_found());
    }
    state
        .audit(
            &p,
            &source,
            "prompt.delete",
            Some(tenant),
            json!({ "name": name }),
        )
        .await?;
    Ok(Json(Deleted { deleted: name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_checked_and_normalised() {
        let pcmu = vec![0xffu8; 8000];
        let (wav, ms) = normalised("audio/basic", &pcmu).expect("PCMU");
        assert_eq!(ms, 1000);
        let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("a WAV");
        assert_eq!(reader.spec().sample_rate, 8000);
        assert_eq!(reader.duration(), 8000);
        let (again, ms) = normalised("audio/wav", &wav).expect("PCM WAV");
        assert_eq!((again, ms), (wav, 1000));
        assert_eq!(
            normalised("audio/wav", b"RIFF garbage").map_err(|e| e.status()),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            normalised("text/plain", b"hello").map_err(|e| e.status()),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert!(valid_prompt_name("main-menu.v2"));
        assert!(!valid_prompt_name("../secret"));
        assert!(!valid_prompt_name(""));
    }

    #[test]
    fn a_cd_quality_stereo_wav_is_stored_as_8k_mono_of_the_same_length() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut upload = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut upload, spec).unwrap();
        // Two seconds of 440 Hz on both channels.
        for i in 0..88_200u32 {
            let v =
                (8_000.0 * (f64::from(i) * 440.0 * std::f64::consts::TAU / 44_100.0).sin()) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let (wav, ms) = prompt_wav("audio/wav", upload.get_ref()).unwrap();
        assert!((1_990..=2_010).contains(&ms), "{ms}");
        let stored = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
        let spec = stored.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8000, 16)
        );
        // A format outside what is accepted is refused with the reason.
        let why = prompt_wav("audio/ogg", b"OggS").unwrap_err();
        assert!(why.contains("audio/wav"), "{why}");
    }
}
