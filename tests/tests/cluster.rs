//! Several PBX nodes sharing per-tenant limits through Redis (`[cluster]
//! redis`): a tenant's concurrent-call limit holds over calls spread across
//! two nodes. Needs `redis-server` (Debian: redis-server); skipped with a
//! notice without it, unless `PBX_REQUIRE_TOOLS=1`.

mod common;

use std::time::{Duration, Instant};

use common::{ACME, Pbx, cli, next_invite};
use pbx::cli::ServeArgs;
use pbx::config::{ClusterSection, FileConfig, Settings};
use pbx_e2e::Transport;

/// A private redis-server on a Unix socket, killed when dropped.
struct Redis {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(dir.path().join("redis.sock"))
            .stdout(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            assert!(
                std::env::var("PBX_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "redis-server is not installed and PBX_REQUIRE_TOOLS=1"
            );
            eprintln!("SKIPPED: redis-server is not installed (Debian: redis-server)");
            return None;
        };
        let redis = Redis { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(redis.socket()).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(redis)
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.sock")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node: the fixture's tenants, acme limited to 10 calls at once (its
/// per-extension and per-second limits lifted, as they are not under test),
/// serving with the shipped defaults plus `[cluster]`.
async fn node(redis: &Redis, id: &str) -> Pbx {
    let mut pbx = Pbx::provisioned().await;
    cli(
        &pbx.store,
        &[
            "tenant",
            "limits",
            "acme",
            "--max-concurrent",
            "10",
            "--max-concurrent-extension",
            "1000",
            "--max-calls-per-second",
            "1000",
        ],
    )
    .await;
    // [cluster] is what this test is about; everything else is shipped.
    let file = FileConfig {
        cluster: Some(ClusterSection {
            redis: format!("unix://{}", redis.socket().display()),
            node: Some(id.into()),
        }),
        ..FileConfig::default()
    };
    let args = ServeArgs {
        sip_udp: vec!["127.0.0.1:0".parse().unwrap()],
        sip_tcp: vec!["127.0.0.1:0".parse().unwrap()],
        ..ServeArgs::default()
    };
    let opts = Settings::resolve(file, &args).expect("resolves").serve;
    pbx.serve_with(opts).await;
    pbx
}

#[tokio::test]
async fn a_tenants_call_limit_holds_across_two_nodes() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let a = node(&redis, "node-a").await;
    let b = node(&redis, "node-b").await;
    let mut phones = Vec::new();
    for pbx in [&a, &b] {
        let caller = pbx.registered(Transport::Udp, ACME, "1000").await;
        let callee = pbx.registered(Transport::Udp, ACME, "1001").await;
        phones.push((caller, callee));
    }
    // 30 calls, alternating between the nodes; each one admitted rings its
    // callee and stays up (nobody answers), so they are all in progress.
    let (mut admitted, mut refused) = ([0u32; 2], 0u32);
    let mut held = Vec::new();
    for i in 0..30 {
        let (caller, callee) = &mut phones[i % 2];
        let call = caller.call("1001").await.expect("INVITE");
        tokio::select! {
            invite = next_invite(callee, Duration::from_secs(10)) => {
                invite.expect("an admitted call rings its callee");
                admitted[i % 2] += 1;
                held.push(call);
            }
            r = caller.final_response(&call) => {
                let r = r.expect("final response");
                assert_eq!(r.status(), Some(403), "{}", r.start);
                refused += 1;
            }
        }
    }
    assert_eq!(
        admitted[0] + admitted[1],
        10,
        "admitted per node: {admitted:?}"
    );
    assert!(admitted[0] > 0 && admitted[1] > 0, "{admitted:?}");
    assert_eq!(refused, 20);
    drop(held);
}
