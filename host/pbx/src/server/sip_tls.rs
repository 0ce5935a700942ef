//! SIP over TLS: rustls on the ring provider, TLS 1.2 and 1.3 with rustls'
//! default (forward-secret AEAD) suites only. Accepted and outgoing connections
//! run the TCP connection code over the TLS stream, so framing, keep-alives,
//! limits and the connection registry are the same; messages carry
//! [`TransportKind::Tls`], so the core answers with `SIP/2.0/TLS` Via and `sips:`
//! contacts and reaches a phone over the connection it registered on.
//!
//! Outgoing connections (to trunks) verify the server's certificate against a
//! configured CA file; with none configured, every outgoing TLS connection fails
//! verification rather than trusting anything.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use pbx_core::{ConnId, TransportKind};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::io::Io;
use super::tcp::{Ends, admit_next, stream_connection};

/// TLS versions offered and accepted.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate in the file", path.display());
    }
    Ok(certs)
}

/// The server side: the certificate chain and private key from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = read_certs(cert)?;
    let pem = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    let key: PrivateKeyDer<'static> = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            anyhow::bail!("{}: no private key in the file", key.display())
        }
        Err(e) => return Err(anyhow::anyhow!("{}: bad PEM: {e}", key.display())),
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not fit together")?;
    Ok(Arc::new(config))
}

/// The client side, for connections the host opens (trunks): server certificates
/// are verified against the CAs in `ca` (PEM); without one nothing is trusted.
pub fn client_config(ca: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = ca {
        for cert in read_certs(path)? {
            roots
                .add(cert)
                .with_context(|| format!("{}: unusable CA certificate", path.display()))?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts TLS connections until the server stops receiving. Each handshake runs
/// in its own task and must finish within the idle timeout.
pub(crate) async fn accept(io: Arc<Io>, listener: TcpListener, acceptor: TlsAcceptor) {
    // A banned source gets no handshake (which would cost us the most).
    while let Some((stream, peer)) = admit_next(&io, &listener, "TLS").await {
        let task_io = io.clone();
        let acceptor = acceptor.clone();
        io.connections().spawn(async move {
            let local = match stream.local_addr() {
                Ok(l) => l,
                Err(_) => {
                    task_io.release_source(peer.ip());
                    return;
                }
            };
            let handshake =
                tokio::time::timeout(task_io.limits.tcp_idle_timeout, acceptor.accept(stream));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    task_io.release_source(peer.ip());
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    task_io.release_source(peer.ip());
                    return;
                }
            };
            let (id, tx, rx) = task_io.open_conn(peer);
            let ends = Ends {
                peer,
                local,
                transport: TransportKind::Tls,
            };
            stream_connection(task_io, id, tls, ends, tx, rx, Some(peer.ip())).await;
        });
    }
}

/// Runs TLS over an outgoing TCP connection already registered as `id`: the
/// server's certificate must name its IP address and chain to a configured CA.
pub(crate) async fn connected(
    io: Arc<Io>,
    id: ConnId,
    stream: TcpStream,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
) {
    let (peer, local) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(p), Ok(l)) => (p, l),
        _ => {
            io.remove(id);
            return;
        }
    };
    let Some(config) = io.tls_client.get().cloned() else {
        tracing::debug!(%peer, "no TLS client configuration; message dropped");
        io.remove(id);
        return;
    };
    let connector = TlsConnector::from(config);
    let name = server_name(peer);
    let handshake =
        tokio::time::timeout(io.limits.connect_timeout, connector.connect(name, stream));
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "outgoing TLS handshake failed");
            io.remove(id);
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "outgoing TLS handshake timed out");
            io.remove(id);
            return;
        }
    };
    let ends = Ends {
        peer,
        local,
        transport: TransportKind::Tls,
    };
    stream_connection(io, id, tls, ends, tx, rx, None).await;
}

/// The name a peer's certificate must carry: its IP address.
fn server_name(peer: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(peer.ip().into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1 and `localhost`, written as PEM
    /// files into `dir`: (cert, key).
    pub(crate) fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let cert = rcgen::generate_simple_self_signed(names).expect("certificate");
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    #[test]
    fn configs_load_from_pem_and_refuse_garbage() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = self_signed(dir.path());
        let server = server_config(&cert, &key).expect("server config");
        assert!(server.alpn_protocols.is_empty());
        // The certificate is its own CA for the client side.
        client_config(Some(&cert)).expect("client config");
        client_config(None).expect("a client config that trusts nothing");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        assert!(server_config(&junk, &key).is_err());
        assert!(server_config(&cert, &junk).is_err());
        assert!(client_config(Some(&junk)).is_err());
        assert!(client_config(Some(&dir.path().join("missing.pem"))).is_err());
        // a key that is not the certificate's
        let other = tempfile::tempdir().expect("dir");
        let (_, other_key) = self_signed(other.path());
        assert!(server_config(&cert, &other_key).is_err());
    }

    #[tokio::test]
    async fn a_client_verifies_the_server_against_the_configured_ca() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = self_signed(dir.path());
        let acceptor = TlsAcceptor::from(server_config(&cert, &key).expect("server"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (s, _) = listener.accept().await.expect("accept");
                let _ = acceptor.accept(s).await;
            }
        });
        let trusting = TlsConnector::from(client_config(Some(&cert)).expect("client"));
        let s = TcpStream::connect(addr).await.expect("connect");
        let ok = trusting.connect(server_name(addr), s).await;
        assert!(ok.is_ok(), "trusted CA: {:?}", ok.err());
        let (_, conn) = ok.expect("tls").into_inner();
        assert!(matches!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        ));

        let untrusting = TlsConnector::from(client_config(None).expect("client"));
        let s = TcpStream::connect(addr).await.expect("connect");
        assert!(untrusting.connect(server_name(addr), s).await.is_err());
        server.await.expect("server task");
    }
}
