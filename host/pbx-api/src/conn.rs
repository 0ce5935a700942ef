//! Serving connections: admission (a cap on open connections in all and per
//! source address), the TLS handshake deadline, and HTTP/1.1 with a deadline on
//! every request head, so a slow or silent client cannot hold a connection.
//!
//! # Design
//! - A connection is admitted only when a global slot and a slot of its source
//!   address are free; otherwise it is closed at once. Slots are released when
//!   the connection's task ends, however it ends.
//! - TLS handshakes run in the connection's task under
//!   [`ApiConfig::tls_handshake_timeout_s`].
//! - hyper reads each request head under [`ApiConfig::header_read_timeout_s`];
//!   that deadline also bounds how long a kept-alive connection may sit idle
//!   between requests. A request's body and the handler run under the router's
//!   timeout ([`ApiConfig::request_timeout_s`]), answered with the JSON error.
//! - A connection whose socket makes no progress either way for longer than
//!   both deadlines together (a client that stops reading its response) is
//!   closed by a watchdog.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::ApiConfig;

/// Open connections, in all and per source address.
pub(crate) struct Admission {
    all: Arc<Semaphore>,
    per_source_max: usize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
}

/// A held connection slot; dropping it frees the slot.
pub(crate) struct Slot {
    _all: OwnedSemaphorePermit,
    source: IpAddr,
    admission: Arc<Admission>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.admission.per_source.lock();
        if let Some(n) = map.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.source);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(max: usize, per_source_max: usize) -> Arc<Admission> {
        Arc::new(Admission {
            all: Arc::new(Semaphore::new(max.max(1))),
            per_source_max: per_source_max.max(1),
            per_source: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `source`, or `None` when either cap is
    /// reached. The per-source table holds only sources with open
    /// connections, so it is bounded by the global cap.
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr) -> Option<Slot> {
        let all = self.all.clone().try_acquire_owned().ok()?;
        let mut map = self.per_source.lock();
        let n = map.entry(source).or_insert(0);
        if *n >= self.per_source_max {
            return None;
        }
        *n += 1;
        drop(map);
        Some(Slot {
            _all: all,
            source,
            admission: self.clone(),
        })
    }
}

/// An I/O stream that records when it last made progress.
struct Watched<S> {
    inner: S,
    last: Arc<AtomicU64>,
    start: tokio::time::Instant,
}

impl<S> Watched<S> {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.1 on one admitted connection until it ends, a deadline
/// passes, or `shutdown` changes (then open requests finish first).
async fn serve_http<S>(
    io: S,
    peer: SocketAddr,
    app: Router,
    config: &ApiConfig,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let last = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let io = Watched {
        inner: io,
        last: last.clone(),
        start,
    };
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let header_timeout = Duration::from_secs(config.header_read_timeout_s.max(1));
    let stall = header_timeout + Duration::from_secs(config.request_timeout_s.max(1));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut watchdog = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "API connection ended");
                }
                return;
            }
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(stall, conn.as_mut()).await;
                return;
            }
            _ = watchdog.tick() => {
                let idle_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
                    .saturating_sub(last.load(Ordering::Relaxed));
                if Duration::from_millis(idle_ms) > stall {
                    tracing::debug!(%peer, "API connection stalled; closing");
                    return;
                }
            }
        }
    }
}

/// Accepts connections on `tcp` until `shutdown` completes, then lets open
/// requests finish. `tls`: serve TLS with this acceptor; `None`: plain HTTP.
pub(crate) async fn run(
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let admission = Admission::new(config.max_connections, config.max_connections_per_source);
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = tokio_util::task::TaskTracker::new();
    let config = Arc::new(config);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = admission.admit(peer.ip()) else {
            tracing::debug!(%peer, "API connection refused: too many open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, config, tls, stop) = (app.clone(), config.clone(), tls.clone(), stop_rx.clone());
        tracker.spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_http(stream, peer, app, &config, stop).await,
                Some(acceptor) => {
                    let deadline = Duration::from_secs(config.tls_handshake_timeout_s.max(1));
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_http(tls, peer, app, &config, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(tcp);
    let _ = stop_tx.send(true);
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_caps_in_all_and_per_source() {
        let a = Admission::new(3, 2);
        let x: IpAddr = [10, 0, 0, 1].into();
        let y: IpAddr = [10, 0, 0, 2].into();
        let x1 = a.admit(x).expect("x1");
        let _x2 = a.admit(x).expect("x2");
        assert!(a.admit(x).is_none(), "per-source cap");
        let _y1 = a.admit(y).expect("y1");
        assert!(a.admit(y).is_none(), "global cap");
        drop(x1);
        assert!(a.admit(x).is_some(), "a freed slot is reusable");
        assert!(a.per_source.lock().len() <= 2);
    }
}
