//! Plugin configuration and storage on a running PBX: the provider's
//! configuration of the shipped fraud policy is set through the CLI and
//! reaches the server while it runs, a tenant's dial plan cannot raise it by
//! writing its own storage, one tenant's storage flood does not fail another
//! tenant's writes, and a plugin's delete survives a restart.

mod common;

use std::time::{Duration, Instant};

use common::{ACME, BETA, Pbx, cli};
use pbx_e2e::{Phone, SipMsg, Transport};
use store::Store;

/// Calls `callee` and returns the first final response.
async fn final_status(caller: &mut Phone, callee: &str) -> SipMsg {
    let call = caller.call(callee).await.unwrap();
    caller.final_response(&call).await.unwrap()
}

/// Repeats a call until its final response satisfies `done`; fails after a
/// bounded number of tries.
async fn until_final(caller: &mut Phone, callee: &str, done: impl Fn(&SipMsg) -> bool) -> SipMsg {
    let mut last = String::new();
    for _ in 0..100 {
        let r = final_status(caller, callee).await;
        if done(&r) {
            return r;
        }
        last = r.start;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the change never took effect; last answer: {last}");
}

/// Lifts the host's own per-extension concurrency and per-second limits for
/// `tenant`, as an operator can: these tests place calls faster than call
/// records are written (which is when a call's slot is given back), and only
/// the fraud policy's limits are under test.
async fn generous_host_limits(store: &Store, tenant: &str) {
    cli(
        store,
        &[
            "tenant",
            "limits",
            tenant,
            "--max-concurrent",
            "1000",
            "--max-concurrent-extension",
            "1000",
            "--max-calls-per-second",
            "1000",
        ],
    )
    .await;
}

/// Whether the storage-writer dial plan answered (its `forget` reply).
fn writer_answered(r: &SipMsg) -> bool {
    r.start.contains("forgot")
}

/// Whether the fraud policy refused the call for its calls-per-minute limit
/// of `limit`.
fn denied_for_rate(r: &SipMsg, limit: u32) -> bool {
    r.status() == Some(403)
        && r.start.contains("calls in a minute")
        && r.start.contains(&format!("(limit {limit})"))
}

#[tokio::test]
async fn a_dial_plan_writing_its_storage_does_not_raise_the_fraud_limit() {
    let pbx = Pbx::start().await;
    generous_host_limits(&pbx.store, "acme").await;
    generous_host_limits(&pbx.store, "beta").await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    // The provider limits acme to 3 calls a minute per extension.
    cli(
        &pbx.store,
        &[
            "policy",
            "config",
            "set",
            "default-policy",
            "max-calls-per-minute",
            "3",
            "--tenant",
            "acme",
        ],
    )
    .await;
    // acme's dial plan writes 1000000 under every name the limit might have.
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::STORAGE_WRITER, 1)
        .await
        .unwrap();
    // The dial plan is loaded once it answers `forget`; the configuration was
    // committed before it, so the same reload has it. (Its calls are rejected
    // by the dial plan, so they are not placed and do not count.)
    until_final(&mut caller, "forget", writer_answered).await;

    // Three calls are placed (1001 is not registered: 480) ...
    for _ in 0..3 {
        let r = final_status(&mut caller, "1001").await;
        assert_eq!(r.status(), Some(480), "{}", r.start);
    }
    // ... and the fourth is refused, whatever the dial plan wrote.
    let r = final_status(&mut caller, "1001").await;
    assert!(denied_for_rate(&r, 3), "{}", r.start);
    for key in ["policy.max-calls-per-minute", "max-calls-per-minute"] {
        assert_eq!(
            pbx.store
                .plugin_kv_get(pbx.acme, key)
                .await
                .unwrap()
                .as_deref(),
            Some(&b"1000000"[..]),
            "the dial plan's write of {key} was made"
        );
    }
    // The other tenant runs on the provider-wide default (20 a minute).
    let mut other = pbx.registered(Transport::Udp, BETA, "1000").await;
    for _ in 0..4 {
        let r = final_status(&mut other, "1001").await;
        assert_eq!(r.status(), Some(480), "{}", r.start);
    }
}

#[tokio::test]
async fn a_provider_override_reaches_the_running_server_within_a_second() {
    let mut pbx = Pbx::start().await;
    // This test is about how soon a change reaches the server: it runs with
    // the shipped reload interval instead of the fixture's shorter one.
    generous_host_limits(&pbx.store, "acme").await;
    pbx.stop().await;
    serve_with_shipped_reload(&mut pbx).await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    for _ in 0..2 {
        let r = final_status(&mut caller, "1001").await;
        assert_eq!(r.status(), Some(480), "{}", r.start);
    }
    let set = Instant::now();
    cli(
        &pbx.store,
        &[
            "policy",
            "config",
            "set",
            "default-policy",
            "max-calls-per-minute",
            "2",
            "--tenant",
            "acme",
        ],
    )
    .await;
    // Every call counts, so once the override of 2 is in, calls are refused
    // with it (paced, so the default of 20 is not reached first).
    let mut took = None;
    while set.elapsed() < Duration::from_secs(5) {
        let r = final_status(&mut caller, "1001").await;
        if denied_for_rate(&r, 2) {
            took = Some(set.elapsed());
            break;
        }
        assert_eq!(r.status(), Some(480), "{}", r.start);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = took.expect("the override took effect");
    println!("provider override effective after {took:?}");
    assert!(took <= Duration::from_secs(1), "took {took:?}");

    // Removing the override restores the provider-wide default: calls are
    // placed again, or refused only at the default's 20.
    cli(
        &pbx.store,
        &[
            "policy",
            "config",
            "delete",
            "default-policy",
            "max-calls-per-minute",
            "--tenant",
            "acme",
        ],
    )
    .await;
    until_final(&mut caller, "1001", |r| {
        r.status() == Some(480) || denied_for_rate(r, 20)
    })
    .await;
}

/// Starts the server again with the shipped reload interval (the fixture's
/// other settings kept).
async fn serve_with_shipped_reload(pbx: &mut Pbx) {
    let mut opts = pbx::server::ServeOptions::new(
        vec!["127.0.0.1:0".parse().unwrap()],
        vec!["127.0.0.1:0".parse().unwrap()],
        common::core_config(),
    );
    opts.guard.set_trusted(pbx::server::loopback_nets());
    let store = Store::open(pbx.dir.path()).await.expect("reopen store");
    let handle = pbx::server::start(opts, store)
        .await
        .expect("server starts");
    pbx.udp = handle.addrs().udp[0];
    pbx.tcp = handle.addrs().tcp[0];
    pbx.handle = Some(handle);
}

/// The `<instance>/<stored>` count in the counter dial plan's reject reason.
fn stored_count(r: &SipMsg) -> Option<u64> {
    let reason = r.start.splitn(3, ' ').nth(2)?;
    reason.trim().split('/').nth(1)?.parse().ok()
}

#[tokio::test]
async fn one_tenants_storage_flood_does_not_fail_another_tenants_writes() {
    let pbx = Pbx::start().await;
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::STORAGE_WRITER, 1)
        .await
        .unwrap();
    pbx.store
        .install_dialplan(pbx.beta, pbx_plugin::shipped::examples::COUNTER, 1)
        .await
        .unwrap();
    let mut victim = pbx.registered(Transport::Udp, BETA, "1000").await;
    let first = until_final(&mut victim, "1001", |r| stored_count(r).is_some()).await;
    let mut expected = stored_count(&first).unwrap();
    let mut attackers = Vec::new();
    for ext in ["1000", "1001", "1002"] {
        let mut phone = pbx.registered(Transport::Udp, ACME, ext).await;
        until_final(&mut phone, "forget", writer_answered).await;
        attackers.push(phone);
    }

    // Three of acme's phones keep calling the flooding dial plan while beta's
    // counter writes its storage on every call.
    let flood = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        let mut calls = Vec::new();
        for mut phone in attackers {
            calls.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..8 {
                    seen.push(final_status(&mut phone, "flood").await.start);
                }
                seen
            }));
        }
        for c in calls {
            outcomes.extend(c.await.unwrap());
        }
        outcomes
    });
    for _ in 0..30 {
        let r = final_status(&mut victim, "1001").await;
        expected += 1;
        assert_eq!(
            stored_count(&r),
            Some(expected),
            "beta's write failed during acme's flood: {}",
            r.start
        );
    }
    let outcomes = flood.await.unwrap();
    assert_eq!(outcomes.len(), 24);
    let flooded = pbx.store.plugin_kv_list(pbx.acme).await.unwrap();
    assert!(
        flooded.iter().any(|(k, _)| k.starts_with("flood:")),
        "acme's flood wrote nothing: {outcomes:?}"
    );
    assert_eq!(
        pbx.store
            .plugin_kv_get(pbx.beta, "count")
            .await
            .unwrap()
            .as_deref(),
        Some(expected.to_string().as_bytes())
    );
}

#[tokio::test]
async fn a_plugins_delete_survives_a_restart() {
    let mut pbx = Pbx::start().await;
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::STORAGE_WRITER, 1)
        .await
        .unwrap();
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    until_final(&mut caller, "forget", writer_answered).await;
    let key = "policy.max-calls-per-minute";
    // A routed call writes the keys, `forget` deletes them.
    let r = final_status(&mut caller, "1001").await;
    assert_eq!(r.status(), Some(480), "{}", r.start);
    assert!(
        pbx.store
            .plugin_kv_get(pbx.acme, key)
            .await
            .unwrap()
            .is_some()
    );
    let r = final_status(&mut caller, "forget").await;
    assert!(r.start.contains("forgot"), "{}", r.start);
    // Acknowledged means on disk: no wait for a background flush.
    assert!(
        pbx.store
            .plugin_kv_get(pbx.acme, key)
            .await
            .unwrap()
            .is_none()
    );

    pbx.stop().await;
    pbx.serve().await;
    assert!(
        pbx.store
            .plugin_kv_get(pbx.acme, key)
            .await
            .unwrap()
            .is_none()
    );
    let storage = cli(&pbx.store, &["storage", "list", "acme"]).await;
    assert!(!storage.contains(key), "{storage}");
}

#[tokio::test]
async fn a_tenants_own_policy_runs_after_the_providers() {
    let pbx = Pbx::start().await;
    generous_host_limits(&pbx.store, "acme").await;
    let mut first = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut second = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut beta = pbx.registered(Transport::Udp, BETA, "1000").await;
    // 1000 places one call (1002 is not registered: 480).
    let r = final_status(&mut first, "1002").await;
    assert_eq!(r.status(), Some(480), "{}", r.start);
    // acme's own policy fails on every call, so it denies (fail closed).
    pbx.store
        .install_tenant_policy(
            pbx.acme,
            "mine",
            pbx_plugin::shipped::examples::POLICY_TRAP,
            1,
        )
        .await
        .unwrap();
    // A number the dial plan rejects still passes every policy: acme's own
    // denies it once loaded (and such calls are never placed or counted).
    let r = until_final(&mut second, "7777", |r| r.start.contains("Policy Failed")).await;
    assert_eq!(r.status(), Some(403), "{}", r.start);
    // The provider now allows acme's extensions one call a minute. 1000 has
    // made its call: the provider's policy runs first, so its deny is the one
    // reported (were acme's own policy first, it would say "Policy Failed").
    cli(
        &pbx.store,
        &[
            "policy",
            "config",
            "set",
            "default-policy",
            "max-calls-per-minute",
            "1",
            "--tenant",
            "acme",
        ],
    )
    .await;
    until_final(&mut first, "1002", |r| denied_for_rate(r, 1)).await;
    // Nobody else's calls meet acme's policy.
    let r = final_status(&mut beta, "1001").await;
    assert_eq!(r.status(), Some(480), "{}", r.start);
    pbx.store
        .remove_tenant_policy(pbx.acme, "mine")
        .await
        .unwrap();
    // Without it, the dial plan's own answer comes back.
    until_final(&mut second, "7777", |r| r.status() == Some(404)).await;
}
