//! Sessions as an attacker replays them: deleted and recreated users and
//! tenants, old tokens after a password change, a role change, disabling,
//! logout and suspension, and provider admins removed.

use super::*;

/// Logs `user` in through the API and returns the session token.
async fn session_of(fx: &Fx, user: &str, password: &str) -> String {
    let (s, v) = login(fx, user, password, None).await;
    assert_eq!(s, StatusCode::OK, "login of {user}: {v}");
    v["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn a_deleted_user_or_tenant_never_comes_back_through_a_reused_id() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);

    // A tenant admin of a fresh tenant C, logged in; then user and tenant go.
    let (s, c) = fx
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(&root),
            Some(json!({"name":"c","domain":"c.example"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let c_id = c["id"].as_i64().expect("id");
    let (s, carol) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{c_id}/users"),
            Some(&root),
            Some(json!({"username":"carol","password":PW,"role":"tenant-admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let old_session = session_of(&fx, "carol", PW).await;
    let dave_old = {
        let (s, _) = fx
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{}/users", fx.a),
                Some(&root),
                Some(json!({"username":"dave","password":PW,"role":"tenant-admin"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        session_of(&fx, "dave", PW).await
    };
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{}/users/dave", fx.a),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = fx
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{c_id}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Recreate: a new tenant, and new users in it and in A.
    let (_, d) = fx
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(&root),
            Some(json!({"name":"d","domain":"d.example"})),
        )
        .await;
    let d_id = d["id"].as_i64().expect("id");
    assert!(d_id > c_id, "tenant id {c_id} was handed out again");
    let (_, erin) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{d_id}/users"),
            Some(&root),
            Some(json!({"username":"erin","password":PW,"role":"tenant-admin"})),
        )
        .await;
    assert!(
        erin["id"].as_i64().expect("id") > carol["id"].as_i64().expect("id"),
        "user id came back"
    );
    let (s, _) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{}/users", fx.a),
            Some(&root),
            Some(json!({"username":"frank","password":PW,"role":"tenant-admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Every old token is dead, on every tenant, for reads and for minting.
    for (who, token) in [("carol", &old_session), ("dave", &dave_old)] {
        for t in [c_id, d_id, fx.a.0] {
            for (m, path, body) in [
                (Method::GET, format!("/api/v1/tenants/{t}/users"), None),
                (
                    Method::POST,
                    format!("/api/v1/tenants/{t}/tokens"),
                    Some(json!({"name":"x","scopes":["cdrs:read"]})),
                ),
            ] {
                let (s, _) = fx.call(m.clone(), &path, Some(token), body).await;
                assert_eq!(s, StatusCode::UNAUTHORIZED, "{who}'s old token: {m} {path}");
            }
        }
    }
    // The old tenant's audit entries stay with the old id: the new tenant's
    // admin sees none of them.
    let erin_token = session_of(&fx, "erin", PW).await;
    let (s, v) = fx
        .call(Method::GET, "/api/v1/audit", Some(&erin_token), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let entries = v.as_array().expect("entries");
    assert!(!entries.is_empty());
    for e in entries {
        assert_eq!(e["tenant"].as_i64(), Some(d_id), "{e}");
        assert_ne!(e["actor"], "carol", "{e}");
    }
}

#[tokio::test]
async fn sessions_end_on_password_role_disable_logout_and_suspension() {
    let fx = Fx::new().await;
    let admin = fx.session(&fx.admin_a);
    let users = format!("/api/v1/tenants/{}/users", fx.a);
    let probe = format!("/api/v1/tenants/{}/cdrs", fx.a);
    let alive = |token: String| {
        let probe = probe.clone();
        let fx = &fx;
        async move { fx.call(Method::GET, &probe, Some(&token), None).await.0 }
    };

    // Password change (by the user): every session of the user ends.
    let s1 = session_of(&fx, "alice-a", PW).await;
    let s2 = session_of(&fx, "alice-a", PW).await;
    assert_eq!(alive(s2.clone()).await, StatusCode::OK);
    let (s, _) = fx
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&s1),
            Some(json!({"current_password": PW, "new_password": "An0ther-Passphrase-x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(alive(s1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(alive(s2).await, StatusCode::UNAUTHORIZED);
    let s3 = session_of(&fx, "alice-a", "An0ther-Passphrase-x").await;
    assert_eq!(alive(s3.clone()).await, StatusCode::OK);

    // Role change by an admin.
    let (s, v) = fx
        .call(
            Method::PATCH,
            &format!("{users}/bob"),
            Some(&admin),
            Some(json!({"role":"tenant-admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let bob_before = fx.session(&fx.bob_a);
    assert_eq!(alive(bob_before).await, StatusCode::UNAUTHORIZED);

    // Disabling: the session ends and logging in fails like a wrong password.
    let (s, _) = fx
        .call(
            Method::PATCH,
            &format!("{users}/alice-a"),
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(alive(s3).await, StatusCode::UNAUTHORIZED);
    let (s, v) = login(&fx, "alice-a", "An0ther-Passphrase-x", None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );

    // Logout.
    let bob = session_of(&fx, "bob", PW).await;
    assert_eq!(alive(bob.clone()).await, StatusCode::OK);
    let (s, _) = fx
        .call(Method::POST, "/api/v1/auth/logout", Some(&bob), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(alive(bob).await, StatusCode::UNAUTHORIZED);

    // Suspension of the tenant ends its sessions; a new login may read but
    // not change anything, integration tokens included.
    let admin_session = session_of(&fx, "admin-a", PW).await;
    let root = fx.session(&fx.root);
    let (s, _) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{}/suspend", fx.a),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(alive(admin_session).await, StatusCode::UNAUTHORIZED);
    let again = session_of(&fx, "admin-a", PW).await;
    assert_eq!(alive(again.clone()).await, StatusCode::OK);
    for token in [&again, &fx.api_a] {
        for (m, path, body) in [
            (
                Method::POST,
                format!("/api/v1/tenants/{}/extensions", fx.a),
                json!({"number":"300"}),
            ),
            (
                Method::POST,
                users.clone(),
                json!({"username":"zed","password":PW,"role":"user"}),
            ),
            (
                Method::PUT,
                format!("/api/v1/tenants/{}/media-encryption", fx.a),
                json!({"policy":"required"}),
            ),
        ] {
            let (s, v) = fx.call(m.clone(), &path, Some(token), Some(body)).await;
            assert_eq!(
                (s, code(&v)),
                (StatusCode::FORBIDDEN, "tenant_suspended"),
                "{m} {path}"
            );
        }
    }
    // Signing out stays possible.
    let (s, _) = fx
        .call(Method::POST, "/api/v1/auth/logout", Some(&again), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(alive(again).await, StatusCode::UNAUTHORIZED);
    // The provider still manages the suspended tenant.
    let (s, _) = fx
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{}/extensions", fx.a),
            Some(&root),
            Some(json!({"number":"301"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn provider_admins_can_be_removed_but_not_the_last() {
    let fx = Fx::new().await;
    let root = fx.session(&fx.root);
    let ops = session_of(&fx, "ops", PW).await;
    let (s, _) = fx
        .call(Method::DELETE, "/api/v1/users/ops", Some(&root), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        fx.call(Method::GET, "/api/v1/tenants", Some(&ops), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, v) = fx
        .call(Method::DELETE, "/api/v1/users/root", Some(&root), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));
    // A tenant admin is no provider admin, whatever the path says.
    let (s, _) = fx
        .call(Method::DELETE, "/api/v1/users/admin-a", Some(&root), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The console's cookie session: the login sets an `HttpOnly` token cookie
/// and a CSRF cookie and leaves the token out of its answer; reads work with
/// the cookie alone, changes need the CSRF value as a header, and logout
/// clears both cookies.
#[tokio::test]
async fn a_cookie_session_needs_its_csrf_value_to_change_anything() {
    let fx = Fx::new().await;
    let body = json!({"username": "admin-a", "password": PW, "cookie": true});
    let req = request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(body.to_string().into_bytes()),
        "198.51.100.4",
    );
    let (s, headers, answer) = fx.send(req).await;
    assert_eq!(s, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert!(answer.get("token").is_none(), "{answer}");
    let cookies: Vec<String> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("pbx_session="))
        .expect("session cookie");
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("pbx_csrf="))
        .expect("csrf cookie");
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(
        !csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"),
        "{csrf}"
    );
    let value = |c: &str| c.split(';').next().unwrap().to_string();
    let (session, csrf) = (value(session), value(csrf));
    let csrf_value = csrf.split_once('=').unwrap().1.to_string();

    let with_cookies =
        |method: Method, uri: &str, body: Option<Value>, csrf_header: Option<&str>| {
            let mut req = request(
                method,
                uri,
                None,
                body.map(|b| b.to_string().into_bytes()),
                "198.51.100.4",
            );
            req.headers_mut().insert(
                header::COOKIE,
                format!("{session}; {csrf}").parse().unwrap(),
            );
            if let Some(h) = csrf_header {
                req.headers_mut().insert("x-csrf-token", h.parse().unwrap());
            }
            req
        };
    let (s, _, who) = fx
        .send(with_cookies(
            Method::GET,
            "/api/v1/auth/session",
            None,
            None,
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let who: Value = serde_json::from_slice(&who).unwrap();
    assert_eq!(who["username"], "admin-a");
    assert_eq!(who["tenant"], json!(fx.a.0));

    let uri = format!("/api/v1/tenants/{}/extensions", fx.a);
    let new = json!({"number": "4242"});
    for wrong in [None, Some("00112233445566778899aabbccddeeff")] {
        let (s, _, _) = fx
            .send(with_cookies(Method::POST, &uri, Some(new.clone()), wrong))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "CSRF value {wrong:?}");
    }
    let (s, _, _) = fx
        .send(with_cookies(
            Method::POST,
            &uri,
            Some(new),
            Some(&csrf_value),
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let (s, headers, _) = fx
        .send(with_cookies(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            Some(&csrf_value),
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let cleared: Vec<&str> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cleared.len(), 2);
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    // The session ended with the logout: the old cookie reads nothing.
    let (s, _, _) = fx
        .send(with_cookies(
            Method::GET,
            "/api/v1/auth/session",
            None,
            None,
        ))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// The console page and its files come with a strict Content-Security-Policy.
#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let fx = Fx::new().await;
    for (uri, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let (s, headers, body) = fx
            .send(request(Method::GET, uri, None, None, "198.51.100.5"))
            .await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!body.is_empty());
    }
    let (s, _, _) = fx
        .send(request(
            Method::GET,
            "/console/../secret.key",
            None,
            None,
            "198.51.100.5",
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
