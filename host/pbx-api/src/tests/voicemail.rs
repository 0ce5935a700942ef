//! Voicemail: a change made through the API reaches the phones.

use super::*;

#[tokio::test]
async fn deleting_or_marking_a_message_refreshes_the_mailboxs_phones() {
    let fx = Fx::new().await;
    let message = fx
        .store
        .save_voicemail(fx.a, "100", "200", &silence_wav(), 100)
        .await
        .expect("message");
    let admin = fx.session(&fx.admin_a);
    let uri = format!(
        "/api/v1/tenants/{}/voicemail/100/messages/{}",
        fx.a, message.id
    );

    // Another tenant's admin changes nothing, and nobody is told.
    let other = fx.session(&fx.admin_b);
    let theirs = format!(
        "/api/v1/tenants/{}/voicemail/100/messages/{}",
        fx.b, message.id
    );
    let (s, _) = fx.call(Method::DELETE, &theirs, Some(&other), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(fx.control.mailboxes_changed.lock().is_empty());

    let body = json!({ "heard": true });
    let (s, v) = fx.call(Method::PATCH, &uri, Some(&admin), Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = fx.call(Method::DELETE, &uri, Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        fx.control.mailboxes_changed.lock().as_slice(),
        [(fx.a, "100".to_string()), (fx.a, "100".to_string())]
    );
}

#[tokio::test]
async fn a_pin_reset_generates_one_shown_once_and_a_given_pin_is_never_shown() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let uri = format!("/api/v1/tenants/{}/voicemail/100/pin", fx.a);
    let (s, v) = fx
        .call(Method::PUT, &uri, Some(&admin), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let pin = v["pin"].as_str().expect("a generated PIN is shown");
    assert!(
        pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()),
        "{pin}"
    );
    let (s, again) = fx
        .call(Method::PUT, &uri, Some(&admin), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(again["pin"], v["pin"], "each reset makes a new PIN");
    let (s, v) = fx
        .call(
            Method::PUT,
            &uri,
            Some(&admin),
            Some(json!({ "pin": "4826" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("pin").is_none(), "a given PIN is not shown back: {v}");
}
