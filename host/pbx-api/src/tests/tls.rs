//! Serving over TLS.

use super::*;

#[tokio::test]
async fn serves_over_tls_with_a_self_signed_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("db")).await.expect("store");
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ApiConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let control: Arc<dyn Control> = Arc::new(FakeControl::default());
    let handle = crate::serve(
        config.clone(),
        dir.path(),
        store.clone(),
        control.clone(),
        async {
            let _ = stop_rx.await;
        },
    )
    .await
    .expect("serve");
    let fp = handle.self_signed_fingerprint.clone().expect("self-signed");
    let pem = std::fs::read(dir.path().join("api-tls/cert.pem")).expect("cert");
    let cert =
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            &pem,
        )
        .next()
        .expect("one")
        .expect("pem");
    assert_eq!(crate::tls::fingerprint(cert.as_ref()), fp);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(handle.local_addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = Vec::new();
    tls.read_to_end(&mut resp).await.expect("read");
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"status\":\"ok\""));
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );
    assert!(lower.contains("cache-control: no-store"), "{text}");
    let _ = stop_tx.send(());
    handle.wait().await;

    // plain HTTP is refused off loopback
    let open = ApiConfig {
        listen: "0.0.0.0:0".parse().expect("addr"),
        plain_http: true,
        ..ApiConfig::default()
    };
    let refused = crate::serve(open, dir.path(), store, control, async {}).await;
    assert!(matches!(refused, Err(crate::Error::Config(_))));
}

/// A TLS client that trusts the server's self-signed certificate.
fn connector(dir: &std::path::Path) -> tokio_rustls::TlsConnector {
    let pem = std::fs::read(dir.join("api-tls/cert.pem")).expect("cert");
    let cert =
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            &pem,
        )
        .next()
        .expect("one")
        .expect("pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(client))
}

/// Reads until the server closes the stream (EOF or reset), at most `bound`;
/// returns what was read, or `None` if the stream was still open then.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    bound: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(bound, read).await.ok()?;
    Some(got)
}

#[tokio::test]
async fn slow_tls_clients_are_dropped_and_connections_capped() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("db")).await.expect("store");
    // The deadlines and caps are what this test is about: they are shortened
    // from the shipped 10 s / 30 s / 32 per source so the test runs quickly.
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        header_read_timeout_s: 1,
        tls_handshake_timeout_s: 1,
        request_timeout_s: 1,
        max_connections_per_source: 3,
        ..ApiConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let control: Arc<dyn Control> = Arc::new(FakeControl::default());
    let handle = crate::serve(config, dir.path(), store, control, async {
        let _ = stop_rx.await;
    })
    .await
    .expect("serve");
    let tls = connector(dir.path());
    let name = || rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connect = || tokio::net::TcpStream::connect(handle.local_addr);
    let bound = Duration::from_secs(10);

    // 1. Handshake done, then silence: closed once the head deadline passes.
    let mut idle = tls
        .connect(name(), connect().await.expect("tcp"))
        .await
        .expect("handshake");
    // 2. Half a request head, never finished.
    let mut partial = tls
        .connect(name(), connect().await.expect("tcp"))
        .await
        .expect("handshake");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .await
        .expect("write");
    // 3. TCP only, no handshake.
    let mut bare = connect().await.expect("tcp");
    // A fourth connection from the same address is over the cap: closed at
    // once, before any handshake.
    let mut over = connect().await.expect("tcp");
    assert!(
        closed_within(&mut over, bound).await.is_some(),
        "the fourth connection stayed open"
    );
    for (what, got) in [
        (
            "idle after handshake",
            closed_within(&mut idle, bound).await,
        ),
        ("unfinished head", closed_within(&mut partial, bound).await),
        ("no handshake", closed_within(&mut bare, bound).await),
    ] {
        assert!(got.is_some(), "{what}: still open after {bound:?}");
    }

    // 4. A body that stalls gets the API's JSON error (408, code "timeout").
    let mut stalled = tls
        .connect(name(), connect().await.expect("tcp"))
        .await
        .expect("handshake");
    stalled
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
        )
        .await
        .expect("write");
    let got = closed_within(&mut stalled, bound)
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"timeout\""), "{text}");

    // Slots were given back: a well-behaved client is served.
    let mut ok = tls
        .connect(name(), connect().await.expect("tcp"))
        .await
        .expect("handshake");
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let got = closed_within(&mut ok, bound).await.expect("closed");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    let _ = stop_tx.send(());
    handle.wait().await;
}
