//! Registration over real UDP and TCP sockets: digest challenge, bindings, limits,
//! unregistering, and that failures reveal nothing.

mod common;

use common::{ACME, Pbx};
use pbx_e2e::{Phone, Transport};

#[tokio::test]
async fn register_over_udp_and_tcp() {
    let mut pbx = Pbx::start().await;
    for t in [Transport::Udp, Transport::Tcp] {
        let mut p = pbx.phone(t, ACME, "1000").await;
        let r = p.register(300).await.unwrap();
        assert_eq!(r.status(), Some(200), "{}", r.raw);
        let contacts: Vec<&str> = r.headers_named("Contact").collect();
        assert!(
            contacts
                .iter()
                .any(|c| c.contains(&p.local.to_string()) && c.contains("expires=")),
            "binding listed: {contacts:?}"
        );
    }
    pbx.stop().await;
}

#[tokio::test]
async fn too_brief_expiry_gets_423_with_min_expires() {
    let mut pbx = Pbx::start().await;
    let mut p = pbx.phone(Transport::Udp, ACME, "1000").await;
    let r = p.register(5).await.unwrap();
    assert_eq!(r.status(), Some(423));
    assert_eq!(r.header("Min-Expires"), Some("60"));
    pbx.stop().await;
}

#[tokio::test]
async fn unregister_one_contact_and_all_contacts() {
    let mut pbx = Pbx::start().await;
    let mut p = pbx.registered(Transport::Udp, ACME, "1000").await;
    let second = format!("<sip:1000@{}:5999>", p.local.ip());
    let r = p.register_contact(300, &second).await.unwrap();
    assert_eq!(r.headers_named("Contact").count(), 2, "{}", r.raw);

    let r = p.register_contact(0, &second).await.unwrap();
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.headers_named("Contact").count(), 1, "{}", r.raw);

    let r = p.register_contact(0, "*").await.unwrap();
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.headers_named("Contact").count(), 0, "{}", r.raw);
    pbx.stop().await;
}

/// Strips what legitimately differs between two challenges: the nonce, and the
/// per-request values a client chose (tags, Call-ID, branch).
fn challenge_shape(m: &pbx_e2e::SipMsg) -> Vec<String> {
    m.headers
        .iter()
        .filter(|(n, _)| !["Via", "From", "To", "Call-ID", "CSeq"].contains(&n.as_str()))
        .map(|(n, v)| {
            let v = match v.find("nonce=\"") {
                Some(i) => {
                    let end = v[i + 7..].find('"').map_or(v.len(), |e| i + 7 + e);
                    format!("{}NONCE{}", &v[..i + 7], &v[end..])
                }
                None => v.clone(),
            };
            format!("{n}: {v}")
        })
        .collect()
}

#[tokio::test]
async fn wrong_password_unknown_user_and_unknown_domain_look_the_same() {
    let mut pbx = Pbx::start().await;
    let cases = [
        ("1000", "wrong-password-1", ACME),
        ("4711", "wrong-password-1", ACME),
        ("1000", "wrong-password-1", "nowhere.example"),
    ];
    let mut shapes = Vec::new();
    for (ext, pw, domain) in cases {
        let mut p = Phone::new(Transport::Udp, "127.0.0.1", pbx.udp, ext, pw, domain)
            .await
            .unwrap();
        let r = p.register(300).await.unwrap();
        assert_eq!(r.status(), Some(401), "{ext}@{domain}: {}", r.raw);
        assert!(r.header("Server").is_none(), "no version string");
        // The realm is the request's domain in every case.
        let shape = challenge_shape(&r).join("\n").replace(domain, "DOMAIN");
        shapes.push(shape);
    }
    assert_eq!(shapes[0], shapes[1]);
    assert_eq!(shapes[0], shapes[2]);
    pbx.stop().await;
}

#[tokio::test]
async fn options_is_answered() {
    let mut pbx = Pbx::start().await;
    let mut p = pbx.phone(Transport::Udp, ACME, "1000").await;
    let text = format!(
        "OPTIONS sip:{ACME} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@{ACME}>;tag=a\r\n\
         To: <sip:{ACME}>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        p.via()
    );
    p.send(&text).await.unwrap();
    let r = p.expect_final("OPTIONS").await.unwrap();
    assert_eq!(r.status(), Some(200));
    assert!(r.header("Allow").unwrap_or("").contains("INVITE"));
    pbx.stop().await;
}

#[tokio::test]
async fn registrations_survive_a_restart() {
    let mut pbx = Pbx::start().await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    pbx.stop().await;
    pbx.serve().await;
    // The caller talks to the new server; the callee's socket is unchanged.
    let mut caller = pbx.phone(Transport::Udp, ACME, "1000").await;
    let _call = caller.call("1001").await.unwrap();
    let invite = callee.expect_request("INVITE").await.unwrap();
    assert!(invite.start.contains(&callee.local.to_string()) || invite.start.contains("sip:1001@"));
    pbx.stop().await;
}

#[tokio::test]
async fn register_and_call_over_ipv6() {
    let mut pbx = Pbx::start().await;
    // A second server on the IPv6 loopback, same data directory.
    let opts = common::shipped_options(&["[::1]:0"], &[], None);
    let store = store::Store::open(&pbx.data_dir()).await.unwrap();
    let v6 = pbx::server::start(opts, store).await.unwrap();
    let server = v6.addrs().udp[0];
    let (p1000, p1001) = (
        common::password(ACME, "1000"),
        common::password(ACME, "1001"),
    );
    let mut callee = Phone::new(Transport::Udp, "::1", server, "1001", &p1001, ACME)
        .await
        .unwrap();
    assert_eq!(callee.register(300).await.unwrap().status(), Some(200));
    let mut caller = Phone::new(Transport::Udp, "::1", server, "1000", &p1000, ACME)
        .await
        .unwrap();
    assert_eq!(caller.register(300).await.unwrap().status(), Some(200));
    let _call = caller.call("1001").await.unwrap();
    let invite = callee.expect_request("INVITE").await.unwrap();
    assert!(
        invite.header("Via").unwrap().contains("[::1]"),
        "{}",
        invite.raw
    );
    v6.shutdown().await.unwrap();
    pbx.stop().await;
}

#[tokio::test]
async fn a_second_domain_of_the_tenant_reaches_the_same_extensions() {
    let mut pbx = Pbx::start().await;
    pbx.store
        .add_domain(pbx.acme, "sales.acme.example")
        .await
        .unwrap();
    pbx.stop().await;
    pbx.serve().await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    // Same password: the realm is the tenant's primary domain either way.
    let mut caller = Phone::new(
        Transport::Udp,
        "127.0.0.1",
        pbx.udp,
        "1000",
        &common::password(ACME, "1000"),
        "sales.acme.example",
    )
    .await
    .unwrap();
    let r = caller.register(300).await.unwrap();
    assert_eq!(r.status(), Some(200), "{}", r.raw);
    let _call = caller.call("1001").await.unwrap();
    callee.expect_request("INVITE").await.unwrap();
    pbx.stop().await;
}

#[tokio::test]
async fn an_extension_limited_to_a_network_is_refused_elsewhere() {
    let pbx = Pbx::start().await;
    pbx.store
        .allow_network(pbx.acme, Some("1000"), "127.0.0.2/32")
        .await
        .unwrap();
    // The server picks the change up on its next poll: retry until refused.
    let mut refused = None;
    for _ in 0..100 {
        let mut p = pbx.phone(Transport::Udp, ACME, "1000").await;
        let r = p.register(300).await.unwrap();
        if r.status() == Some(403) {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused.is_some(), "registration from 127.0.0.1 refused");
    let mut from_allowed = Phone::new(
        Transport::Udp,
        "127.0.0.2",
        pbx.udp,
        "1000",
        &common::password(ACME, "1000"),
        ACME,
    )
    .await
    .unwrap();
    let r = from_allowed.register(300).await.unwrap();
    assert_eq!(r.status(), Some(200), "{}", r.raw);
    // Other extensions and tenants are not limited.
    pbx.registered(Transport::Udp, ACME, "1001").await;
}

/// The first REGISTER of a phone on the defaults gets one challenge, MD5:
/// what every phone answers.
#[tokio::test]
async fn the_default_challenge_is_one_md5_challenge() {
    let mut pbx = Pbx::start().await;
    let mut p = pbx.phone(Transport::Udp, ACME, "1000").await;
    let req = format!(
        "REGISTER sip:{ACME} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@{ACME}>;tag=a1\r\n\
         To: <sip:1000@{ACME}>\r\nCall-ID: first-contact\r\nCSeq: 1 REGISTER\r\n\
         Contact: {}\r\nContent-Length: 0\r\n\r\n",
        p.via(),
        p.contact()
    );
    p.send(&req).await.unwrap();
    let r = p.expect_final("REGISTER").await.unwrap();
    assert_eq!(r.status(), Some(401));
    let challenges: Vec<&str> = r.headers_named("WWW-Authenticate").collect();
    assert_eq!(challenges.len(), 1, "{}", r.raw);
    assert!(challenges[0].contains("algorithm=MD5"), "{}", r.raw);
    pbx.stop().await;
}

/// SHA-256 where the provider turned it on: per extension (1001: SHA-256
/// only, so a phone that answers only MD5 cannot log in) and per tenant
/// (both offered, SHA-256 first: each phone answers what it knows).
#[tokio::test]
async fn sha256_is_offered_where_the_provider_turned_it_on() {
    let mut pbx = Pbx::start().await;
    let sha = store::DigestAlgorithms::parse("SHA-256").unwrap();
    pbx.store
        .set_extension_digest(pbx.acme, "1001", Some(&sha))
        .await
        .unwrap();
    let pw = common::password(ACME, "1001");
    let mut modern = Phone::new(Transport::Udp, "127.0.0.1", pbx.udp, "1001", &pw, ACME)
        .await
        .unwrap();
    modern.algorithms = vec!["SHA-256".into(), "MD5".into()];
    // The server picks the change up on its next directory reload.
    assert!(
        registers_with(&mut modern, "SHA-256").await,
        "1001 never offered SHA-256"
    );
    let mut old = pbx.phone(Transport::Udp, ACME, "1001").await;
    let err = old
        .register(300)
        .await
        .expect_err("no MD5 challenge for 1001");
    assert!(err.to_string().contains("no challenge"), "{err}");
    // 1000 has no choice of its own: still MD5 alone.
    let mut p = pbx.registered(Transport::Udp, ACME, "1000").await;
    assert_eq!(p.answered_algorithm.as_deref(), Some("MD5"));

    let both = store::DigestAlgorithms::parse("SHA-256,MD5").unwrap();
    pbx.store
        .set_tenant_digest(pbx.acme, Some(&both))
        .await
        .unwrap();
    p.algorithms = vec!["SHA-256".into()];
    assert!(
        registers_with(&mut p, "SHA-256").await,
        "the tenant never offered SHA-256"
    );
    // A phone that knows only MD5 answers the second challenge.
    let mut old = pbx.registered(Transport::Udp, ACME, "1000").await;
    assert_eq!(old.answered_algorithm.as_deref(), Some("MD5"));
    let r = old.register(300).await.unwrap();
    assert_eq!(r.status(), Some(200));
    pbx.stop().await;
}

/// Registers `phone` until it succeeds answering an `algorithm` challenge
/// (the server applies provisioning changes within a second); bounded.
async fn registers_with(phone: &mut Phone, algorithm: &str) -> bool {
    for _ in 0..100 {
        let ok = phone
            .register(300)
            .await
            .is_ok_and(|r| r.status() == Some(200));
        if ok && phone.answered_algorithm.as_deref() == Some(algorithm) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
