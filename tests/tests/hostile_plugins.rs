//! Hostile dial plans beside a well-behaved tenant: tenant acme installs an
//! attacking plugin and calls through it, while tenant beta registers, calls
//! and writes its plugin storage as usual. Each test checks that beta's
//! registrations, calls and storage are unaffected, that acme's calls end
//! with a documented status (never a timeout of the whole routing path), and
//! that the server's memory (read from this process's /proc/self/status: the
//! server runs in-process) stays within a bound.

mod common;

use common::{ACME, BETA, Pbx};
use pbx_e2e::{Phone, SipMsg, Transport};
use pbx_plugin::shipped::{examples, generated};

/// Resident memory of this process (the PBX runs in it), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// How much the server may grow during one attack: allocator caches and the
/// calls' own state, but not the attack's size (each attack asks for tens to
/// hundreds of MiB on the host).
const GROWTH_BOUND: u64 = 48 << 20;

async fn final_status(caller: &mut Phone, callee: &str) -> SipMsg {
    let call = caller.call(callee).await.unwrap();
    caller.final_response(&call).await.unwrap()
}

/// The stored count in beta's counter plan's answer `480 <seen>/<stored>`.
fn stored_count(r: &SipMsg) -> u64 {
    assert_eq!(r.status(), Some(480), "beta's counter plan: {}", r.start);
    r.start
        .rsplit('/')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {}", r.start))
}

/// The attack scene: acme runs `attacker`, beta runs the counter plan.
struct Scene {
    /// The server, kept running for the scene.
    _pbx: Pbx,
    acme: Vec<Phone>,
    beta: Phone,
}

impl Scene {
    /// `loads`: whether the attacker passes upload checks (then wait until it runs).
    async fn new(attacker: &[u8], loads: bool) -> Scene {
        let pbx = Pbx::start().await;
        pbx.store
            .install_dialplan(pbx.beta, examples::COUNTER, 1)
            .await
            .unwrap();
        pbx.store
            .install_dialplan(pbx.acme, attacker, 1)
            .await
            .unwrap();
        let mut beta = pbx.registered(Transport::Udp, BETA, "1000").await;
        // Until beta's counter plan is loaded, its calls ring 1001 (480 too,
        // without a count).
        for _ in 0..100 {
            let r = final_status(&mut beta, "1001").await;
            if r.start.starts_with("SIP/2.0 480 1/") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut acme = Vec::new();
        for ext in ["1000", "1001", "1002"] {
            acme.push(pbx.phone(Transport::Udp, ACME, ext).await);
        }
        if loads {
            // Until the attacker is loaded, acme's calls get the default plan's 404.
            for _ in 0..200 {
                let r = final_status(&mut acme[0], "1009").await;
                if r.status() != Some(404) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Scene {
            _pbx: pbx,
            acme,
            beta,
        }
    }

    /// Acme's three phones each make `calls` calls to 1009 while beta makes
    /// `calls` calls and re-registers; returns acme's final statuses.
    async fn attack(&mut self, calls: usize) -> Vec<SipMsg> {
        let before = stored_count(&final_status(&mut self.beta, "1001").await);
        let [a, b, c] = &mut self.acme[..] else {
            panic!("three acme phones");
        };
        let beta = &mut self.beta;
        let beta = async move {
            let mut last = before;
            for _ in 0..calls {
                let count = stored_count(&final_status(beta, "1001").await);
                assert_eq!(count, last + 1, "beta's storage write was lost");
                last = count;
            }
            let r = beta.register(300).await.unwrap();
            assert_eq!(r.status(), Some(200), "beta re-registers: {}", r.raw);
        };
        let (a, b, c, ()) = tokio::join!(
            attacker(a, calls),
            attacker(b, calls),
            attacker(c, calls),
            beta
        );
        [a, b, c].into_iter().flatten().collect()
    }
}

async fn attacker(phone: &mut Phone, calls: usize) -> Vec<SipMsg> {
    let mut finals = Vec::with_capacity(calls);
    for _ in 0..calls {
        finals.push(final_status(phone, "1009").await);
    }
    finals
}

/// Every status acme may see: its plan failing (500, fixed phrases), its
/// share being full (503 Plugin Share Exhausted), or, once quarantined, the
/// shipped default plan (1009 does not exist: 404; or 480).
fn assert_documented(finals: &[SipMsg]) {
    for r in finals {
        let ok = match r.status() {
            Some(500) => [
                "Dial Plan Failed",
                "Dial Plan Timeout",
                "Dial Plan Out Of Memory",
                "Invalid Dial Plan Decision",
            ]
            .iter()
            .any(|p| r.start.contains(p)),
            Some(503) => r.start.contains("Plugin Share Exhausted"),
            Some(404 | 480) => true,
            _ => false,
        };
        assert!(ok, "acme got {}", r.start);
        assert!(
            !r.start.contains("wasm"),
            "host internals leaked: {}",
            r.start
        );
    }
}

#[tokio::test]
async fn a_sleeping_plan_holds_no_worker() {
    let mut scene = Scene::new(examples::SLEEP, true).await;
    let rss = rss_bytes();
    let finals = scene.attack(8).await;
    assert_documented(&finals);
    // Its first calls fail at once (the blocking call traps), before any quarantine.
    assert!(
        finals
            .iter()
            .any(|r| r.status() == Some(500) && r.start.contains("Dial Plan Failed")),
        "{:?}",
        finals.iter().map(|r| &r.start).collect::<Vec<_>>()
    );
    assert!(rss_bytes() < rss + GROWTH_BOUND);
}

#[tokio::test]
async fn a_spinning_plan_flood_leaves_the_other_tenant_its_workers() {
    let mut scene = Scene::new(examples::SPIN, true).await;
    let rss = rss_bytes();
    let finals = scene.attack(10).await;
    assert_documented(&finals);
    assert!(rss_bytes() < rss + GROWTH_BOUND);
}

#[tokio::test]
async fn a_log_bomb_grows_the_server_by_its_budget_only() {
    let mut scene = Scene::new(examples::LOG_BOMB, true).await;
    let rss = rss_bytes();
    // Each call writes 8 MiB of log lines and 2 MiB to stdout.
    let finals = scene.attack(10).await;
    assert_documented(&finals);
    let grown = rss_bytes().saturating_sub(rss);
    assert!(grown < GROWTH_BOUND, "grew {} MiB", grown >> 20);
}

#[tokio::test]
async fn a_random_bomb_allocates_nothing_on_the_host() {
    let mut scene = Scene::new(examples::RANDOM_BOMB, true).await;
    let rss = rss_bytes();
    // Each call asks for 64 MiB of random bytes.
    let finals = scene.attack(6).await;
    assert_documented(&finals);
    assert!(finals.iter().any(|r| r.status() == Some(500)));
    let grown = rss_bytes().saturating_sub(rss);
    assert!(grown < GROWTH_BOUND, "grew {} MiB", grown >> 20);
}

#[tokio::test]
async fn many_memories_and_compile_bombs_never_load_and_the_default_plan_runs() {
    for attacker in [
        generated::many_memories(100),
        generated::compile_bomb(1, 8000, 8000),
    ] {
        let mut scene = Scene::new(&attacker, false).await;
        let rss = rss_bytes();
        let finals = scene.attack(4).await;
        // The stored plan is refused at load (alerted); acme keeps the
        // shipped default, which has no extension 1009.
        for r in &finals {
            assert_eq!(r.status(), Some(404), "{}", r.start);
        }
        let grown = rss_bytes().saturating_sub(rss);
        assert!(grown < GROWTH_BOUND, "grew {} MiB", grown >> 20);
    }
}

#[tokio::test]
async fn a_decision_aliasing_one_string_is_refused_before_the_host_copies_it() {
    let mut scene = Scene::new(examples::DECISION_BOMB, true).await;
    let rss = rss_bytes();
    // Each decision names 50,000 targets that all point at one 1 MiB string.
    let finals = scene.attack(4).await;
    assert_documented(&finals);
    // Stopped at the lift's byte bound, or (on a loaded machine, building
    // 50,000 strings in the guest) at its deadline first; never copied whole.
    assert!(finals.iter().any(|r| r.status() == Some(500)));
    let grown = rss_bytes().saturating_sub(rss);
    assert!(grown < GROWTH_BOUND, "grew {} MiB", grown >> 20);
}
