//! SIP over secure WebSocket (RFC 7118), the transport of browser phones.
//!
//! A connection is TLS (the SIP TLS certificate), then an HTTP upgrade that
//! must ask for the `sip` subprotocol, then one SIP message per WebSocket
//! message in either direction (§5.1). Both handshakes must finish within the
//! idle timeout, and the first SIP message must follow within it too, so a
//! connection that never speaks SIP costs only a bounded wait. Frames and
//! messages are capped at the SIP message limit before they are buffered.
//!
//! Each message is handed to the core like a datagram: its bounds are the
//! WebSocket message's, so no Content-Length framing is needed. Messages carry
//! [`TransportKind::Wss`]: the core answers with a `SIP/2.0/WSS` Via and a
//! `transport=ws` contact, and reaches the browser only over the connection it
//! opened (a browser's Contact host is a `.invalid` name, §5.2); the relay
//! offers such a phone DTLS-SRTP media. Connections share the TCP ones'
//! registry, per-source limits, bans and send queues.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use pbx_core::{ConnId, Inbound, Peer, TransportKind};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::io::Io;
use super::tcp::{ReadEnd, admit_next};

/// The WebSocket subprotocol of SIP (RFC 7118 §4.1).
const SUBPROTOCOL: &str = "sip";

/// Accepts connections until the server stops receiving; each runs in a task
/// of its own.
pub(crate) async fn accept(io: Arc<Io>, listener: TcpListener, acceptor: TlsAcceptor) {
    while let Some((stream, peer)) = admit_next(&io, &listener, "WebSocket").await {
        let task_io = io.clone();
        let acceptor = acceptor.clone();
        io.connections().spawn(async move {
            connection(&task_io, stream, peer, acceptor).await;
            task_io.release_source(peer.ip());
        });
    }
}

/// Whether an upgrade request's `Sec-WebSocket-Protocol` offers `sip`.
fn offers_sip(request: &Request) -> bool {
    request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// Agrees to the `sip` subprotocol, or refuses an upgrade that does not ask
/// for it with 400.
#[allow(clippy::result_large_err)] // the handshake callback's signature
fn choose_subprotocol(
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    if !offers_sip(request) {
        let mut refusal = ErrorResponse::new(Some("the sip subprotocol is required".into()));
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refusal);
    }
    response.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(response)
}

fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

async fn connection(io: &Arc<Io>, stream: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + io.limits.tcp_idle_timeout;
    let opening = async {
        let tls = acceptor.accept(stream).await.map_err(|e| e.to_string())?;
        tokio_tungstenite::accept_hdr_async_with_config(
            tls,
            choose_subprotocol,
            Some(config(io.limits.max_message)),
        )
        .await
        .map_err(|e| e.to_string())
    };
    let ws = match tokio::time::timeout_at(deadline, opening).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "WebSocket opening failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "WebSocket opening timed out");
            return;
        }
    };
    let (id, tx, rx) = io.open_conn(peer);
    let (sink, messages) = ws.split();
    let writer = io.connections().spawn(write_loop(sink, rx));
    let end = read_loop(io, id, messages, peer, local, deadline).await;
    if end == ReadEnd::Stopped {
        // Keep the connection usable for what shutdown still sends.
        io.close_connections.cancelled().await;
    }
    tracing::debug!(%peer, conn = id.0, reason = ?end, "WebSocket connection closed");
    io.remove(id);
    drop(tx);
    let _ = writer.await;
}

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;
type Messages<S> = futures_util::stream::SplitStream<WebSocketStream<S>>;

/// Sends each queued SIP message as one WebSocket message: text when it is
/// UTF-8 (every SIP message without a binary body), else binary.
async fn write_loop<S>(mut sink: Sink<S>, mut rx: mpsc::Receiver<Bytes>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(bytes) = rx.recv().await {
        let message = match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes),
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

async fn read_loop<S>(
    io: &Io,
    id: ConnId,
    mut messages: Messages<S>,
    peer: SocketAddr,
    local: SocketAddr,
    idle_deadline: tokio::time::Instant,
) -> ReadEnd
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seen_message = false;
    loop {
        let next = async {
            if seen_message {
                Some(messages.next().await)
            } else {
                tokio::time::timeout_at(idle_deadline, messages.next())
                    .await
                    .ok()
            }
        };
        let message = tokio::select! {
            () = io.stop_receiving.cancelled() => return ReadEnd::Stopped,
            m = next => m,
        };
        let bytes = match message {
            None => return ReadEnd::Idle,
            Some(None | Some(Err(_))) => return ReadEnd::Closed,
            Some(Some(Ok(Message::Text(text)))) => Bytes::from(text),
            Some(Some(Ok(Message::Binary(bytes)))) => bytes,
            Some(Some(Ok(Message::Close(_)))) => return ReadEnd::Closed,
            // Pings are answered by the library; pongs need nothing.
            Some(Some(Ok(_))) => continue,
        };
        if is_keep_alive(&bytes) {
            continue;
        }
        seen_message = true;
        io.dispatch(Inbound::new(
            Peer {
                transport: TransportKind::Wss,
                addr: peer,
                conn: Some(id),
            },
            local,
            bytes,
        ));
    }
}

/// A message of nothing but line ends: a keep-alive some clients send.
fn is_keep_alive(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'\r' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(protocols: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/");
        if let Some(p) = protocols {
            builder = builder.header("Sec-WebSocket-Protocol", p);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn the_upgrade_must_ask_for_the_sip_subprotocol() {
        let ok = choose_subprotocol(&upgrade(Some("chat, sip")), Response::new(()))
            .expect("sip offered");
        assert_eq!(
            ok.headers()
                .get("sec-websocket-protocol")
                .map(|v| v.as_bytes()),
            Some(&b"sip"[..])
        );
        for refused in [None, Some("chat"), Some("sips"), Some("")] {
            let err = choose_subprotocol(&upgrade(refused), Response::new(()))
                .expect_err("no sip subprotocol");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{refused:?}");
        }
    }

    #[test]
    fn only_line_ends_are_a_keep_alive() {
        assert!(is_keep_alive(b"\r\n\r\n"));
        assert!(!is_keep_alive(b"OPTIONS sip:x SIP/2.0\r\n"));
    }
}
