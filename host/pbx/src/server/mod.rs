//! The tokio I/O layer around the SIP core.
//!
//! # Layout
//! - [`run`] wires everything up from bound [`Listeners`]; [`serve`] binds first;
//!   [`start`] binds, spawns and hands back a [`ServerHandle`] with the bound
//!   addresses (for tests and embedding).
//! - `shard`: one task per core shard, fed by a bounded queue; it runs the shard's
//!   timers and carries out what the shard asks for.
//! - `udp`, `tcp`: receive loops; TCP also has per-connection reader and writer
//!   tasks and a connection registry keyed by [`pbx_core::ConnId`].
//! - `persist`: the write-behind task that batches registrar changes and call
//!   records into the store.
//! - `plugins`: runs each new call's dial plan and policies on worker threads
//!   and hands the decision back to the call's shard; `fraud` applies the
//!   host's own limits, destination approvals and usage-pattern alerts.
//! - `control`: the admin API's view of the running server
//!   ([`pbx_api::Control`]): live calls through a command queue per shard,
//!   the rest through the store.
//! - `guard`: transport-level abuse defenses run before parsing (bans, rate
//!   limits, scanner detection, `503` under overload) and the task that
//!   stores bans and their alerts.
//! - `reload`: polls the store's generation and swaps in a new directory,
//!   trunks and plugins when the provisioning changed, and lifts bans removed
//!   from the store.
//!
//! Shutdown: stop receiving, end every shard's calls ([`pbx_core::Shard::shutdown`])
//! and send what that produces, close connections, then flush every pending
//! database write.

mod changes;
mod control;
mod fair;
mod fraud;
mod guard;
mod io;
mod media;
mod node;
pub mod password_age;
mod persist;
mod plugin_features;
mod plugin_kv;
mod plugins;
mod reload;
mod retention;
mod shard_task;
pub mod shared_counters;
pub mod siem;
pub mod sip_tls;
mod tcp;
mod trunk_reg_task;
mod udp;
mod voicemail_menu;
mod webhook;
mod ws;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use pbx_core::{CoreConfig, Routing, Shard, Shared, TransportKind};
use store::Store;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use fraud::{FraudConfig, SharedCountersConfig};
pub use guard::{GuardOptions, loopback_nets};
use io::Io;
pub use media::MediaOptions;
pub use siem::{SiemOptions, SiemTarget};
pub use webhook::Webhook;

/// How long a new call may wait for its dial plan and policies.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(2);

/// Tunables of the I/O layer; the defaults suit a production host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Inbound messages queued per shard; beyond this, messages are dropped.
    pub shard_queue: usize,
    /// Outbound messages queued per TCP connection; beyond this, dropped.
    pub conn_queue: usize,
    /// Largest SIP message accepted over a stream, in bytes.
    pub max_message: usize,
    /// A TCP connection that has not sent one valid message by then is closed.
    pub tcp_idle_timeout: Duration,
    /// Concurrent inbound TCP connections allowed per source IP address.
    pub max_connections_per_source: usize,
    /// How long opening an outgoing TCP connection may take.
    pub connect_timeout: Duration,
    /// Registrar changes and call records queued for the database.
    pub persist_queue: usize,
    /// The write-behind task writes at least this often ...
    pub flush_interval: Duration,
    /// ... or as soon as this many items are waiting.
    pub flush_batch: usize,
    /// How often the store's provisioning generation is polled (one small
    /// read); a change made with the CLI or the API reaches the running
    /// server within this plus the reload itself, well under a second.
    pub reload_interval: Duration,
    /// How long shutdown waits for connections to send their last bytes.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            shard_queue: 4096,
            conn_queue: 256,
            max_message: 64 * 1024,
            tcp_idle_timeout: Duration::from_secs(30),
            max_connections_per_source: 256,
            connect_timeout: Duration::from_secs(10),
            persist_queue: 8192,
            flush_interval: Duration::from_millis(100),
            flush_batch: 500,
            reload_interval: Duration::from_millis(250),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything the server runs with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// UDP listeners to bind.
    pub udp: Vec<SocketAddr>,
    /// TCP listeners to bind.
    pub tcp: Vec<SocketAddr>,
    /// Host name or IP address advertised in Via/Contact; when `None`, the bound
    /// address (or, for an unspecified one, this host's outgoing address).
    pub advertise: Option<String>,
    /// The SIP core's configuration; its `advertise` list is filled in at start.
    pub core: CoreConfig,
    /// Number of core shards.
    pub shards: usize,
    pub limits: Limits,
    /// The plugin runtime's settings; `None` routes calls without plugins (the
    /// dialled extension rings).
    pub plugins: Option<pbx_plugin::RuntimeConfig>,
    /// The host's call-level fraud controls (with plugins only).
    pub fraud: FraudConfig,
    /// This node's id in a cluster (`[cluster] node`); none on a single node.
    pub node: Option<String>,
    /// Transport-level abuse defenses (bans, rate limits, scanners, overload).
    pub guard: GuardOptions,
    /// The admin API, served next to SIP; `None` serves none.
    pub api: Option<ApiOptions>,
    /// SIP over TLS listeners (need `tls_files`).
    pub tls: Vec<SocketAddr>,
    /// SIP over secure WebSocket listeners for browsers (RFC 7118; need
    /// `tls_files`).
    pub wss: Vec<SocketAddr>,
    /// The TLS listeners' certificate and key.
    pub tls_files: Option<TlsFiles>,
    /// CA certificates that outgoing TLS connections (trunks) verify against;
    /// without one, outgoing TLS trusts nobody.
    pub tls_ca: Option<PathBuf>,
    /// Media anchoring; `None` passes SDP through untouched.
    pub media: Option<MediaOptions>,
    /// Scheduled encrypted backups (`[backup]`); none by default.
    pub backup: Option<crate::backup::Schedule>,
    /// Security events to a SIEM (`[siem]`); none by default.
    pub siem: Option<SiemOptions>,
    /// SIP password ageing (`[extensions]`); off by default.
    pub sip_password_age: Option<password_age::PasswordAge>,
    /// How long call records and alerts are kept (`[retention]`); by
    /// default for ever.
    pub record_retention: store::RecordRetention,
}

/// PEM files for SIP over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// How the admin API runs inside the server.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiOptions {
    pub config: pbx_api::ApiConfig,
    /// Where the API keeps its signing keys and self-signed certificate (the
    /// data directory).
    pub data_dir: PathBuf,
}

/// The admin API as it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiInfo {
    /// Where it listens (port 0 resolved).
    pub addr: SocketAddr,
    /// SHA-256 fingerprint of its certificate when the server made a
    /// self-signed one.
    pub self_signed_fingerprint: Option<String>,
}

impl ServeOptions {
    /// Options with default limits and one shard per available core (1 to 8).
    pub fn new(udp: Vec<SocketAddr>, tcp: Vec<SocketAddr>, core: CoreConfig) -> ServeOptions {
        ServeOptions {
            udp,
            tcp,
            advertise: None,
            core,
            shards: default_shards(),
            limits: Limits::default(),
            plugins: Some(pbx_plugin::RuntimeConfig::default()),
            fraud: FraudConfig::default(),
            node: None,
            guard: GuardOptions::default(),
            api: None,
            tls: Vec::new(),
            wss: Vec::new(),
            tls_files: None,
            tls_ca: None,
            media: Some(MediaOptions::default()),
            backup: None,
            siem: None,
            sip_password_age: None,
            record_retention: store::RecordRetention::default(),
        }
    }
}

/// One shard per available core, at least 1 and at most 8.
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Bound sockets, ready to serve.
#[derive(Debug)]
pub struct Listeners {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    /// TCP listeners that speak TLS.
    pub tls: Vec<TcpListener>,
    /// TCP listeners that speak WebSocket over TLS.
    pub wss: Vec<TcpListener>,
}

/// The addresses the server actually listens on (port 0 resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundAddrs {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
}

impl Listeners {
    /// Binds every address; fails naming the first address that cannot be bound.
    pub async fn bind(udp: &[SocketAddr], tcp: &[SocketAddr]) -> anyhow::Result<Listeners> {
        let mut listeners = Listeners {
            udp: Vec::with_capacity(udp.len()),
            tcp: Vec::with_capacity(tcp.len()),
            tls: Vec::new(),
            wss: Vec::new(),
        };
        for addr in udp {
            let socket = UdpSocket::bind(addr)
                .await
                .with_context(|| format!("cannot bind SIP UDP on {addr}"))?;
            listeners.udp.push(socket);
        }
        for addr in tcp {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for SIP TCP on {addr}"))?;
            listeners.tcp.push(listener);
        }
        Ok(listeners)
    }

    /// Binds the SIP over TLS listeners too.
    pub async fn bind_tls(&mut self, tls: &[SocketAddr]) -> anyhow::Result<()> {
        for addr in tls {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for SIP TLS on {addr}"))?;
            self.tls.push(listener);
        }
        Ok(())
    }

    /// Binds the SIP over secure WebSocket listeners too.
    pub async fn bind_wss(&mut self, wss: &[SocketAddr]) -> anyhow::Result<()> {
        for addr in wss {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for SIP over WebSocket on {addr}"))?;
            self.wss.push(listener);
        }
        Ok(())
    }

    /// The bound TLS addresses.
    pub fn tls_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        self.tls.iter().map(TcpListener::local_addr).collect()
    }

    /// The bound secure WebSocket addresses.
    pub fn wss_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        self.wss.iter().map(TcpListener::local_addr).collect()
    }

    /// The bound addresses.
    pub fn addrs(&self) -> std::io::Result<BoundAddrs> {
        Ok(BoundAddrs {
            udp: self
                .udp
                .iter()
                .map(UdpSocket::local_addr)
                .collect::<Result<_, _>>()?,
            tcp: self
                .tcp
                .iter()
                .map(TcpListener::local_addr)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Where browsers reach the secure WebSocket listeners: the advertised host
/// name when one is configured (what the certificate names), else the
/// advertised address.
fn wss_urls(host: Option<&str>, advertised: &[(TransportKind, SocketAddr)]) -> Vec<String> {
    advertised
        .iter()
        .filter(|(kind, _)| *kind == TransportKind::Wss)
        .map(|(_, addr)| match host {
            Some(h) if h.parse::<std::net::IpAddr>().is_err() => {
                format!("wss://{h}:{}", addr.port())
            }
            _ => format!("wss://{addr}"),
        })
        .collect()
}

/// Binds the configured addresses and serves until `shutdown` completes.
pub async fn serve(
    opts: ServeOptions,
    store: Store,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if opts.udp.is_empty() && opts.tcp.is_empty() && opts.tls.is_empty() && opts.wss.is_empty() {
        anyhow::bail!("no SIP listener configured");
    }
    let mut listeners = Listeners::bind(&opts.udp, &opts.tcp).await?;
    listeners.bind_tls(&opts.tls).await?;
    listeners.bind_wss(&opts.wss).await?;
    run(listeners, opts, store, shutdown).await
}

/// A server running in the background.
#[derive(Debug)]
pub struct ServerHandle {
    addrs: BoundAddrs,
    tls: Vec<SocketAddr>,
    wss: Vec<SocketAddr>,
    api: Option<ApiInfo>,
    applied: Arc<AtomicI64>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// What a starting server reports once it is up.
struct Ready {
    api: Option<ApiInfo>,
    /// The store generation whose provisioning is in effect.
    applied: Arc<AtomicI64>,
}

impl ServerHandle {
    /// Where the server listens.
    pub fn addrs(&self) -> &BoundAddrs {
        &self.addrs
    }

    /// Where the server listens for SIP over TLS.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls
    }

    /// Where the server listens for SIP over secure WebSocket.
    pub fn wss_addrs(&self) -> &[SocketAddr] {
        &self.wss
    }

    /// The admin API, when one was configured.
    pub fn api(&self) -> Option<&ApiInfo> {
        self.api.as_ref()
    }

    /// The store generation ([`Store::generation`]) whose provisioning the
    /// running server has applied: a change is in effect once this reaches
    /// the generation read after making it.
    pub fn applied_generation(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Stops the server and waits until every pending write is in the store.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.context("server task failed")?
    }
}

/// Binds `opts`' addresses (port 0 allowed) and runs the server in a task.
pub async fn start(opts: ServeOptions, store: Store) -> anyhow::Result<ServerHandle> {
    let mut listeners = Listeners::bind(&opts.udp, &opts.tcp).await?;
    listeners.bind_tls(&opts.tls).await?;
    listeners.bind_wss(&opts.wss).await?;
    let addrs = listeners.addrs()?;
    let tls = listeners.tls_addrs()?;
    let wss = listeners.wss_addrs()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready, up) = oneshot::channel();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(run_reporting(listeners, opts, store, shutdown, Some(ready)));
    let Ok(Ready { api, applied }) = up.await else {
        // It stopped before it was up: report why.
        task.await.context("server task failed")??;
        anyhow::bail!("the server stopped while starting");
    };
    Ok(ServerHandle {
        addrs,
        tls,
        wss,
        api,
        applied,
        stop: Some(stop),
        task,
    })
}

/// Serves on already-bound listeners until `shutdown` completes, then shuts down
/// cleanly (see the module doc).
pub async fn run(
    listeners: Listeners,
    opts: ServeOptions,
    store: Store,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_reporting(listeners, opts, store, shutdown, None).await
}

/// [`run`], telling `ready` about the admin API and the applied generation
/// once everything is up.
async fn run_reporting(
    listeners: Listeners,
    opts: ServeOptions,
    store: Store,
    shutdown: impl Future<Output = ()>,
    ready: Option<oneshot::Sender<Ready>>,
) -> anyhow::Result<()> {
    let addrs = listeners.addrs()?;
    let tls_addrs = listeners.tls_addrs()?;
    let wss_addrs = listeners.wss_addrs()?;
    let backup_schedule = opts.backup.clone();
    let siem = opts.siem.clone();
    let sip_password_age = opts.sip_password_age;
    let mut core = opts.core.clone();
    core.advertise = advertise_list(opts.advertise.as_deref(), &addrs).await?;
    let secure_listeners = tls_addrs
        .iter()
        .map(|a| (TransportKind::Tls, *a))
        .chain(wss_addrs.iter().map(|a| (TransportKind::Wss, *a)))
        .collect();
    core.advertise
        .extend(advertise_entries(opts.advertise.as_deref(), secure_listeners).await?);
    let tls_acceptor = match (
        &opts.tls_files,
        tls_addrs.is_empty() && wss_addrs.is_empty(),
    ) {
        (Some(files), false) => Some(tokio_rustls::TlsAcceptor::from(
            sip_tls::server_config(&files.cert, &files.key)
                .context("loading the TLS certificate")?,
        )),
        (None, false) => anyhow::bail!("SIP over TLS needs a certificate and a key"),
        (_, true) => None,
    };
    let advertised = core.advertise.clone();
    let tls_client =
        sip_tls::client_config(opts.tls_ca.as_deref()).context("loading the TLS CA file")?;

    let generation = store
        .generation()
        .await
        .context("reading the store's generation")?;
    let directory = store.directory().await.context("loading the directory")?;
    let (clock, now_ms) = (Instant::now(), unix_ms(SystemTime::now()));
    let registrations = store
        .load_registrations(now_ms)
        .await
        .context("loading registrations")?;
    tracing::info!(
        tenants = directory.tenants.len(),
        extensions = directory.extensions.len(),
        registrations = registrations.len(),
        "directory loaded"
    );
    let shard_count = opts.shards.max(1);
    let plugin_host = match opts.plugins.clone() {
        Some(config) => {
            let fraud = Arc::new(
                fraud::Fraud::new(&store, &opts.fraud).context("starting fraud controls")?,
            );
            let host = plugins::PluginHost::new(&store, config, fraud)
                .await
                .context("starting the plugin runtime")?;
            host.reload(&store).await.context("loading plugins")?;
            core.routing = Routing::External {
                timeout: ROUTE_TIMEOUT,
            };
            Some(host)
        }
        None => None,
    };
    core.ephemeral_key = Some(digest_auth::EphemeralKey::derive(&store.nonce_key()));
    if opts.node.is_some() {
        // Any node checks the nonces another issued (the phone's next
        // request may reach another node through the front).
        core.nonce_key = Some(store.nonce_key());
        // Calls in progress are recorded, so that those of a node that dies
        // get records too (`node`).
        core.track_answered = true;
    }
    let shared = Shared::new(core, directory, registrations, (clock, now_ms), shard_count);
    if let Some(host) = &plugin_host {
        shared.set_pickup_groups(host.clone());
    }
    for (tenant, mailbox, counts) in store
        .all_mailbox_counts()
        .await
        .context("counting voicemail")?
    {
        shared.set_mailbox_counts(tenant, &mailbox, counts);
    }
    shared.replace_trunks(
        reload::load_trunks(&store)
            .await
            .context("loading trunks")?,
    );
    let trunk_registrar = trunk_reg_task::TrunkRegistrar::new(
        advertise_list(opts.advertise.as_deref(), &addrs).await?,
        &addrs,
        opts.core.user_agent.clone(),
        &opts.limits,
    );
    trunk_registrar.sync(store.all_trunks().await.context("loading trunks")?);

    let stop_receiving = CancellationToken::new();
    let close_connections = CancellationToken::new();
    let limits = opts.limits.clone();

    let mut command_txs = Vec::with_capacity(shard_count);
    let mut command_rxs = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        let (tx, rx) = mpsc::channel(control::COMMAND_QUEUE);
        command_txs.push(tx);
        command_rxs.push(rx);
    }
    // What each shard hears from the media and of mailbox changes.
    let (media_txs, media_rxs): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| mpsc::unbounded_channel()).unzip();
    let mailboxes = media::Mailboxes::new(store.clone(), media_txs);
    let api = match &opts.api {
        Some(api) => {
            let control = Arc::new(control::ServerControl::new(
                store.clone(),
                command_txs,
                plugin_host.clone(),
                mailboxes.clone(),
            ));
            let mut config = api.config.clone();
            config.sip_wss = wss_urls(opts.advertise.as_deref(), &advertised);
            let handle = pbx_api::serve(
                config,
                &api.data_dir,
                store.clone(),
                control,
                stop_receiving.clone().cancelled_owned(),
            )
            .await
            .context("starting the admin API")?;
            if let Some(fp) = &handle.self_signed_fingerprint {
                println!("admin API certificate (self-signed) SHA-256 fingerprint: {fp}");
            }
            Some(handle)
        }
        None => {
            drop(command_txs);
            None
        }
    };

    let (persist_tx, persist_rx) = mpsc::channel(limits.persist_queue.max(1));
    let persist_task = tokio::spawn(persist::run(
        store.clone(),
        persist_rx,
        limits.clone(),
        opts.node.clone(),
    ));

    let mut shard_txs = Vec::with_capacity(shard_count);
    let mut shard_rxs = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        let (tx, rx) = mpsc::channel(limits.shard_queue.max(1));
        shard_txs.push(tx);
        shard_rxs.push(rx);
    }
    let udp: Vec<Arc<UdpSocket>> = listeners.udp.into_iter().map(Arc::new).collect();
    let (guard, guard_task) = guard::Guard::new(&opts.guard, (clock, now_ms));
    let guard = Arc::new(guard);
    let restored = guard.restore(&store).await.context("loading bans")?;
    if restored > 0 {
        tracing::info!(bans = restored, "bans restored");
    }
    let guard_writer = tokio::spawn(guard::run(
        guard.clone(),
        guard_task,
        store.clone(),
        close_connections.clone(),
    ));
    let io = Arc::new(Io::new(
        shared.clone(),
        guard.clone(),
        shard_txs,
        udp.iter().cloned().zip(addrs.udp.iter().copied()).collect(),
        limits.clone(),
        stop_receiving.clone(),
        close_connections.clone(),
    ));

    let mut decision_txs = Vec::with_capacity(shard_count);
    let mut decision_rxs = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        let (tx, rx) = mpsc::channel(limits.shard_queue.max(1));
        decision_txs.push(tx);
        decision_rxs.push(rx);
    }
    let workers = plugin_host.as_ref().map(|host| {
        Arc::new(plugins::Workers::start(
            host.clone(),
            plugins::worker_count(),
            decision_txs,
        ))
    });

    let _ = io.tls_client.set(tls_client);
    let tenant_media = opts
        .media
        .as_ref()
        .map(|m| media::TenantMedia::new(m.sessions));
    if let Some(tenant_media) = &tenant_media {
        tenant_media.reload(&store).await?;
    }
    let media_events = match (&opts.media, &tenant_media) {
        (Some(m), Some(tenant_media)) => {
            let config = media_config(m, &opts, &addrs, &tls_addrs, &advertised);
            let (anchor, events) =
                media::RelayAnchor::new(config, tenant_media.clone(), mailboxes.clone())
                    .context("starting the media relay")?;
            let task = tokio::spawn(anchor.route_events(events));
            shared.set_media_anchor(Arc::new(anchor));
            Some(task)
        }
        _ => None,
    };
    let mut media_rxs = media_rxs.into_iter();

    let mut shard_tasks = Vec::with_capacity(shard_count);
    let shard_inputs = shard_rxs.into_iter().zip(decision_rxs).zip(command_rxs);
    for (index, ((rx, decisions), commands)) in shard_inputs.enumerate() {
        let media_reports = media_rxs
            .next()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        let shard = Shard::new(index, shared.clone());
        let routing = plugin_host
            .as_ref()
            .zip(workers.as_ref())
            .map(|(host, workers)| shard_task::Routing {
                host: host.clone(),
                workers: workers.clone(),
                decisions,
            });
        shard_tasks.push(tokio::spawn(shard_task::run(
            shard,
            rx,
            commands,
            media_reports,
            routing,
            io.clone(),
            persist_tx.clone(),
            stop_receiving.clone(),
        )));
    }
    drop(persist_tx);

    let node = match &opts.node {
        Some(id) => {
            let sip = addrs
                .udp
                .iter()
                .map(|a| format!("udp:{a}"))
                .chain(addrs.tcp.iter().map(|a| format!("tcp:{a}")))
                .chain(tls_addrs.iter().map(|a| format!("tls:{a}")))
                .chain(wss_addrs.iter().map(|a| format!("wss:{a}")))
                .collect::<Vec<_>>()
                .join(",");
            let me = node::Identity {
                id: id.clone(),
                sip_addresses: sip,
                api_address: api.as_ref().map(|a| a.local_addr.to_string()),
                started_at_ms: now_ms,
            };
            node::start(&store, &shared, &me)
                .await
                .context("joining the cluster")?;
            Some(me)
        }
        None => None,
    };

    let receivers = TaskTracker::new();
    if let Some(me) = node {
        receivers.spawn(node::run(
            store.clone(),
            shared.clone(),
            me,
            stop_receiving.clone(),
        ));
    }
    for (socket, addr) in udp.iter().cloned().zip(addrs.udp.iter().copied()) {
        receivers.spawn(udp::receive(io.clone(), socket, addr));
    }
    for listener in listeners.tcp {
        receivers.spawn(tcp::accept(io.clone(), listener));
    }
    if let Some(acceptor) = tls_acceptor {
        for listener in listeners.tls {
            receivers.spawn(sip_tls::accept(io.clone(), listener, acceptor.clone()));
        }
        for listener in listeners.wss {
            receivers.spawn(ws::accept(io.clone(), listener, acceptor.clone()));
        }
    }
    let applied = Arc::new(AtomicI64::new(generation));
    let wake_reload = Arc::new(tokio::sync::Notify::new());
    if store.backend() == store::Backend::Postgres {
        receivers.spawn(changes::run(
            store.clone(),
            shared.clone(),
            guard.clone(),
            opts.node.clone().unwrap_or_default(),
            wake_reload.clone(),
            stop_receiving.clone(),
        ));
    }
    receivers.spawn(reload::run(
        store.clone(),
        shared.clone(),
        plugin_host.clone(),
        guard.clone(),
        applied.clone(),
        limits.reload_interval,
        wake_reload,
        stop_receiving.clone(),
        trunk_registrar.clone(),
        tenant_media.clone(),
    ));
    receivers.spawn(retention::run(
        store.clone(),
        mailboxes.clone(),
        opts.record_retention,
        stop_receiving.clone(),
    ));
    if let Some(schedule) = backup_schedule {
        receivers.spawn(crate::backup::run_schedule(
            store.clone(),
            schedule,
            stop_receiving.clone(),
        ));
    }
    if let Some(policy) = sip_password_age {
        receivers.spawn(password_age::run(
            store.clone(),
            policy,
            stop_receiving.clone(),
        ));
    }
    if let Some(siem) = siem {
        receivers.spawn(siem::run(store.clone(), siem, stop_receiving.clone()));
    }
    receivers.close();
    for addr in &addrs.udp {
        tracing::info!(%addr, "listening for SIP over UDP");
    }
    for addr in &addrs.tcp {
        tracing::info!(%addr, "listening for SIP over TCP");
    }
    for addr in &tls_addrs {
        tracing::info!(%addr, "listening for SIP over TLS");
    }
    for addr in &wss_addrs {
        tracing::info!(%addr, "listening for SIP over secure WebSocket");
    }
    if let Some(ready) = ready {
        let _ = ready.send(Ready {
            api: api.as_ref().map(|a| ApiInfo {
                addr: a.local_addr,
                self_signed_fingerprint: a.self_signed_fingerprint.clone(),
            }),
            applied,
        });
    }

    shutdown.await;
    tracing::info!("shutting down");
    stop_receiving.cancel();
    receivers.wait().await;
    trunk_registrar.shutdown().await;
    if let Some(api) = api
        && tokio::time::timeout(limits.drain_timeout, api.wait())
            .await
            .is_err()
    {
        tracing::warn!("the admin API did not stop in time");
    }
    for task in shard_tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a shard task failed");
        }
    }
    close_connections.cancel();
    if let Some(task) = media_events {
        task.abort();
    }
    if let Err(e) = guard_writer.await {
        tracing::error!(error = %e, "the ban writer failed");
    }
    io.drop_connections();
    io.connections().close();
    if tokio::time::timeout(limits.drain_timeout, io.connections().wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    let written = persist_task.await.context("write-behind task failed")?;
    tracing::info!(
        dropped_inbound = io.dropped_inbound(),
        persisted = written,
        "stopped"
    );
    Ok(())
}

/// Resolves once on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The `(transport, address)` pairs the core advertises: one per listener, with
/// the advertised host (or a concrete local address) in place of its IP.
async fn advertise_list(
    advertise: Option<&str>,
    addrs: &BoundAddrs,
) -> anyhow::Result<Vec<(TransportKind, SocketAddr)>> {
    let resolved: Vec<IpAddr> = match advertise {
        None => Vec::new(),
        Some(host) => match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((host, 0))
                .await
                .with_context(|| format!("cannot resolve the advertised host {host}"))?
                .map(|a| a.ip())
                .collect(),
        },
    };
    if advertise.is_some() && resolved.is_empty() {
        anyhow::bail!("the advertised host has no address");
    }
    let listeners = addrs
        .udp
        .iter()
        .map(|a| (TransportKind::Udp, *a))
        .chain(addrs.tcp.iter().map(|a| (TransportKind::Tcp, *a)))
        .collect();
    advertise_entries(advertise, listeners).await
}

/// The relay's settings: the configured ones, with the bind address defaulting
/// to the first SIP listener's and the advertised address to the one SIP
/// advertises when the relay binds to the unspecified address.
fn media_config(
    m: &MediaOptions,
    opts: &ServeOptions,
    addrs: &BoundAddrs,
    tls: &[SocketAddr],
    advertised: &[(TransportKind, SocketAddr)],
) -> pbx_media::MediaConfig {
    let first = addrs.udp.iter().chain(&addrs.tcp).chain(tls).next();
    let bind_ip = m
        .bind_ip
        .or_else(|| first.map(|a| a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let advertise_ip = m.advertise_ip.or_else(|| {
        (bind_ip.is_unspecified() || opts.advertise.is_some())
            .then(|| advertised.first().map(|(_, a)| a.ip()))
            .flatten()
    });
    pbx_media::MediaConfig {
        bind_ip,
        advertise_ip,
        port_min: m.port_min,
        port_max: m.port_max,
        idle_timeout: m.idle_timeout,
    }
}

/// Advertised `(transport, address)` pairs for these listeners.
async fn advertise_entries(
    advertise: Option<&str>,
    listeners: Vec<(TransportKind, SocketAddr)>,
) -> anyhow::Result<Vec<(TransportKind, SocketAddr)>> {
    let resolved: Vec<IpAddr> = match advertise {
        None => Vec::new(),
        Some(host) => match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((host, 0))
                .await
                .with_context(|| format!("cannot resolve the advertised host {host}"))?
                .map(|a| a.ip())
                .collect(),
        },
    };
    let mut out = Vec::new();
    for (kind, bound) in listeners {
        let ip = match resolved
            .iter()
            .find(|ip| ip.is_ipv4() == bound.is_ipv4())
            .or(resolved.first())
        {
            Some(ip) => *ip,
            None if bound.ip().is_unspecified() => outgoing_ip(bound.is_ipv4()),
            None => bound.ip(),
        };
        let entry = (kind, SocketAddr::new(ip, bound.port()));
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// This host's address on the default route (no packet is sent), or loopback.
fn outgoing_ip(v4: bool) -> IpAddr {
    let (bind, probe): (SocketAddr, SocketAddr) = if v4 {
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        )
    } else {
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        )
    };
    let found = std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(probe).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified());
    found.unwrap_or(if v4 {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advertise_uses_the_configured_ip_and_bound_ports() {
        let addrs = BoundAddrs {
            udp: vec!["0.0.0.0:5060".parse().unwrap()],
            tcp: vec!["127.0.0.1:5061".parse().unwrap()],
        };
        let list = advertise_list(Some("192.0.2.10"), &addrs).await.unwrap();
        assert_eq!(
            list,
            vec![
                (TransportKind::Udp, "192.0.2.10:5060".parse().unwrap()),
                (TransportKind::Tcp, "192.0.2.10:5061".parse().unwrap()),
            ]
        );
    }

    #[tokio::test]
    async fn advertise_fills_in_unspecified_addresses() {
        let addrs = BoundAddrs {
            udp: vec![
                "0.0.0.0:5060".parse().unwrap(),
                "[::1]:5060".parse().unwrap(),
            ],
            tcp: vec![],
        };
        let list = advertise_list(None, &addrs).await.unwrap();
        assert_eq!(list.len(), 2);
        assert!(!list[0].1.ip().is_unspecified());
        assert!(list[0].1.is_ipv4());
        assert_eq!(list[1].1, "[::1]:5060".parse().unwrap());
    }

    #[test]
    fn shard_count_is_bounded() {
        let n = default_shards();
        assert!((1..=8).contains(&n));
    }

    #[test]
    fn unix_ms_of_epoch_and_later() {
        assert_eq!(unix_ms(UNIX_EPOCH), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1234)), 1234);
    }

    #[tokio::test]
    async fn listeners_report_their_real_ports() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let l = Listeners::bind(&[any], &[any]).await.unwrap();
        let addrs = l.addrs().unwrap();
        assert_ne!(addrs.udp[0].port(), 0);
        assert_ne!(addrs.tcp[0].port(), 0);
    }
}
