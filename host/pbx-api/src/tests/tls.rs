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
    let cert = rustls_pemfile::certs(&mut &pem[..])
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
