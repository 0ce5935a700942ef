//! One SIP flow to the server under test (a UDP socket or a TLS connection)
//! and the routing of what arrives on it: by Call-ID to the task that owns the
//! call, new requests to the side's `incoming` queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::sip::{self, Frame, Msg};

/// The SIP transport used towards the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// SIP over UDP (Kamailio).
    Udp,
    /// SIP over TLS (the PBX's `--sip-tls` listener).
    Tls,
}

enum Out {
    Udp(std::net::UdpSocket, SocketAddr),
    Stream(mpsc::UnboundedSender<Vec<u8>>),
}

type Routes = Mutex<HashMap<String, mpsc::UnboundedSender<Msg>>>;

/// A SIP flow shared by the calls of one side.
pub(crate) struct Flow {
    kind: Kind,
    local: SocketAddr,
    out: Out,
    routes: Routes,
    incoming: Option<mpsc::UnboundedSender<Msg>>,
}

impl Flow {
    /// Opens the flow to `target` from `local` (port 0: any, as TLS does) and
    /// starts reading it. New requests go to `incoming` when given, else they
    /// are answered 481.
    pub(crate) async fn open(
        kind: Kind,
        local: SocketAddr,
        target: SocketAddr,
        incoming: Option<mpsc::UnboundedSender<Msg>>,
    ) -> anyhow::Result<Arc<Flow>> {
        match kind {
            Kind::Udp => {
                let (socket, send, local) = crate::media::split_socket(local)
                    .with_context(|| format!("binding SIP on {local}"))?;
                let flow = Arc::new(Flow {
                    kind,
                    local,
                    out: Out::Udp(send, target),
                    routes: Mutex::default(),
                    incoming,
                });
                let reader = flow.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                        if let Some(msg) = Msg::parse(&buf[..n]) {
                            reader.route(msg);
                        }
                    }
                });
                Ok(flow)
            }
            Kind::Tls => {
                let tcp = TcpStream::connect(target)
                    .await
                    .with_context(|| format!("connecting to {target}"))?;
                tcp.set_nodelay(true)?;
                let local = tcp.local_addr()?;
                let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config()?))
                    .connect(ServerName::IpAddress(target.ip().into()), tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {target}"))?;
                let (mut rd, mut wr) = tokio::io::split(tls);
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                tokio::spawn(async move {
                    while let Some(first) = rx.recv().await {
                        let mut batch = first;
                        while let Ok(more) = rx.try_recv() {
                            batch.extend_from_slice(&more);
                        }
                        if wr.write_all(&batch).await.is_err() || wr.flush().await.is_err() {
                            break;
                        }
                    }
                });
                let flow = Arc::new(Flow {
                    kind,
                    local,
                    out: Out::Stream(tx),
                    routes: Mutex::default(),
                    incoming,
                });
                let reader = flow.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::with_capacity(65536);
                    let mut chunk = vec![0u8; 65536];
                    loop {
                        match rd.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        loop {
                            match sip::next_frame(&buf) {
                                Frame::Incomplete => break,
                                Frame::Ping(n) => {
                                    buf.drain(..n);
                                }
                                Frame::Message(n) => {
                                    if let Some(msg) = Msg::parse(&buf[..n]) {
                                        reader.route(msg);
                                    }
                                    buf.drain(..n);
                                }
                                Frame::Invalid => {
                                    eprintln!("srtp-load: unframeable data from {target}; closing");
                                    return;
                                }
                            }
                        }
                    }
                });
                Ok(flow)
            }
        }
    }

    /// Sends one message.
    pub(crate) fn send(&self, msg: String) {
        match &self.out {
            Out::Udp(socket, target) => {
                let _ = socket.send_to(msg.as_bytes(), *target);
            }
            Out::Stream(tx) => {
                let _ = tx.send(msg.into_bytes());
            }
        }
    }

    /// Whether the transport is reliable (no retransmissions, RFC 3261 §17).
    pub(crate) fn reliable(&self) -> bool {
        self.kind == Kind::Tls
    }

    /// A Via header value with a fresh branch.
    pub(crate) fn via(&self, branch: &str) -> String {
        let proto = match self.kind {
            Kind::Udp => "UDP",
            Kind::Tls => "TLS",
        };
        format!("SIP/2.0/{proto} {};branch={branch};rport", self.local)
    }

    /// The Contact URI of `user` on this flow.
    pub(crate) fn contact(&self, user: &str) -> String {
        match self.kind {
            Kind::Udp => format!("sip:{user}@{}", self.local),
            Kind::Tls => format!("sip:{user}@{};transport=tls", self.local),
        }
    }

    /// Routes messages with `call_id` to the returned receiver until [`Flow::forget`].
    pub(crate) fn claim(&self, call_id: &str) -> mpsc::UnboundedReceiver<Msg> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.claim_with(call_id, tx);
        rx
    }

    /// Routes messages with `call_id` to `tx`.
    pub(crate) fn claim_with(&self, call_id: &str, tx: mpsc::UnboundedSender<Msg>) {
        self.routes
            .lock()
            .expect("routes")
            .insert(call_id.to_owned(), tx);
    }

    /// Stops routing `call_id`.
    pub(crate) fn forget(&self, call_id: &str) {
        self.routes.lock().expect("routes").remove(call_id);
    }

    fn route(&self, msg: Msg) {
        let Some(call_id) = msg.call_id().map(str::to_owned) else {
            return;
        };
        let owner = self.routes.lock().expect("routes").get(&call_id).cloned();
        let msg = match owner {
            Some(tx) => match tx.send(msg) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => msg,
        };
        let Some(method) = msg.method() else {
            return; // a late response: nobody waits for it
        };
        if let Some(incoming) = &self.incoming
            && method == "INVITE"
        {
            let _ = incoming.send(msg);
        } else if method == "OPTIONS" {
            self.send(sip::response(&msg, 200, "OK", None, &[], None));
        } else if method != "ACK" {
            let r = sip::response(
                &msg,
                481,
                "Call/Transaction Does Not Exist",
                None,
                &[],
                None,
            );
            self.send(r);
        }
    }
}

/// A client configuration that accepts any server certificate: this is a
/// loopback bench tool facing a self-signed test certificate, never a client
/// for a real network.
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

/// Trusts any certificate but still checks the handshake signatures with it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
