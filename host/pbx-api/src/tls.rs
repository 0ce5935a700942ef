//! TLS for the API: the configured certificate, or a self-signed one made on
//! first start. Handshakes run per connection in [`crate::conn`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The self-signed certificate's folder inside the data directory.
pub(crate) const TLS_DIR: &str = "api-tls";

/// Colon-separated upper-case hex SHA-256 of a DER certificate.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            Error::Config(format!("{}: no private key", path.display()))
        }
        e => Error::Config(format!("{}: {e}", path.display())),
    })
}

/// The certificate chain and key to serve, and the fingerprint of a
/// self-signed certificate when one is used.
pub(crate) struct Identity {
    pub(crate) certs: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) self_signed_fingerprint: Option<String>,
}

/// Loads the configured files, or the self-signed pair in `data_dir/api-tls`,
/// making it first if needed.
pub(crate) fn identity(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    listen: SocketAddr,
) -> Result<Identity> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Identity {
            certs: parse_certs(&read_pem(c)?, c)?,
            key: parse_key(&read_pem(k)?, k)?,
            self_signed_fingerprint: None,
        }),
        (None, None) => self_signed(data_dir, listen),
        _ => Err(Error::Config("tls_cert and tls_key go together".into())),
    }
}

fn self_signed(data_dir: &Path, listen: SocketAddr) -> Result<Identity> {
    let dir = data_dir.join(TLS_DIR);
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if !cert_path.is_file() || !key_path.is_file() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut names = vec!["localhost".to_owned()];
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        }
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| Error::Crypto(format!("making a certificate: {e}")))?;
        write_file(&key_path, made.signing_key.serialize_pem().as_bytes(), true)?;
        write_file(&cert_path, made.cert.pem().as_bytes(), false)?;
    }
    let certs = parse_certs(&read_pem(&cert_path)?, &cert_path)?;
    let key = parse_key(&read_pem(&key_path)?, &key_path)?;
    let fp = fingerprint(certs[0].as_ref());
    Ok(Identity {
        certs,
        key,
        self_signed_fingerprint: Some(fp),
    })
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// A rustls server configuration (ring provider, HTTP/1.1).
pub(crate) fn server_config(id: Identity) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Crypto(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(id.certs, id.key)
        .map_err(|e| Error::Config(format!("TLS certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
