//! Keeps the host registered to its tenants' carriers: one task per trunk that has
//! a user name, each driving a [`pbx_core::TrunkRegistration`] over its own socket.
//!
//! Over UDP a task binds its own ephemeral port (on the main listener's address
//! family and IP) and names it in the Via, so the carrier's responses come back
//! to the task; the Contact names the main listener's advertised address, so the
//! carrier's calls reach the normal SIP path. Over TCP a task opens its own
//! connection. TLS trunks are not registered (the host has no TLS client yet).
//!
//! [`TrunkRegistrar::sync`] is called with every trunk list the store yields: it
//! starts tasks for new or changed trunks (a changed one after its old task has
//! unregistered) and stops removed ones. [`TrunkRegistrar::shutdown`] makes every
//! task unregister, bounded by a deadline.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pbx_core::{RegState, RegTimers, TransportKind, TrunkRegConfig, TrunkRegistration};
use sip::framer::{Frame, next_frame};
use store::{TenantId, Trunk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{BoundAddrs, Limits};

/// Expiry asked of carriers, in seconds.
const EXPIRES: u32 = 3600;
/// Largest message read from a carrier.
const MAX_MESSAGE: usize = 64 * 1024;

/// What every registration task shares.
struct Ctx {
    /// The main listeners' advertised addresses (Contact).
    advertise: Vec<(TransportKind, SocketAddr)>,
    /// The main UDP listeners' bound addresses (which IP our own sockets bind).
    udp_bound: Vec<SocketAddr>,
    user_agent: Option<String>,
    timers: RegTimers,
    connect_timeout: Duration,
    /// How long a task waits for its unregister to be answered.
    unregister_wait: Duration,
}

/// One trunk's task.
struct Running {
    trunk: Trunk,
    stop: CancellationToken,
    status: Arc<Mutex<Status>>,
    task: JoinHandle<()>,
}

/// What [`TrunkRegistrar::states`] reports for a trunk.
#[derive(Debug, Clone)]
enum Status {
    /// Not (yet) driving a registration, and why.
    Waiting(String),
    Reg(RegState),
}

impl Status {
    fn text(&self, now: Instant) -> String {
        let secs = |t: Instant| t.saturating_duration_since(now).as_secs();
        match self {
            Status::Waiting(why) => why.clone(),
            Status::Reg(RegState::Registering) => "registering".into(),
            Status::Reg(RegState::Registered { until }) => {
                format!("registered, expires in {}s", secs(*until))
            }
            Status::Reg(RegState::Failed { reason, retry_at }) => {
                format!("failed: {reason}; retry in {}s", secs(*retry_at))
            }
            Status::Reg(RegState::Unregistering) => "unregistering".into(),
            Status::Reg(RegState::Unregistered) => "unregistered".into(),
        }
    }
}

/// Runs the registrations of every trunk that registers. Cheap to clone.
#[derive(Clone)]
pub(crate) struct TrunkRegistrar {
    ctx: Arc<Ctx>,
    running: Arc<Mutex<HashMap<(TenantId, String), Running>>>,
    tracker: TaskTracker,
    stopping: CancellationToken,
}

impl TrunkRegistrar {
    /// A registrar with no trunks yet; `advertise` is the core's advertised
    /// addresses and `bound` the listeners' real ones.
    pub(crate) fn new(
        advertise: Vec<(TransportKind, SocketAddr)>,
        bound: &BoundAddrs,
        user_agent: Option<String>,
        limits: &Limits,
    ) -> TrunkRegistrar {
        TrunkRegistrar {
            ctx: Arc::new(Ctx {
                advertise,
                udp_bound: bound.udp.clone(),
                user_agent,
                timers: RegTimers::default(),
                connect_timeout: limits.connect_timeout,
                unregister_wait: limits.drain_timeout,
            }),
            running: Arc::new(Mutex::new(HashMap::new())),
            tracker: TaskTracker::new(),
            stopping: CancellationToken::new(),
        }
    }

    /// Brings the running tasks in line with `trunks` (every tenant's): starts
    /// new and changed registering trunks, stops changed and removed ones.
    pub(crate) fn sync(&self, trunks: Vec<Trunk>) {
        if self.stopping.is_cancelled() {
            return;
        }
        let wanted: HashMap<(TenantId, String), Trunk> = trunks
            .into_iter()
            .filter(|t| t.register && t.username.is_some())
            .map(|t| ((t.tenant, t.name.clone()), t))
            .collect();
        let mut running = self.running.lock();
        let mut previous = HashMap::new();
        let keys: Vec<_> = running.keys().cloned().collect();
        for key in keys {
            if wanted.get(&key) == running.get(&key).map(|r| &r.trunk) {
                continue;
            }
            if let Some(old) = running.remove(&key) {
                old.stop.cancel();
                previous.insert(key, old.task);
            }
        }
        for (key, trunk) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let stop = self.stopping.child_token();
            let status = Arc::new(Mutex::new(Status::Waiting("starting".into())));
            let task = self.tracker.spawn(drive(
                self.ctx.clone(),
                trunk.clone(),
                stop.clone(),
                status.clone(),
                previous.remove(&key),
            ));
            running.insert(
                key,
                Running {
                    trunk,
                    stop,
                    status,
                    task,
                },
            );
        }
    }

    /// Every registering trunk with its state, as text, ordered by tenant and name.
    #[allow(
        dead_code,
        reason = "read by the control API when it lists trunk states"
    )]
    pub(crate) fn states(&self) -> Vec<(TenantId, String, String)> {
        let now = Instant::now();
        let mut out: Vec<_> = self
            .running
            .lock()
            .iter()
            .map(|((tenant, name), r)| (*tenant, name.clone(), r.status.lock().text(now)))
            .collect();
        out.sort_by(|a, b| (a.0.0, &a.1).cmp(&(b.0.0, &b.1)));
        out
    }

    /// Makes every task unregister and waits (bounded) until they have ended.
    pub(crate) async fn shutdown(&self) {
        self.stopping.cancel();
        self.running.lock().clear();
        self.tracker.close();
        let bound = self.ctx.unregister_wait + self.ctx.connect_timeout;
        if tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some trunk registrations did not end in time");
        }
    }
}

/// The link to one carrier.
enum Link {
    Udp {
        socket: UdpSocket,
        remote: SocketAddr,
    },
    Tcp {
        remote: SocketAddr,
        conn: Option<TcpStream>,
        buf: Vec<u8>,
        connect_timeout: Duration,
    },
}

impl Link {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Link::Udp { socket, remote } => socket.send_to(bytes, *remote).await.map(|_| ()),
            Link::Tcp {
                remote,
                conn,
                buf,
                connect_timeout,
            } => {
                if conn.is_none() {
                    *conn = Some(connect(*remote, *connect_timeout).await?);
                    buf.clear();
                }
                let Some(stream) = conn else {
                    return Ok(());
                };
                let sent = stream.write_all(bytes).await;
                if sent.is_err() {
                    *conn = None;
                }
                sent
            }
        }
    }

    /// The next message from the carrier (cancel-safe: bytes are kept only after
    /// a read completes).
    async fn recv(&mut self, scratch: &mut [u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Link::Udp { socket, remote } => loop {
                let (n, from) = socket.recv_from(scratch).await?;
                // Only the carrier's address may answer (the branch check in the
                // core does the rest).
                if from.ip() == remote.ip() {
                    return Ok(scratch.get(..n).unwrap_or_default().to_vec());
                }
            },
            Link::Tcp { conn, buf, .. } => loop {
                match next_frame(buf, MAX_MESSAGE) {
                    Ok(Frame::Message(n)) => return Ok(buf.drain(..n).collect()),
                    Ok(Frame::KeepAlive(n)) => {
                        buf.drain(..n);
                        continue;
                    }
                    Ok(Frame::Incomplete) => {}
                    Err(e) => {
                        *conn = None;
                        buf.clear();
                        return Err(std::io::Error::other(e));
                    }
                }
                let Some(stream) = conn.as_mut() else {
                    return std::future::pending().await;
                };
                let n = stream.read(scratch).await?;
                if n == 0 {
                    *conn = None;
                    buf.clear();
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(scratch.get(..n).unwrap_or_default());
            },
        }
    }
}

async fn connect(remote: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    tokio::time::timeout(timeout, TcpStream::connect(remote))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// `host:port` with IPv6 brackets.
fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The advertised listener to name in the Contact: the trunk's transport and
/// address family if possible, else the closest match.
fn contact_addr(
    advertise: &[(TransportKind, SocketAddr)],
    transport: TransportKind,
    v4: bool,
) -> Option<(TransportKind, SocketAddr)> {
    let rank = |(kind, addr): &(TransportKind, SocketAddr)| {
        u8::from(*kind != transport) * 2 + u8::from(addr.is_ipv4() != v4)
    };
    advertise.iter().min_by_key(|entry| rank(entry)).copied()
}

/// Our Contact URI for `user`.
fn contact_uri(user: &str, (kind, addr): (TransportKind, SocketAddr)) -> String {
    match kind {
        TransportKind::Udp => format!("sip:{user}@{}", host_port(addr)),
        TransportKind::Tcp => format!("sip:{user}@{};transport=tcp", host_port(addr)),
        TransportKind::Tls | TransportKind::Wss => format!("sips:{user}@{}", host_port(addr)),
    }
}

/// Sets up the link to the carrier and the registration's addressing: the link,
/// our Via sent-by and our Contact.
async fn open(ctx: &Ctx, trunk: &Trunk, user: &str) -> Result<(Link, String, String), String> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((trunk.host.as_str(), trunk.port))
        .await
        .map_err(|e| format!("{} does not resolve: {e}", trunk.host))?
        .collect();
    let listener_v4 = ctx
        .advertise
        .iter()
        .find(|(k, _)| *k == trunk.transport)
        .or(ctx.advertise.first())
        .is_none_or(|(_, a)| a.is_ipv4());
    let remote = resolved
        .iter()
        .find(|a| a.is_ipv4() == listener_v4)
        .or(resolved.first())
        .copied()
        .ok_or_else(|| format!("{} has no address", trunk.host))?;
    let contact = contact_addr(&ctx.advertise, trunk.transport, remote.is_ipv4())
        .map(|a| contact_uri(user, a))
        .ok_or("no listener to advertise")?;
    match trunk.transport {
        TransportKind::Udp => {
            let bind_ip = ctx
                .udp_bound
                .iter()
                .map(SocketAddr::ip)
                .find(|ip| ip.is_ipv4() == remote.is_ipv4())
                .unwrap_or(if remote.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                });
            let socket = UdpSocket::bind((bind_ip, 0))
                .await
                .map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
            let local = socket
                .local_addr()
                .map_err(|e| format!("no local address: {e}"))?;
            // The advertised IP of this family when bound to an unspecified one.
            let ip = if local.ip().is_unspecified() {
                ctx.advertise
                    .iter()
                    .map(|(_, a)| a.ip())
                    .find(|ip| ip.is_ipv4() == local.is_ipv4())
                    .unwrap_or(local.ip())
            } else {
                local.ip()
            };
            let sent_by = host_port(SocketAddr::new(ip, local.port()));
            Ok((Link::Udp { socket, remote }, sent_by, contact))
        }
        TransportKind::Tcp => {
            let stream = connect(remote, ctx.connect_timeout)
                .await
                .map_err(|e| format!("cannot connect to {remote}: {e}"))?;
            let local = stream
                .local_addr()
                .map_err(|e| format!("no local address: {e}"))?;
            let link = Link::Tcp {
                remote,
                conn: Some(stream),
                buf: Vec::new(),
                connect_timeout: ctx.connect_timeout,
            };
            Ok((link, host_port(local), contact))
        }
        TransportKind::Tls => Err("registration over TLS is not supported".into()),
        TransportKind::Wss => Err("a trunk is never reached over WebSocket".into()),
    }
}

/// One trunk's task: waits for the trunk's previous task (if it was changed),
/// registers and keeps the registration fresh until stopped, then unregisters.
async fn drive(
    ctx: Arc<Ctx>,
    trunk: Trunk,
    stop: CancellationToken,
    status: Arc<Mutex<Status>>,
    previous: Option<JoinHandle<()>>,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let (Some(user), Some(password)) = (trunk.username.clone(), trunk.password.clone()) else {
        *status.lock() = Status::Waiting("no credentials".into());
        return;
    };
    let mut delay = ctx.timers.retry_min;
    let (mut link, sent_by, contact) = loop {
        match open(&ctx, &trunk, &user).await {
            Ok(opened) => break opened,
            Err(reason) => {
                tracing::warn!(
                    event = "trunk.register_failed",
                    tenant = %trunk.tenant,
                    trunk = %trunk.name,
                    reason = %reason,
                    retry_in = delay.as_secs(),
                    "trunk registration failed"
                );
                *status.lock() = Status::Waiting(format!("failed: {reason}"));
                if trunk.transport == TransportKind::Tls {
                    stop.cancelled().await;
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(ctx.timers.retry_max);
            }
        }
    };
    let config = TrunkRegConfig {
        aor_user: user.clone(),
        host: trunk.host.clone(),
        port: trunk.port,
        transport: trunk.transport,
        username: user,
        password,
        contact,
        via_sent_by: sent_by,
        expires: EXPIRES,
        user_agent: ctx.user_agent.clone(),
        timers: ctx.timers.clone(),
    };
    let mut reg = TrunkRegistration::new(config, Instant::now());
    let mut scratch = vec![0u8; MAX_MESSAGE];
    let mut last = RegState::Unregistered;
    let mut deadline = None;
    loop {
        while let Some(bytes) = reg.poll_transmit() {
            if let Err(e) = link.send(&bytes).await {
                tracing::debug!(tenant = %trunk.tenant, trunk = %trunk.name, error = %e, "REGISTER not sent");
            }
        }
        report(&trunk, &reg, &mut last, &status);
        if *reg.state() == RegState::Unregistered {
            return;
        }
        let next = reg.poll_timeout().map(tokio::time::Instant::from_std);
        let wake = match (next, deadline) {
            (Some(n), Some(d)) => Some(n.min(d)),
            (n, d) => n.or(d),
        };
        tokio::select! {
            () = stop.cancelled(), if deadline.is_none() => {
                reg.unregister(Instant::now());
                deadline = Some(tokio::time::Instant::now() + ctx.unregister_wait);
            }
            received = link.recv(&mut scratch) => match received {
                Ok(bytes) => {
                    reg.handle_response(&bytes, Instant::now());
                }
                Err(e) => {
                    tracing::debug!(tenant = %trunk.tenant, trunk = %trunk.name, error = %e, "carrier link error");
                    // Do not spin on a failing socket: wait for the next timer.
                    let wait = wake.unwrap_or_else(|| tokio::time::Instant::now() + ctx.timers.t1);
                    tokio::select! {
                        () = stop.cancelled(), if deadline.is_none() => {}
                        () = tokio::time::sleep_until(wait) => {}
                    }
                }
            },
            () = sleep_until(wake) => {
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    *status.lock() = Status::Reg(RegState::Unregistered);
                    return;
                }
                reg.handle_timeout(Instant::now());
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Publishes the state and logs changes.
fn report(trunk: &Trunk, reg: &TrunkRegistration, last: &mut RegState, status: &Mutex<Status>) {
    let state = reg.state();
    if state == last {
        return;
    }
    let now = Instant::now();
    match state {
        RegState::Registered { until } if !matches!(last, RegState::Registered { .. }) => {
            tracing::info!(
                event = "trunk.registered",
                tenant = %trunk.tenant,
                trunk = %trunk.name,
                expires = until.saturating_duration_since(now).as_secs(),
                "trunk registered"
            );
        }
        RegState::Registered { until } => tracing::debug!(
            tenant = %trunk.tenant,
            trunk = %trunk.name,
            expires = until.saturating_duration_since(now).as_secs(),
            "trunk registration refreshed"
        ),
        RegState::Failed { reason, retry_at } => tracing::warn!(
            event = "trunk.register_failed",
            tenant = %trunk.tenant,
            trunk = %trunk.name,
            reason = %reason,
            retry_in = retry_at.saturating_duration_since(now).as_secs(),
            "trunk registration failed"
        ),
        RegState::Unregistered => tracing::info!(
            event = "trunk.unregistered",
            tenant = %trunk.tenant,
            trunk = %trunk.name,
            "trunk unregistered"
        ),
        RegState::Registering | RegState::Unregistering => {}
    }
    *last = state.clone();
    *status.lock() = Status::Reg(state.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn contact_prefers_the_trunks_transport_and_family() {
        let adv = vec![
            (TransportKind::Udp, addr("192.0.2.1:5060")),
            (TransportKind::Udp, addr("[2001:db8::1]:5060")),
            (TransportKind::Tcp, addr("192.0.2.1:5070")),
        ];
        let pick = |t, v4| contact_addr(&adv, t, v4).map(|a| contact_uri("acct", a));
        assert_eq!(
            pick(TransportKind::Udp, true).as_deref(),
            Some("sip:acct@192.0.2.1:5060")
        );
        assert_eq!(
            pick(TransportKind::Udp, false).as_deref(),
            Some("sip:acct@[2001:db8::1]:5060")
        );
        assert_eq!(
            pick(TransportKind::Tcp, true).as_deref(),
            Some("sip:acct@192.0.2.1:5070;transport=tcp")
        );
        // No TCP listener on IPv6: the TCP one on IPv4 beats UDP on IPv6.
        assert_eq!(
            pick(TransportKind::Tcp, false).as_deref(),
            Some("sip:acct@192.0.2.1:5070;transport=tcp")
        );
        assert_eq!(contact_addr(&[], TransportKind::Udp, true), None);
    }

    fn trunk(name: &str, port: u16, password: &str) -> Trunk {
        Trunk {
            tenant: TenantId(1),
            name: name.into(),
            host: "127.0.0.1".into(),
            port,
            transport: TransportKind::Udp,
            username: Some("acct".into()),
            password: Some(password.into()),
            register: true,
        }
    }

    #[tokio::test]
    async fn sync_starts_changes_and_stops_tasks() {
        let bound = BoundAddrs {
            udp: vec![addr("127.0.0.1:5060")],
            tcp: vec![],
        };
        let limits = Limits {
            drain_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let registrar = TrunkRegistrar::new(
            vec![(TransportKind::Udp, addr("127.0.0.1:5060"))],
            &bound,
            None,
            &limits,
        );
        // Carriers that never answer: the tasks stay in "registering".
        let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = carrier.local_addr().unwrap().port();
        let mut plain = trunk("plain", port, "x");
        plain.register = false;
        plain.username = None;
        registrar.sync(vec![trunk("a", port, "pw1"), plain.clone()]);
        let names = |r: &TrunkRegistrar| -> Vec<String> {
            r.states().into_iter().map(|(_, n, _)| n).collect()
        };
        assert_eq!(names(&registrar), ["a"], "only registering trunks run");
        let first_task_id = registrar.running.lock()[&(TenantId(1), "a".to_owned())]
            .task
            .id();

        registrar.sync(vec![trunk("a", port, "pw1"), trunk("b", port, "pw")]);
        assert_eq!(names(&registrar), ["a", "b"]);
        let same = registrar.running.lock()[&(TenantId(1), "a".to_owned())]
            .task
            .id();
        assert_eq!(same, first_task_id, "an unchanged trunk keeps its task");

        registrar.sync(vec![trunk("a", port, "pw2")]);
        assert_eq!(names(&registrar), ["a"]);
        let changed = registrar.running.lock()[&(TenantId(1), "a".to_owned())]
            .task
            .id();
        assert_ne!(
            changed, first_task_id,
            "a changed password restarts the task"
        );

        registrar.shutdown().await;
        assert!(registrar.states().is_empty());
        assert!(registrar.tracker.is_empty(), "every task ended");
        registrar.sync(vec![trunk("c", port, "pw")]);
        assert!(
            registrar.states().is_empty(),
            "nothing starts after shutdown"
        );
    }

    #[test]
    fn status_text() {
        let now = Instant::now();
        let s = Status::Reg(RegState::Registered {
            until: now + Duration::from_secs(90),
        });
        assert_eq!(s.text(now), "registered, expires in 90s");
        let s = Status::Reg(RegState::Failed {
            reason: "403 Forbidden".into(),
            retry_at: now + Duration::from_secs(30),
        });
        assert_eq!(s.text(now), "failed: 403 Forbidden; retry in 30s");
        assert_eq!(Status::Waiting("starting".into()).text(now), "starting");
    }
}
