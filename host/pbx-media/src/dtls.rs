//! DTLS-SRTP (RFC 5763/5764) on a WebRTC leg: the handshake, run by
//! `webrtc-dtls` in a task of its own, and the SRTP keys it yields.
//!
//! # Design
//! `webrtc-dtls` is async over a `webrtc_util::Conn`, so the handshake is the
//! one part of a WebRTC leg that is not sans-IO. The call's task keeps owning
//! the leg's socket: it demultiplexes each datagram ([`crate::webrtc::demux`])
//! and hands DTLS records from the ICE-checked address to this leg's task
//! through a bounded channel ([`DTLS_QUEUE`] datagrams; more are dropped, as a
//! congested network would). [`LegConn`] is the adapter: `recv` reads that
//! channel, `send` writes to the leg's socket toward the address the session
//! latched by ICE. When the handshake ends, [`srtp_keys`] derives the SRTP
//! keys (`EXTRACTOR-dtls_srtp`, RFC 5764 §4.2) and the task installs them in
//! the session ([`crate::MediaSession::install_dtls_keys`]); the connection
//! is then kept (still fed) until the call ends, so a retransmitted final
//! flight of the browser is still answered.
//!
//! # Trust
//! One self-signed ECDSA P-256 certificate per relay ([`DtlsIdentity`],
//! made once at start); its SHA-256 fingerprint goes in every SDP to a
//! browser. The browser's certificate is not checked against any CA but
//! against the `a=fingerprint` of its own SDP: a mismatch fails the handshake.
//! Both sides present certificates (we require the client's when we serve).
//!
//! # Limits
//! A handshake starts only once ICE has checked the browser's address, and
//! one that has not finished within [`HANDSHAKE_TIMEOUT`] fails; a failed
//! one ends that leg's media (the relay reports it) and nothing else. At most
//! [`DTLS_QUEUE`] records wait for a handshake. A kept association costs
//! what `webrtc-dtls` holds for a connection (an 8 KiB read buffer, its
//! tasks and channels), several times a plain call's media state: it is
//! kept so that a lost final flight can be resent, at that price. Profiles
//! offered: `SRTP_AES128_CM_HMAC_SHA1_80` (mandatory for WebRTC) and
//! `SRTP_AEAD_AES_128_GCM`. Only `webrtc-dtls` 0.12 exists (no 0.17 like
//! `webrtc-srtp`); it brings its own `webrtc-util` 0.11 for the `Conn`
//! trait, named `webrtc_util_dtls` here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use webrtc_dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::crypto::Certificate;
use webrtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc_util_dtls::KeyingMaterialExporter;
use webrtc_util_dtls::conn::Conn;

use crate::error::{Error, Result};
use crate::sdes::{KeyMaterial, Suite};
use crate::webrtc::{DtlsRole, Fingerprint};

/// How long a handshake may take, from its task's start.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// DTLS datagrams queued for a leg's handshake; more are dropped.
pub const DTLS_QUEUE: usize = 32;

/// The RFC 5764 §4.2 exporter label.
const EXTRACTOR_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// The host's DTLS certificate: one per relay, self-signed, ECDSA P-256.
#[derive(Clone)]
pub struct DtlsIdentity {
    certificate: Certificate,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl DtlsIdentity {
    /// A fresh self-signed certificate.
    pub fn generate() -> Result<Self> {
        let certificate = Certificate::generate_self_signed(vec!["pbx".to_owned()])
            .map_err(|_| Error::Config("cannot generate the DTLS certificate"))?;
        let der = certificate
            .certificate
            .first()
            .ok_or(Error::Config("the DTLS certificate is empty"))?;
        let fingerprint = Fingerprint::of_der(der.as_ref());
        Ok(Self {
            certificate,
            fingerprint,
        })
    }

    /// The SHA-256 fingerprint written in SDP.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A `webrtc-dtls` configuration for one handshake that accepts only a
    /// peer certificate with fingerprint `peer`.
    pub fn config(&self, peer: Fingerprint) -> Config {
        Config {
            certificates: vec![self.certificate.clone()],
            srtp_protection_profiles: vec![
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            ],
            extended_master_secret: ExtendedMasterSecretType::Require,
            client_auth: ClientAuthType::RequireAnyClientCert,
            // No CA vouches for a browser: its SDP does, by the fingerprint.
            insecure_skip_verify: true,
            verify_peer_certificate: Some(Arc::new(move |certs: &[Vec<u8>], _| {
                match certs.first() {
                    Some(der) if Fingerprint::of_der(der) == peer => Ok(()),
                    _ => Err(webrtc_dtls::Error::Other(
                        "certificate does not match a=fingerprint".to_owned(),
                    )),
                }
            })),
            ..Config::default()
        }
    }
}

/// The SRTP keys of a leg after its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsKeys {
    /// What the browser sends with (our receiver's key).
    pub remote: KeyMaterial,
    /// What we send with.
    pub local: KeyMaterial,
}

/// The SRTP suite of a negotiated DTLS-SRTP profile.
pub fn suite(profile: SrtpProtectionProfile) -> Option<Suite> {
    match profile {
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Some(Suite::AesCm128HmacSha1_80),
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => Some(Suite::AesCm128HmacSha1_32),
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Some(Suite::AeadAes128Gcm),
        _ => None,
    }
}

/// Splits exported keying material (RFC 5764 §4.2: client key, server key,
/// client salt, server salt) into the keys of each direction for `role`.
pub fn srtp_keys(suite: Suite, material: &[u8], role: DtlsRole) -> Result<DtlsKeys> {
    let (k, s) = (suite.key_len(), suite.salt_len());
    if material.len() != 2 * (k + s) {
        return Err(Error::Protocol(
            "exported keying material has the wrong length",
        ));
    }
    let client = KeyMaterial::from_parts(suite, &material[..k], &material[2 * k..2 * k + s])?;
    let server = KeyMaterial::from_parts(suite, &material[k..2 * k], &material[2 * k + s..])?;
    Ok(match role {
        DtlsRole::Client => DtlsKeys {
            remote: server,
            local: client,
        },
        DtlsRole::Server => DtlsKeys {
            remote: client,
            local: server,
        },
    })
}

/// Where a leg's DTLS records go: the address ICE latched, looked up for each
/// send (it may move when the browser nominates another pair).
pub trait PeerAddr: Send + Sync + 'static {
    /// The browser's current address, if known.
    fn peer(&self) -> Option<SocketAddr>;
}

/// `webrtc_util::Conn` over a leg's shared socket: reads the DTLS records the
/// call's task passes on, writes to the latched address.
pub struct LegConn {
    socket: Arc<UdpSocket>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Bytes>>,
    peer: Box<dyn PeerAddr>,
}

impl LegConn {
    /// An adapter over `socket` fed by `inbox`, sending to `peer`.
    pub fn new(
        socket: Arc<UdpSocket>,
        inbox: mpsc::Receiver<Bytes>,
        peer: Box<dyn PeerAddr>,
    ) -> Self {
        Self {
            socket,
            inbox: tokio::sync::Mutex::new(inbox),
            peer,
        }
    }
}

fn no_peer() -> webrtc_util_dtls::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "no ICE-checked address yet",
    )
    .into()
}

#[async_trait]
impl Conn for LegConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util_dtls::Result<()> {
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util_dtls::Result<usize> {
        match self.inbox.lock().await.recv().await {
            Some(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            // The call is ending. `webrtc-dtls` retries a failed read at
            // once, so an error here would spin; wait for the connection to
            // be dropped instead, which ends its reader.
            None => std::future::pending().await,
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util_dtls::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, self.peer.peer().ok_or_else(no_peer)?))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util_dtls::Result<usize> {
        let to = self.peer.peer().ok_or_else(no_peer)?;
        self.send_to(buf, to).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util_dtls::Result<usize> {
        Ok(self.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util_dtls::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.peer.peer()
    }

    async fn close(&self) -> webrtc_util_dtls::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Runs a handshake over `conn` as `role`, bounded by [`HANDSHAKE_TIMEOUT`],
/// checking the peer against `peer`; returns the connection (to keep while
/// the call lasts) and the SRTP keys.
pub async fn handshake(
    conn: Arc<dyn Conn + Send + Sync>,
    identity: &DtlsIdentity,
    peer: Fingerprint,
    role: DtlsRole,
) -> Result<(DTLSConn, DtlsKeys)> {
    let config = identity.config(peer);
    let is_client = role == DtlsRole::Client;
    let dtls = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        DTLSConn::new(conn, config, is_client, None),
    )
    .await
    .map_err(|_| Error::Protocol("DTLS handshake timed out"))?
    .map_err(|e| {
        tracing::debug!(error = %e, "DTLS handshake failed");
        Error::NotAcceptable("DTLS handshake failed")
    })?;
    let suite = suite(dtls.selected_srtpprotection_profile())
        .ok_or(Error::NotAcceptable("no common DTLS-SRTP profile"))?;
    let len = 2 * (suite.key_len() + suite.salt_len());
    let material = dtls
        .connection_state()
        .await
        .export_keying_material(EXTRACTOR_LABEL, &[], len)
        .await
        .map_err(|_| Error::Protocol("DTLS keying material unavailable"))?;
    let keys = srtp_keys(suite, &material, role)?;
    Ok((dtls, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_material_is_split_per_rfc5764() {
        let suite = Suite::AesCm128HmacSha1_80;
        // client key 16 x 1, server key 16 x 2, client salt 14 x 3, server salt 14 x 4
        let mut m = vec![1u8; 16];
        m.extend([2u8; 16]);
        m.extend([3u8; 14]);
        m.extend([4u8; 14]);
        let server = srtp_keys(suite, &m, DtlsRole::Server).unwrap();
        assert_eq!(
            (server.remote.key(), server.remote.salt()),
            (&[1u8; 16][..], &[3u8; 14][..])
        );
        assert_eq!(
            (server.local.key(), server.local.salt()),
            (&[2u8; 16][..], &[4u8; 14][..])
        );
        let client = srtp_keys(suite, &m, DtlsRole::Client).unwrap();
        assert_eq!(client.remote, server.local);
        assert_eq!(client.local, server.remote);
        assert!(srtp_keys(suite, &m[1..], DtlsRole::Server).is_err());
        let gcm = Suite::AeadAes128Gcm;
        assert!(srtp_keys(gcm, &[0; 2 * (16 + 12)], DtlsRole::Client).is_ok());
    }

    #[test]
    fn identity_is_ecdsa_and_fingerprinted() {
        let id = DtlsIdentity::generate().unwrap();
        let der = id.certificate.certificate[0].as_ref().to_vec();
        assert_eq!(id.fingerprint(), Fingerprint::of_der(&der));
        assert_ne!(
            id.fingerprint(),
            DtlsIdentity::generate().unwrap().fingerprint()
        );
        let check = id.config(id.fingerprint()).verify_peer_certificate.unwrap();
        assert!(check(std::slice::from_ref(&der), &[]).is_ok());
        let other = DtlsIdentity::generate().unwrap();
        let check = id
            .config(other.fingerprint())
            .verify_peer_certificate
            .unwrap();
        assert!(check(&[der], &[]).is_err());
        assert!(check(&[], &[]).is_err());
    }
}
