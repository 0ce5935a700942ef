//! Several PBX nodes sharing per-tenant limits through Redis (`[cluster]
//! redis`): a tenant's concurrent-call limit holds over calls spread across
//! two nodes, and the shared counters themselves hold a limit against calls
//! started at once on several threads, give back released calls and forget a
//! node that died. Needs `redis-server` (Debian: redis-server); skipped with
//! a notice without it, unless `PBX_REQUIRE_TOOLS=1`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ACME, Pbx, cli, next_invite};
use pbx::cli::ServeArgs;
use pbx::config::{ClusterSection, FileConfig, Settings};
use pbx::server::shared_counters::SharedCounters;
use pbx_core::decision::Counters;
use pbx_e2e::Transport;
use pbx_e2e::tools::Redis;
use pbx_guard::{CallStart, Denial, DestinationClass, Usage};
use store::TenantId;

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
            redis: redis.url(),
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

fn usage_with_limit(limit: u32) -> Arc<Usage> {
    let usage = Usage::new(pbx_guard::UsageConfig::default());
    let limits = pbx_guard::Limits {
        max_concurrent_tenant: Some(limit),
        max_concurrent_extension: None,
        max_calls_per_second: None,
        daily_cap_cents: None,
        ..pbx_guard::Limits::default()
    };
    usage.set_limits(TenantId(7), limits).unwrap();
    Arc::new(usage)
}

fn call(ext: &str) -> CallStart<'_> {
    CallStart {
        tenant: TenantId(7),
        extension: ext,
        class: DestinationClass::Internal,
        now: Instant::now(),
        unix_ms: 1_700_000_000_000,
    }
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 30 calls at once over two nodes against a limit of 10: exactly 10
/// are counted; giving calls back frees their places on every node; a
/// node that dies holding calls stops counting within seconds.
#[test]
fn a_limit_holds_across_nodes_and_a_dead_node_is_forgotten() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let a = SharedCounters::start(&redis.url(), "node-a", usage_with_limit(10)).unwrap();
    let b = SharedCounters::start(&redis.url(), "node-b", usage_with_limit(10)).unwrap();
    let slots = std::sync::Mutex::new(Vec::new());
    let refused = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for i in 0..30 {
            let node = if i % 2 == 0 { &a } else { &b };
            let (slots, refused) = (&slots, &refused);
            s.spawn(move || {
                let ext = format!("{}", 100 + i);
                match node.start_call(&call(&ext)) {
                    Ok(slot) => slots.lock().unwrap().push((i % 2, slot)),
                    Err(Denial::TenantConcurrent { limit: 10 }) => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected refusal: {e}"),
                }
            });
        }
    });
    let mut slots = slots.into_inner().unwrap();
    assert_eq!(slots.len(), 10, "admitted");
    assert_eq!(refused.into_inner(), 20);
    assert_eq!(a.cluster_concurrent(TenantId(7)), 10);

    // Two calls end: two new ones fit, the third does not.
    slots.truncate(8);
    eventually("released calls are given back", || {
        a.cluster_concurrent(TenantId(7)) == 8
    });
    let more: Vec<_> = (0..3)
        .map(|i| a.start_call(&call(&format!("9{i}"))))
        .collect();
    assert_eq!(more.iter().filter(|r| r.is_ok()).count(), 2);

    // Node b dies with its calls: neither released nor heartbeating.
    let b_calls = slots.iter().filter(|(n, _)| *n == 1).count() as u32;
    assert!(b_calls > 0);
    for (n, slot) in slots.drain(..) {
        if n == 1 {
            std::mem::forget(slot);
        }
    }
    drop(more);
    drop(b);
    eventually("a dead node's calls stop counting", || {
        a.cluster_concurrent(TenantId(7)) == 0
    });
}
