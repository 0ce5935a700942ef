//! State shared by the I/O tasks: the shard queues, the UDP sockets and the TCP
//! connection registry.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use pbx_core::{ConnId, Inbound, Peer, Shared, TransportKind};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Limits;
use super::guard::{Guard, Shed};

/// The sending side of one TCP connection.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) tx: mpsc::Sender<Bytes>,
    pub(crate) peer: SocketAddr,
}

pub(crate) struct Io {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
    shards: Vec<mpsc::Sender<Inbound>>,
    udp: Vec<(Arc<UdpSocket>, SocketAddr)>,
    conns: DashMap<ConnId, Conn>,
    by_addr: DashMap<SocketAddr, ConnId>,
    per_source: DashMap<IpAddr, usize>,
    next_conn: AtomicU64,
    dropped_inbound: AtomicU64,
    dropped_outbound: AtomicU64,
    pub(crate) limits: Limits,
    pub(crate) stop_receiving: CancellationToken,
    pub(crate) close_connections: CancellationToken,
    connections: TaskTracker,
    /// How outgoing TLS connections verify their peer (set at start when the
    /// server speaks TLS).
    pub(crate) tls_client: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
}

impl Io {
    pub(crate) fn new(
        shared: Arc<Shared>,
        guard: Arc<Guard>,
        shards: Vec<mpsc::Sender<Inbound>>,
        udp: Vec<(Arc<UdpSocket>, SocketAddr)>,
        limits: Limits,
        stop_receiving: CancellationToken,
        close_connections: CancellationToken,
    ) -> Io {
        Io {
            shared,
            guard,
            shards,
            udp,
            conns: DashMap::new(),
            by_addr: DashMap::new(),
            per_source: DashMap::new(),
            next_conn: AtomicU64::new(1),
            dropped_inbound: AtomicU64::new(0),
            dropped_outbound: AtomicU64::new(0),
            limits,
            stop_receiving,
            close_connections,
            connections: TaskTracker::new(),
            tls_client: std::sync::OnceLock::new(),
        }
    }

    /// Hands a message to its shard. Before any parsing the guard drops messages
    /// of banned, flooding and scanning sources; under overload a new request
    /// gets a stateless `503` with `Retry-After`. A message that finds its
    /// shard's queue full is dropped (and counted) — after a `503` when it is a
    /// new request — so a flood cannot grow memory or stall the receive loops.
    /// Queues a message one shard hands to another (call pickup). A full
    /// queue drops it as it would a message from the network: the phone
    /// retransmits, and its Call-ID now leads to that shard.
    pub(crate) fn forward(&self, shard: usize, inbound: Inbound) {
        let Some(tx) = self.shards.get(shard) else {
            return;
        };
        if tx.try_send(inbound).is_err() {
            tracing::warn!(shard, "shard queue full, handed-over message dropped");
        }
    }

    pub(crate) fn dispatch(&self, inbound: Inbound) {
        if self.shards.is_empty() {
            return;
        }
        let mut inbound = inbound;
        let now = Instant::now();
        let source = inbound.peer.addr.ip();
        inbound.client = self.guard.relayed_client(source, &inbound.bytes);
        if !self
            .guard
            .admit(source, inbound.client, &inbound.bytes, now)
        {
            return;
        }
        let backlog = self
            .shards
            .iter()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .max()
            .unwrap_or(0);
        if let Shed::Reject(secs) = self.guard.shed(&inbound.bytes, backlog, now) {
            self.unavailable(&inbound, secs);
            return;
        }
        let index = self.shared.shard_for(&inbound.bytes) % self.shards.len();
        if let Err(e) = self.shards[index].try_send(inbound) {
            let inbound = e.into_inner();
            let n = self.dropped_inbound.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(dropped = n, shard = index, "shard queue full, dropping");
            }
            if super::guard::is_new_request(&inbound.bytes)
                && let Some(secs) = self.guard.retry_after()
            {
                self.unavailable(&inbound, secs);
            }
        }
    }

    /// Answers `inbound` with `503 Service Unavailable` and `Retry-After`, without
    /// parsing it or waiting for the socket (a full socket drops the answer).
    fn unavailable(&self, inbound: &Inbound, retry_after_secs: u64) {
        let secs = retry_after_secs.to_string();
        let Some(reply) = sip::error_response_with(
            &inbound.bytes,
            503,
            "Service Unavailable",
            &[("Retry-After", &secs)],
        ) else {
            return;
        };
        let dest = inbound.peer;
        match dest.transport {
            TransportKind::Udp => {
                if let Some(socket) = self.udp_for(Some(inbound.local), dest.addr) {
                    let _ = socket.try_send_to(&reply, dest.addr);
                }
            }
            TransportKind::Tcp | TransportKind::Tls | TransportKind::Wss => {
                let tx = dest
                    .conn
                    .and_then(|id| self.conns.get(&id).map(|c| c.tx.clone()));
                if let Some(tx) = tx {
                    self.queue(&tx, Bytes::from(reply));
                }
            }
        }
    }

    pub(crate) fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    pub(crate) fn dropped_inbound(&self) -> u64 {
        self.dropped_inbound.load(Ordering::Relaxed)
    }

    /// Sends bytes as the core asked.
    pub(crate) async fn transmit(
        self: &Arc<Self>,
        dest: Peer,
        local: Option<SocketAddr>,
        bytes: Bytes,
    ) {
        match dest.transport {
            TransportKind::Udp => {
                let Some(socket) = self.udp_for(local, dest.addr) else {
                    tracing::debug!(dest = %dest.addr, "no UDP socket to send from");
                    return;
                };
                if let Err(e) = socket.send_to(&bytes, dest.addr).await {
                    tracing::debug!(dest = %dest.addr, error = %e, "UDP send failed");
                }
            }
            TransportKind::Tcp | TransportKind::Tls | TransportKind::Wss => {
                self.send_tcp(dest, bytes)
            }
        }
    }

    /// The UDP socket bound to `local`, else one of the destination's address
    /// family, else the first.
    fn udp_for(&self, local: Option<SocketAddr>, dest: SocketAddr) -> Option<&Arc<UdpSocket>> {
        local
            .and_then(|l| self.udp.iter().find(|(_, a)| *a == l))
            .or_else(|| self.udp.iter().find(|(_, a)| a.is_ipv4() == dest.is_ipv4()))
            .or_else(|| self.udp.first())
            .map(|(s, _)| s)
    }

    fn send_tcp(self: &Arc<Self>, dest: Peer, bytes: Bytes) {
        let known = dest
            .conn
            .and_then(|id| self.conns.get(&id).map(|c| c.tx.clone()))
            .or_else(|| {
                let id = *self.by_addr.get(&dest.addr)?;
                self.conns.get(&id).map(|c| c.tx.clone())
            });
        match known {
            Some(tx) => self.queue(&tx, bytes),
            // A browser is reached only over the WebSocket it opened.
            None if dest.transport == TransportKind::Wss => {
                tracing::debug!(dest = %dest.addr, "WebSocket connection gone; message dropped");
            }
            None => self.connect(dest.addr, dest.transport, bytes),
        }
    }

    fn queue(&self, tx: &mpsc::Sender<Bytes>, bytes: Bytes) {
        if tx.try_send(bytes).is_err() {
            let n = self.dropped_outbound.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(dropped = n, "connection send queue full, dropping");
            }
        }
    }

    /// Opens an outgoing connection to `addr`, sending `first` once connected;
    /// messages sent meanwhile queue behind it.
    fn connect(self: &Arc<Self>, addr: SocketAddr, transport: TransportKind, first: Bytes) {
        if self.stop_receiving.is_cancelled() {
            return;
        }
        let id = self.next_id();
        let (tx, rx) = mpsc::channel(self.limits.conn_queue.max(1));
        match self.by_addr.entry(addr) {
            Entry::Occupied(existing) => {
                // Another shard opened one at the same moment: use it.
                if let Some(conn) = self.conns.get(existing.get()) {
                    self.queue(&conn.tx, first);
                }
                return;
            }
            Entry::Vacant(slot) => {
                slot.insert(id);
            }
        }
        self.queue(&tx, first);
        self.conns.insert(
            id,
            Conn {
                tx: tx.clone(),
                peer: addr,
            },
        );
        let io = self.clone();
        self.connections.spawn(async move {
            let timeout = io.limits.connect_timeout;
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) if transport == TransportKind::Tls => {
                    super::sip_tls::connected(io, id, stream, tx, rx).await;
                }
                Ok(Ok(stream)) => {
                    super::tcp::connection(io, id, stream, tx, rx, None).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "outgoing TCP connection failed");
                    io.remove(id);
                }
                Err(_) => {
                    tracing::debug!(%addr, "outgoing TCP connection timed out");
                    io.remove(id);
                }
            }
        });
    }

    pub(crate) fn next_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Opens the registry's side of an accepted connection from `peer`: a new
    /// id, its bounded send queue, registered; the reader and writer tasks
    /// take the id and both ends of the queue.
    pub(crate) fn open_conn(
        &self,
        peer: SocketAddr,
    ) -> (ConnId, mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>) {
        let id = self.next_id();
        let (tx, rx) = mpsc::channel(self.limits.conn_queue.max(1));
        self.register(
            id,
            Conn {
                tx: tx.clone(),
                peer,
            },
        );
        (id, tx, rx)
    }

    /// Registers an accepted connection.
    pub(crate) fn register(&self, id: ConnId, conn: Conn) {
        self.by_addr.insert(conn.peer, id);
        self.conns.insert(id, conn);
    }

    /// Forgets a connection (its writer ends once the last sender is gone).
    pub(crate) fn remove(&self, id: ConnId) {
        if let Some((_, conn)) = self.conns.remove(&id) {
            self.by_addr.remove_if(&conn.peer, |_, v| *v == id);
        }
    }

    /// Forgets every connection, at shutdown.
    pub(crate) fn drop_connections(&self) {
        self.conns.clear();
        self.by_addr.clear();
    }

    /// Takes one of `ip`'s connection slots; `false` when it has none left.
    pub(crate) fn acquire_source(&self, ip: IpAddr) -> bool {
        let mut count = self.per_source.entry(ip).or_insert(0);
        if *count >= self.limits.max_connections_per_source {
            return false;
        }
        *count += 1;
        true
    }

    pub(crate) fn release_source(&self, ip: IpAddr) {
        if let Entry::Occupied(mut e) = self.per_source.entry(ip) {
            *e.get_mut() = e.get().saturating_sub(1);
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Tracks connection tasks so shutdown can wait for them.
    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.connections
    }
}
