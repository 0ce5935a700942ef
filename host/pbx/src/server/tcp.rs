//! SIP over TCP: the accept loop and, per connection, a reader that frames
//! messages and a writer fed by a bounded queue. The connection code is generic
//! over the byte stream, so TLS (see `tls`) runs the same framing over rustls.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pbx_core::{ConnId, Inbound, Peer, TransportKind};
use sip::framer::{Frame, next_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::io::Io;

/// The pong to a CRLFCRLF keep-alive ping (RFC 5626 §4.4.1).
const PONG: &[u8] = b"\r\n";

/// The next connection on `listener` that the guard admits, `None` once the
/// server stops receiving. Accept errors (usually out of file descriptors) back
/// off instead of spinning; a banned source, or one already holding its share of
/// connections, is closed at once, before any work is done for it. The source of
/// a returned connection holds a slot, given back with `Io::release_source`.
pub(crate) async fn admit_next(
    io: &Io,
    listener: &TcpListener,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = io.stop_receiving.cancelled() => return None,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "{what} accept failed");
                tokio::select! {
                    () = io.stop_receiving.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        if io.guard().refuses(peer.ip(), std::time::Instant::now()) {
            continue;
        }
        if !io.acquire_source(peer.ip()) {
            tracing::debug!(%peer, "too many connections from this address; refused");
            continue;
        }
        let _ = stream.set_nodelay(true);
        return Some((stream, peer));
    }
}

/// Accepts connections until the server stops receiving.
pub(crate) async fn accept(io: Arc<Io>, listener: TcpListener) {
    while let Some((stream, peer)) = admit_next(&io, &listener, "TCP").await {
        let (id, tx, rx) = io.open_conn(peer);
        let task_io = io.clone();
        io.connections().spawn(async move {
            connection(task_io, id, stream, tx, rx, Some(peer.ip())).await;
        });
    }
}

/// Runs one registered connection until it closes; `source` is the connection
/// slot to give back (accepted connections only).
pub(crate) async fn connection(
    io: Arc<Io>,
    id: ConnId,
    stream: TcpStream,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    source: Option<IpAddr>,
) {
    let (peer, local) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(p), Ok(l)) => (p, l),
        _ => {
            io.remove(id);
            release(&io, source);
            return;
        }
    };
    let ends = Ends {
        peer,
        local,
        transport: TransportKind::Tcp,
    };
    stream_connection(io, id, stream, ends, tx, rx, source).await;
}

/// The addresses and transport of a connected stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ends {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) transport: TransportKind,
}

/// Runs one registered connection over any byte stream (TCP, or TLS over TCP)
/// until it closes.
pub(crate) async fn stream_connection<S>(
    io: Arc<Io>,
    id: ConnId,
    stream: S,
    ends: Ends,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    source: Option<IpAddr>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Ends { peer, .. } = ends;
    let (mut reader, writer) = tokio::io::split(stream);
    let writer_task = io.connections().spawn(write_loop(writer, rx));
    let end = read_loop(&io, id, &mut reader, &tx, ends).await;
    if end == ReadEnd::Stopped {
        // Keep the connection usable for what shutdown still sends.
        io.close_connections.cancelled().await;
    }
    tracing::debug!(%peer, conn = id.0, reason = ?end, "connection closed");
    io.remove(id);
    release(&io, source);
    drop(tx);
    let _ = writer_task.await;
}

fn release(io: &Io, source: Option<IpAddr>) {
    if let Some(ip) = source {
        io.release_source(ip);
    }
}

/// Writes queued messages until every sender is gone or the socket fails.
async fn write_loop<S: AsyncWrite>(mut writer: WriteHalf<S>, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Why a connection's reader stopped (TCP, TLS and WebSocket alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The peer closed or the socket failed.
    Closed,
    /// Unframeable bytes or an oversized message.
    BadFraming,
    /// No valid message within the idle timeout.
    Idle,
    /// The server is shutting down.
    Stopped,
}

async fn read_loop<S: AsyncRead>(
    io: &Io,
    id: ConnId,
    reader: &mut ReadHalf<S>,
    tx: &mpsc::Sender<Bytes>,
    ends: Ends,
) -> ReadEnd {
    let Ends {
        peer,
        local,
        transport,
    } = ends;
    let max = io.limits.max_message;
    let idle_deadline = tokio::time::Instant::now() + io.limits.tcp_idle_timeout;
    let mut seen_message = false;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        loop {
            match next_frame(&buf, max) {
                Ok(Frame::Message(len)) => {
                    seen_message = true;
                    let bytes = buf.split_to(len).freeze();
                    io.dispatch(Inbound::new(
                        Peer {
                            transport,
                            addr: peer,
                            conn: Some(id),
                        },
                        local,
                        bytes,
                    ));
                }
                Ok(Frame::KeepAlive(len)) => {
                    let is_ping = buf[..len.min(buf.len())]
                        .windows(4)
                        .any(|w| w == b"\r\n\r\n");
                    buf.advance(len.min(buf.len()));
                    if is_ping {
                        let _ = tx.try_send(Bytes::from_static(PONG));
                    }
                }
                Ok(Frame::Incomplete) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "framing error");
                    return ReadEnd::BadFraming;
                }
            }
        }
        if buf.len() > max {
            return ReadEnd::BadFraming;
        }
        buf.reserve(8 * 1024);
        let read = async {
            if seen_message {
                Some(reader.read_buf(&mut buf).await)
            } else {
                tokio::time::timeout_at(idle_deadline, reader.read_buf(&mut buf))
                    .await
                    .ok()
            }
        };
        let n = tokio::select! {
            () = io.stop_receiving.cancelled() => return ReadEnd::Stopped,
            r = read => r,
        };
        match n {
            None => return ReadEnd::Idle,
            Some(Ok(0)) | Some(Err(_)) => return ReadEnd::Closed,
            Some(Ok(_)) => {}
        }
    }
}
