//! Two `pbx serve` nodes on one PostgreSQL database, counting limits in one
//! Redis, behind the Kamailio front of `examples/cluster/` — the shipped
//! example files, with only their addresses changed to free ones on
//! loopback. Phones talk to the front only.
//!
//! Needs kamailio, redis-server and PostgreSQL (Debian: kamailio,
//! redis-server, postgresql); skipped with a notice without them, unless
//! `PBX_REQUIRE_TOOLS=1`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pbx_e2e::tools::{Redis, installed};
use pbx_e2e::{Phone, SipMsg, Transport};
use store::{Store, TenantId};

const ACME: &str = "acme.example";
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cluster");

fn password(ext: &str) -> String {
    format!("Cluster-{ext}-pw9!")
}

/// A child process killed (SIGKILL) when dropped.
struct Process {
    child: std::sync::Mutex<Child>,
    name: &'static str,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Process {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(&log).expect("log file");
        // A process group of its own: Kamailio forks its workers (and a node
        // its plugin compilers), and they must all go with it.
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process {
            child: std::sync::Mutex::new(child),
            name,
            log,
        }
    }

    /// Kills the process and everything it started at once (its process
    /// group), as a crash or a power cut would. Killing only the first
    /// process would leave Kamailio's workers probing ports that later
    /// tests use.
    fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = child.kill();
        let _ = child.wait();
    }

    fn log(&self) -> String {
        format!(
            "--- {} ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free UDP port on 127.0.0.1.
fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
}

/// A free TCP port on 127.0.0.1.
fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
}

/// Copies a directory of files.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// Sends OPTIONS from `from` to `to`; the status of the answer, if one
/// comes within `wait`.
async fn options(
    from: &tokio::net::UdpSocket,
    to: SocketAddr,
    ua: &str,
    wait: Duration,
) -> Option<u16> {
    let local = from.local_addr().expect("local");
    let branch = pbx_e2e::token();
    let text = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag={branch}\r\nTo: <sip:{to}>\r\n\
         Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
    );
    from.send_to(text.as_bytes(), to).await.expect("send");
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (n, _) = tokio::time::timeout_at(deadline, from.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let msg = SipMsg::parse(&String::from_utf8_lossy(&buf[..n]))?;
        if msg.call_id() == branch {
            return msg.status();
        }
    }
}

/// Polls until `node` answers OPTIONS.
async fn wait_answering(node: SocketAddr, what: &Process) {
    let probe = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let deadline = Instant::now() + Duration::from_secs(60);
    while options(&probe, node, "probe", Duration::from_millis(200))
        .await
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "{node} never answered\n{}",
            what.log()
        );
    }
}

/// The example's file with its addresses replaced.
fn example(name: &str, replace: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(Path::new(EXAMPLES).join(name)).expect("example file");
    for (from, to) in replace {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    text
}

struct Cluster {
    /// The nodes' data directories, configurations and logs.
    _root: tempfile::TempDir,
    /// The database's URL.
    url: String,
    store: Store,
    tenant: TenantId,
    /// Each node's SIP address and process.
    nodes: Vec<(SocketAddr, Process)>,
    /// Each node's admin API address.
    apis: Vec<SocketAddr>,
    front: SocketAddr,
    kamailio: Process,
    _redis: Redis,
}

impl Cluster {
    /// PostgreSQL, Redis, nodes a and b from the example files, and the
    /// front; acme with extensions 1000-1006 provisioned, with `limits` when
    /// given (the shipped defaults otherwise).
    async fn start(limits: Option<store::TenantLimits>) -> Option<Cluster> {
        if !installed("kamailio", "kamailio", "PBX_REQUIRE_TOOLS") {
            return None;
        }
        if !store::testdb::present_or_skip(
            store::testdb::server().await.is_some(),
            "PostgreSQL is not installed (Debian package `postgresql`)",
        ) {
            return None;
        }
        let url = store::testdb::fresh_database().await;
        let root = tempfile::tempdir().expect("dir");
        let dir = |n: &str| root.path().join(n);
        let store = Store::connect(&url, &dir("node-a")).await.expect("store");
        let tenant = store.add_tenant("acme", ACME).await.expect("tenant").id;
        for ext in 1000..1007 {
            let ext = ext.to_string();
            store
                .add_extension(tenant, &ext, &password(&ext))
                .await
                .expect("extension");
        }
        if let Some(limits) = limits {
            store
                .set_tenant_limits(tenant, &limits)
                .await
                .expect("limits");
        }
        // Every node holds the same secret key (trunk passwords, nonces),
        // and so does the operator's CLI.
        for other in ["node-b", "admin"] {
            std::fs::create_dir(dir(other)).expect("dir");
            std::fs::copy(
                dir("node-a").join("secret.key"),
                dir(other).join("secret.key"),
            )
            .expect("copy the key");
        }

        let redis = Redis::start()?;
        let redis_url = redis.url();

        let mut nodes = Vec::new();
        let mut apis = Vec::new();
        for (name, example_addr, example_api) in [
            ("node-a", "127.0.0.1:5070", "127.0.0.1:8071"),
            ("node-b", "127.0.0.1:5080", "127.0.0.1:8081"),
        ] {
            let addr = free_udp();
            let api = free_tcp();
            if name == "node-b" {
                // Every node signs API tokens with the same keys, which node
                // a made when it started.
                copy_dir(&dir("node-a").join("api-keys"), &dir(name).join("api-keys"));
            }
            let config = example(
                &format!("{name}.toml"),
                &[
                    (example_addr, &addr.to_string()),
                    (example_api, &api.to_string()),
                    ("redis://127.0.0.1:6379", &redis_url),
                    ("postgres://pbx:change-me@127.0.0.1/pbx", &url),
                ],
            );
            let file = root.path().join(format!("{name}.toml"));
            std::fs::write(&file, config).expect("config");
            let process = Process::spawn(
                name,
                Command::new(env!("CARGO_BIN_EXE_pbx"))
                    .arg("serve")
                    .arg("--config")
                    .arg(&file)
                    .arg("--data-dir")
                    .arg(dir(name))
                    .env_remove("PBX_DATABASE_URL")
                    .env_remove("PBX_DATA_DIR")
                    .env(
                        "RUST_LOG",
                        std::env::var("PBX_CLUSTER_LOG").unwrap_or_else(|_| "info".into()),
                    ),
                root.path().join(format!("{name}.log")),
            );
            wait_answering(addr, &process).await;
            nodes.push((addr, process));
            apis.push(api);
        }

        let front = free_udp();
        let list = root.path().join("dispatcher.list");
        std::fs::write(
            &list,
            example(
                "dispatcher.list",
                &[
                    ("127.0.0.1:5070", &nodes[0].0.to_string()),
                    ("127.0.0.1:5080", &nodes[1].0.to_string()),
                ],
            ),
        )
        .expect("list");
        let cfg = root.path().join("kamailio.cfg");
        std::fs::write(
            &cfg,
            example(
                "kamailio.cfg",
                &[
                    ("udp:127.0.0.1:5060", &format!("udp:{front}")),
                    ("tcp:127.0.0.1:5060", &format!("tcp:{front}")),
                ],
            ),
        )
        .expect("cfg");
        std::fs::create_dir(root.path().join("run")).expect("dir");
        let kamailio = Process::spawn(
            "kamailio",
            Command::new("kamailio")
                .arg("-f")
                .arg(&cfg)
                .args(["-DD", "-E", "-Y"])
                .arg(root.path().join("run"))
                .arg("-A")
                .arg(format!("NODES=\"{}\"", list.display())),
            root.path().join("kamailio.log"),
        );
        wait_answering(front, &kamailio).await;
        Some(Cluster {
            _root: root,
            url,
            store,
            tenant,
            nodes,
            apis,
            front,
            kamailio,
            _redis: redis,
        })
    }

    fn logs(&self) -> String {
        let mut all: String = self.nodes.iter().map(|(_, p)| p.log()).collect();
        all.push_str(&self.kamailio.log());
        all
    }

    /// A phone of `ext` registered through the front, and the node holding
    /// its binding.
    async fn phone(&self, ext: &str) -> (Phone, String) {
        self.phone_over(Transport::Udp, ext).await
    }

    /// [`Cluster::phone`] over `transport`.
    async fn phone_over(&self, transport: Transport, ext: &str) -> (Phone, String) {
        let mut phone = Phone::new(
            transport,
            "127.0.0.1",
            self.front,
            ext,
            &password(ext),
            ACME,
        )
        .await
        .expect("phone");
        let r = phone.register(300).await.expect("register");
        assert_eq!(r.status(), Some(200), "{ext}: {}\n{}", r.raw, self.logs());
        assert!(
            r.header("Path").is_some(),
            "the front's Path is echoed: {}",
            r.raw
        );
        let node = self.node_of(ext).await;
        (phone, node)
    }

    /// Runs the `pbx` CLI against the cluster's database, from a data
    /// directory of its own (an operator's machine); its output.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_pbx"))
            .arg("--database")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(self._root.path().join("admin"))
            .args(args)
            .output()
            .expect("run pbx");
        assert!(
            out.status.success(),
            "pbx {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `GET /metrics` of node `name`'s API: the body.
    async fn metrics(&self, name: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let api = match name {
            "node-a" => self.apis[0],
            _ => self.apis[1],
        };
        let mut conn = tokio::net::TcpStream::connect(api).await.expect("API");
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        conn.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    /// The address of node `name` (`node-a` or `node-b`).
    fn addr_of(&self, name: &str) -> SocketAddr {
        match name {
            "node-a" => self.nodes[0].0,
            "node-b" => self.nodes[1].0,
            other => panic!("no node {other}"),
        }
    }

    /// One registered phone held by each node: (extension, phone) for node
    /// a, then for node b. The front keeps each phone on one node (hash of
    /// its From URI).
    ///
    /// A node the front's dispatcher has just marked inactive (one missed
    /// probe) gets no phone until its next probe answers, two seconds on: the
    /// phones register again, round after round, until both nodes hold one
    /// (at most 15 s).
    async fn phone_on_each_node(&self) -> ((String, Phone), (String, Phone)) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut on = std::collections::BTreeMap::new();
        loop {
            let mut round = Vec::new();
            for ext in 1000..1006 {
                let ext = ext.to_string();
                let (phone, node) = self.phone(&ext).await;
                round.push((node, ext, phone));
            }
            let held_by = |n: &str| round.iter().any(|(node, ..)| node == n);
            if (held_by("node-a") && held_by("node-b")) || Instant::now() >= deadline {
                for (node, ext, phone) in round {
                    on.entry(node).or_insert((ext, phone));
                }
                break;
            }
            // Their bindings go, so the next round's are the only ones.
            for (_, ext, mut phone) in round {
                let r = phone.register(0).await.expect("unregister");
                assert_eq!(r.status(), Some(200), "{ext}: {}", r.raw);
            }
        }
        let nodes: Vec<&String> = on.keys().collect();
        assert_eq!(
            nodes,
            ["node-a", "node-b"],
            "phones landed on both nodes\n{}",
            self.logs()
        );
        let b = on.remove("node-b").expect("a phone on node b");
        let a = on.remove("node-a").expect("a phone on node a");
        (a, b)
    }

    /// Waits (up to `within`) until the database says `ext`'s binding is
    /// held by `node`.
    async fn wait_binding_on(&self, ext: &str, node: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let all = self.store.load_registrations(0).await.expect("bindings");
            let holders: Vec<&str> = all
                .iter()
                .filter(|r| r.tenant == self.tenant && r.extension == ext)
                .map(|r| r.node.as_str())
                .collect();
            if holders == [node] {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ext}'s binding is held by {holders:?}, not {node}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node that holds `ext`'s binding, as the database says.
    async fn node_of(&self, ext: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let all = self.store.load_registrations(0).await.expect("bindings");
            if let Some(r) = all
                .iter()
                .find(|r| r.tenant == self.tenant && r.extension == ext)
            {
                return r.node.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{ext}'s binding was never written"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `caller` calls `callee`'s extension and the callee answers: both ends
/// see the call up (the ACK crosses the front to the callee).
async fn answered_call(
    caller: &mut Phone,
    callee: &mut Phone,
    ext: &str,
    logs: impl Fn() -> String,
) -> pbx_e2e::OutCall {
    let mut call = caller.call(ext).await.expect("INVITE");
    let invite = callee
        .expect_request("INVITE")
        .await
        .unwrap_or_else(|e| panic!("{ext} never rang: {e}\n{}", logs()));
    assert!(
        invite.header("Record-Route").is_some(),
        "the front stays on the path: {}",
        invite.raw
    );
    let tag = pbx_e2e::token();
    callee
        .respond(&invite, 200, "OK", Some(&tag), true)
        .await
        .expect("200");
    let ok = caller.final_response(&call).await.expect("final");
    assert_eq!(ok.status(), Some(200), "{}\n{}", ok.raw, logs());
    call.answered(&ok);
    caller.ack_2xx(&call).await.expect("ACK");
    callee
        .expect_request("ACK")
        .await
        .unwrap_or_else(|e| panic!("no ACK: {e}\n{}", logs()));
    call
}

/// [`answered_call`], then the caller hangs up and the callee sees the BYE.
async fn call_through_the_front(
    caller: &mut Phone,
    callee: &mut Phone,
    ext: &str,
    logs: impl Fn() -> String,
) {
    let call = answered_call(caller, callee, ext, &logs).await;
    caller.in_dialog(&call, "BYE", None).await.expect("BYE");
    let bye = callee
        .expect_request("BYE")
        .await
        .unwrap_or_else(|e| panic!("no BYE: {e}\n{}", logs()));
    callee
        .respond(&bye, 200, "OK", None, false)
        .await
        .expect("200");
    let done = caller.expect_final("BYE").await.expect("BYE answered");
    assert_eq!(done.status(), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_the_front_act_as_one() {
    let Some(cluster) = Cluster::start(None).await else {
        return;
    };
    let ((ext_a, mut phone_a), (ext_b, mut phone_b)) = cluster.phone_on_each_node().await;
    let logs = || cluster.logs();

    // Each node's /metrics shows the whole cluster, from the heartbeats.
    let metrics = cluster.metrics("node-b").await;
    for line in [
        "pbx_node_up{node=\"node-a\"} 1",
        "pbx_node_up{node=\"node-b\"} 1",
        "pbx_cluster_nodes_up 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Calls both ways between phones held by different nodes.
    call_through_the_front(&mut phone_a, &mut phone_b, &ext_b, logs).await;
    call_through_the_front(&mut phone_b, &mut phone_a, &ext_a, logs).await;

    // A phone on TCP is reached over its own connection to the front, from
    // whichever node: a phone held by the other node calls it.
    let (mut tcp_phone, tcp_node) = cluster.phone_over(Transport::Tcp, "1006").await;
    let caller = if tcp_node == "node-a" {
        &mut phone_b
    } else {
        &mut phone_a
    };
    call_through_the_front(caller, &mut tcp_phone, "1006", logs).await;

    // A scanner probing node a directly is banned there on sight; node b,
    // which it never touched, stops answering it within a second of the
    // ban reaching the database.
    let (a, b) = (cluster.addr_of("node-a"), cluster.addr_of("node-b"));
    let scanner = tokio::net::UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let wait = Duration::from_millis(300);
    assert_eq!(
        options(&scanner, b, "probe", wait).await,
        Some(200),
        "node b answers 127.0.0.2 before the ban\n{}",
        logs()
    );
    options(&scanner, a, "friendly-scanner", wait).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let banned_at = loop {
        let bans = cluster.store.list_bans(unix_ms()).await.expect("bans");
        if bans.iter().any(|b| b.ip.to_string() == "127.0.0.2") {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "node a never stored the ban\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // One probe every 100 ms (far below what node b would judge a scanner
    // itself), each waiting up to 100 ms: node b has stopped answering when
    // one goes unanswered.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    while {
        pace.tick().await;
        options(&scanner, b, "probe", Duration::from_millis(100))
            .await
            .is_some()
    } {
        assert!(
            banned_at.elapsed() < Duration::from_secs(1),
            "node b still answers the banned source {:?} after the ban\n{}",
            banned_at.elapsed(),
            logs()
        );
    }
    assert!(
        banned_at.elapsed() < Duration::from_millis(1_200),
        "node b took {:?} to drop the banned source",
        banned_at.elapsed()
    );
    // A dial plan uploaded once, from the operator's CLI: each node takes
    // it from the database and compiles it into its own cache.
    let cached = |node: &str| compiled_in(&cluster._root.path().join(node).join("plugin-cache"));
    let before = [cached("node-a"), cached("node-b")];
    let wasm = cluster._root.path().join("plan.wasm");
    std::fs::write(&wasm, pbx_plugin::shipped::examples::CLASSIC_DIALPLAN).expect("write");
    cluster.cli(&["plugin", "install", "acme", wasm.to_str().expect("path")]);
    let compiled = wait_for(Duration::from_secs(20), || async {
        let now = [cached("node-a"), cached("node-b")];
        (now[0] > before[0] && now[1] > before[1]).then_some(now)
    })
    .await;
    assert!(
        compiled.is_some(),
        "both nodes compile the new plan ({before:?} artefacts before)\n{}",
        logs()
    );
    let versions = cluster.cli(&["plugin", "list", "acme"]);
    assert_eq!(
        versions.lines().count(),
        1,
        "one version for the cluster: {versions}"
    );

    // A scanner behind the front is banned by its own address, never the
    // front's: the phones the front relays go on.
    let behind = tokio::net::UdpSocket::bind("127.0.0.3:0")
        .await
        .expect("bind 127.0.0.3");
    options(&behind, cluster.front, "friendly-scanner", wait).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bans = cluster.store.list_bans(unix_ms()).await.expect("bans");
        let banned: Vec<String> = bans.iter().map(|b| b.ip.to_string()).collect();
        assert!(
            !banned.contains(&"127.0.0.1".to_string()),
            "the front was banned: {banned:?}"
        );
        if banned.contains(&"127.0.0.3".to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scanner behind the front was never banned: {banned:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call_through_the_front(&mut phone_a, &mut phone_b, &ext_b, logs).await;
}

/// A tenant limited to 10 calls at once places 30 at once from phones held
/// by both nodes: exactly 10 ring, the other 20 are refused. The limit is
/// counted in the shared Redis; this fixture raises the tenant's calls per
/// second and calls per extension (defaults 10 and 4) so that only the
/// concurrent-call limit is what is tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_limit_holds_across_the_nodes() {
    let limits = store::TenantLimits {
        max_concurrent: Some(10),
        max_calls_per_second: Some(1_000),
        max_concurrent_extension: Some(30),
        ..store::TenantLimits::default()
    };
    let Some(cluster) = Cluster::start(Some(limits)).await else {
        return;
    };
    let (callee_ext, mut callee) = {
        let ext = "1005";
        (ext, cluster.phone(ext).await.0)
    };
    // Callers: 1000-1004, each on the node the front chooses by its From
    // URI (the same for its REGISTER and its INVITEs).
    let mut node_of = std::collections::BTreeMap::new();
    for ext in 1000..1005 {
        let ext = ext.to_string();
        let (_, node) = cluster.phone(&ext).await;
        node_of.insert(ext, node);
    }
    let mut callers_on = std::collections::BTreeMap::new();
    let mut callers = Vec::new();
    for i in 0..30 {
        let ext = (1000 + i % 5).to_string();
        *callers_on.entry(node_of[&ext].clone()).or_insert(0) += 1;
        let phone = Phone::new(
            Transport::Udp,
            "127.0.0.1",
            cluster.front,
            &ext,
            &password(&ext),
            ACME,
        )
        .await
        .expect("phone");
        callers.push(phone);
    }
    assert_eq!(callers_on.len(), 2, "callers on both nodes: {callers_on:?}");

    // The callee rings (180) for every INVITE it gets, and answers none.
    let (rung_tx, mut rung_rx) = tokio::sync::mpsc::unbounded_channel();
    let ringing = tokio::spawn(async move {
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let Ok(invite) = callee.recv_within(Duration::from_secs(30)).await else {
                return;
            };
            if invite.method() != Some("INVITE") {
                continue;
            }
            let _ = callee
                .respond(&invite, 180, "Ringing", Some(&pbx_e2e::token()), false)
                .await;
            if seen.insert(invite.call_id().to_string()) {
                let _ = rung_tx.send(invite.call_id().to_string());
            }
        }
    });

    // All 30 INVITEs are out before any answer is read.
    let mut calls = Vec::new();
    for phone in &mut callers {
        calls.push(phone.call(callee_ext).await.expect("INVITE"));
    }
    let mut outcomes = Vec::new();
    let mut waiting = tokio::task::JoinSet::new();
    for (mut phone, call) in callers.into_iter().zip(calls) {
        waiting.spawn(async move {
            let id = call.call_id.clone();
            let r = phone
                .expect("180 or a refusal", |m| {
                    m.call_id() == id
                        && m.cseq_method() == "INVITE"
                        && m.status().is_some_and(|s| s == 180 || s >= 300)
                })
                .await;
            (r.map(|m| m.status()), phone)
        });
    }
    let mut keep = Vec::new();
    while let Some(done) = waiting.join_next().await {
        let (status, phone) = done.expect("caller task");
        outcomes.push(status.expect("every call rings or is refused"));
        keep.push(phone);
    }
    let rang = outcomes.iter().filter(|s| **s == Some(180)).count();
    let refused: Vec<u16> = outcomes
        .iter()
        .flatten()
        .copied()
        .filter(|s| *s >= 300)
        .collect();
    assert_eq!(
        rang,
        10,
        "exactly the limit rings: {outcomes:?}\n{}",
        cluster.logs()
    );
    assert_eq!(refused.len(), 20, "{outcomes:?}");
    assert!(
        refused.iter().all(|s| *s == 403),
        "refused with 403: {refused:?}"
    );
    let mut rung = 0;
    while rung_rx.try_recv().is_ok() {
        rung += 1;
    }
    assert!(rung <= 10, "the callee was rung {rung} times");
    ringing.abort();
}

/// A node drained by the operator refuses new work (the front moves its
/// phones to the other node) while its call goes on to the end; then it is
/// killed mid-call: the call is recorded once, as dropped, and the phones
/// it held register again through the front and can be called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drains_then_dies_and_nothing_is_lost() {
    let Some(cluster) = Cluster::start(None).await else {
        return;
    };
    let ((ext_a, mut phone_a), (ext_b, mut phone_b)) = cluster.phone_on_each_node().await;
    let logs = || cluster.logs();
    let status = cluster.cli(&["cluster", "status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(doc["up"], 2, "{status}");

    // A call held by node b (its caller's node), answered.
    let call = answered_call(&mut phone_b, &mut phone_a, &ext_a, logs).await;

    // Drain node b: within a second it answers new requests with 503, and
    // its phone registers again through the front onto node a.
    let said = cluster.cli(&["node", "drain", "node-b"]);
    assert!(said.contains("draining"), "{said}");
    let b = cluster.addr_of("node-b");
    let probe = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let deadline = Instant::now() + Duration::from_secs(5);
    while options(&probe, b, "probe", Duration::from_millis(300)).await != Some(503) {
        assert!(
            Instant::now() < deadline,
            "node b never drained\n{}",
            logs()
        );
    }
    let status = cluster.cli(&["cluster", "status"]);
    assert!(status.contains("node-b\tdraining"), "{status}");
    let r = phone_b.register(300).await.expect("register");
    assert_eq!(r.status(), Some(200), "{}\n{}", r.raw, logs());
    cluster
        .wait_binding_on(&ext_b, "node-a", Duration::from_secs(5))
        .await;

    // The call on node b goes on: a re-INVITE-free check, the BYE, would
    // end it; instead the node is killed while it is up.
    let in_progress = wait_for(Duration::from_secs(5), || async {
        let calls = cluster.store.cluster_calls("node-b").await.expect("calls");
        (!calls.is_empty()).then_some(calls)
    })
    .await
    .unwrap_or_else(|| panic!("node b never recorded its call as in progress\n{}", logs()));
    assert_eq!(in_progress.len(), 1);
    assert_eq!(in_progress[0].caller_call_id, call.call_id);
    cluster.nodes[1].1.kill();

    // Node a finds node b silent and records the call as dropped, once.
    let dropped = wait_for(Duration::from_secs(20), || async {
        let all = cluster
            .store
            .list_cdrs(cluster.tenant, &store::CdrFilter::default())
            .await
            .expect("records");
        let of_call: Vec<store::Cdr> = all
            .into_iter()
            .filter(|c| c.caller_call_id == call.call_id)
            .collect();
        (!of_call.is_empty()).then_some(of_call)
    })
    .await
    .unwrap_or_else(|| panic!("no record of the call on the dead node\n{}", logs()));
    assert_eq!(dropped.len(), 1, "recorded once: {dropped:?}");
    assert_eq!(dropped[0].disposition, store::Disposition::Dropped);
    assert_eq!(dropped[0].hangup_by, store::DROPPED_BY);
    assert!(dropped[0].answered_at_ms.is_some());
    let status = cluster.cli(&["cluster", "status"]);
    assert!(status.contains("node-b\tdown"), "{status}");
    let metrics = cluster.metrics("node-a").await;
    for line in ["pbx_node_up{node=\"node-b\"} 0", "pbx_cluster_nodes_up 1"] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // The phones node a holds are still reachable, through the front.
    call_through_the_front(&mut phone_a, &mut phone_b, &ext_b, logs).await;
    call_through_the_front(&mut phone_b, &mut phone_a, &ext_a, logs).await;
}

/// Compiled artefacts in a node's plugin cache (wasmtime's content-hash
/// files, without its bookkeeping).
fn compiled_in(dir: &Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_none() {
                n += 1;
            }
        }
    }
    n
}

/// Polls `probe` every 50 ms until it gives something, for at most `within`.
async fn wait_for<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
