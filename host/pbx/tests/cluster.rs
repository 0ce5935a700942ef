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
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process { child, name, log }
    }

    /// Kills the process at once, as a crash or a power cut would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    store: Store,
    tenant: TenantId,
    nodes: Vec<(SocketAddr, Process)>,
    front: SocketAddr,
    kamailio: Process,
    _redis: Redis,
}

impl Cluster {
    /// PostgreSQL, Redis, nodes a and b from the example files, and the
    /// front; acme with extensions 1000-1005 provisioned.
    async fn start() -> Option<Cluster> {
        if !installed("kamailio", "kamailio", "PBX_REQUIRE_TOOLS") {
            return None;
        }
        if store::testdb::server().await.is_none() {
            assert!(
                std::env::var("PBX_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "PostgreSQL is not installed and PBX_REQUIRE_TOOLS=1"
            );
            eprintln!("SKIPPED: PostgreSQL is not installed (Debian package `postgresql`)");
            return None;
        }
        let url = store::testdb::fresh_database().await;
        let root = tempfile::tempdir().expect("dir");
        let dir = |n: &str| root.path().join(n);
        let store = Store::connect(&url, &dir("node-a")).await.expect("store");
        let tenant = store.add_tenant("acme", ACME).await.expect("tenant").id;
        for ext in 1000..1006 {
            let ext = ext.to_string();
            store
                .add_extension(tenant, &ext, &password(&ext))
                .await
                .expect("extension");
        }
        // Every node holds the same secret key (trunk passwords, nonces).
        std::fs::create_dir(dir("node-b")).expect("dir");
        std::fs::copy(
            dir("node-a").join("secret.key"),
            dir("node-b").join("secret.key"),
        )
        .expect("copy the key");

        let redis = Redis::start()?;
        let redis_url = redis.url();

        let mut nodes = Vec::new();
        for (name, example_addr) in [("node-a", "127.0.0.1:5070"), ("node-b", "127.0.0.1:5080")] {
            let addr = free_udp();
            let config = example(
                &format!("{name}.toml"),
                &[
                    (example_addr, &addr.to_string()),
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
            store,
            tenant,
            nodes,
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
        let mut phone = Phone::new(
            Transport::Udp,
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

/// `caller` calls `callee`'s extension; the callee answers; both ends see
/// the call up (the ACK crosses the front to the callee), then the caller
/// hangs up and the callee sees the BYE.
async fn call_through_the_front(
    caller: &mut Phone,
    callee: &mut Phone,
    ext: &str,
    logs: impl Fn() -> String,
) {
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
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // The front keeps each phone on one node (hash of its From URI): take
    // one phone held by each node.
    let mut on = std::collections::BTreeMap::new();
    for ext in 1000..1006 {
        let ext = ext.to_string();
        let (phone, node) = cluster.phone(&ext).await;
        on.entry(node).or_insert((ext, phone));
    }
    let nodes: Vec<&String> = on.keys().collect();
    assert_eq!(nodes, ["node-a", "node-b"], "phones landed on both nodes");
    let (ext_b, mut phone_b) = on.remove("node-b").expect("a phone on node b");
    let (ext_a, mut phone_a) = on.remove("node-a").expect("a phone on node a");
    let logs = || cluster.logs();

    // Calls both ways between phones held by different nodes.
    call_through_the_front(&mut phone_a, &mut phone_b, &ext_b, logs).await;
    call_through_the_front(&mut phone_b, &mut phone_a, &ext_a, logs).await;
}
