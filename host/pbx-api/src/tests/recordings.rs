//! Call recordings: listed, downloaded as WAV and deleted by the tenant's
//! admins; another tenant's admin gets the same 404 as for a recording that
//! does not exist.

use super::*;

/// A WAV of `samples` 8 kHz mono 16-bit samples.
fn wav(samples: u32) -> Vec<u8> {
    let data = samples * 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.resize(out.len() + data as usize, 0);
    out
}

#[tokio::test]
async fn recordings_list_download_and_delete_within_their_tenant() {
    let fx = Fx::new().await;
    let audio = wav(8000);
    let saved = fx
        .store
        .save_call_recording(fx.a, ("100", "101"), &audio, 1_000)
        .await
        .expect("stored");
    let admin_a = fx.session(&fx.admin_a);
    let admin_b = fx.session(&fx.admin_b);

    let list = format!("/api/v1/tenants/{}/recordings", fx.a);
    let (s, v) = fx.call(Method::GET, &list, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0]["id"], json!(saved.id));
    assert_eq!(v[0]["duration_ms"], json!(1_000));
    let (s, v) = fx
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{}/recordings", fx.b),
            Some(&admin_b),
            None,
        )
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!([])), "b has none");

    let one = format!("{list}/{}", saved.id);
    let (s, headers, body) = fx
        .send(request(
            Method::GET,
            &one,
            Some(&admin_a),
            None,
            "203.0.113.9",
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(body, audio);

    // Another tenant's admin: through a's path or its own, the same 404 as
    // a recording that does not exist.
    let theirs = fx
        .send(request(
            Method::GET,
            &one,
            Some(&admin_b),
            None,
            "203.0.113.9",
        ))
        .await;
    let own_path = format!("/api/v1/tenants/{}/recordings/{}", fx.b, saved.id);
    let own = fx
        .send(request(
            Method::GET,
            &own_path,
            Some(&admin_b),
            None,
            "203.0.113.9",
        ))
        .await;
    let missing_path = format!("/api/v1/tenants/{}/recordings/nope", fx.b);
    let missing = fx
        .send(request(
            Method::GET,
            &missing_path,
            Some(&admin_b),
            None,
            "203.0.113.9",
        ))
        .await;
    assert_eq!(theirs.0, StatusCode::NOT_FOUND);
    assert_eq!(own.0, StatusCode::NOT_FOUND);
    assert_eq!(own.2, missing.2, "no existence oracle");
    let (s, _) = fx.call(Method::DELETE, &one, Some(&admin_b), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = fx.call(Method::DELETE, &one, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(fx.audited("recording.delete").await.len(), 1);
    let (s, _) = fx.call(Method::GET, &one, Some(&admin_a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
