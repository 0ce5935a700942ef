//! Scenario tests: the shipped and hostile plugins on a real engine.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::caps::{FixedUsage, MemoryAlerts, MemoryFeatures, MemoryStorage, PluginLog, TenantCaps};
use crate::shipped::{self, examples};
use crate::types::*;
use crate::{InvalidDecision, PluginError, PluginRuntime, RuntimeConfig, ValidationError, World};

struct Tenant {
    caps: TenantCaps,
    alerts: Arc<MemoryAlerts>,
    log: Arc<PluginLog>,
    features: Arc<MemoryFeatures>,
}

/// The id of the test tenant called `name`: distinct names, distinct ids.
fn id_of(name: &str) -> model::TenantId {
    const NAMES: &[&str] = &[
        "acme", "other", "small", "tiny", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8",
    ];
    let at = NAMES.iter().position(|n| *n == name);
    model::TenantId(at.map_or(1_000, |i| i as i64 + 1))
}

fn tenant_with(name: &str, directory: Directory, usage: FixedUsage, quota: usize) -> Tenant {
    let alerts = Arc::new(MemoryAlerts::default());
    let log = Arc::new(PluginLog::default());
    let features = Arc::new(MemoryFeatures::default());
    let caps = TenantCaps {
        tenant: id_of(name),
        directory: Arc::new(directory),
        storage: Arc::new(MemoryStorage::new(quota)),
        usage: Arc::new(usage),
        alerts: alerts.clone(),
        log: log.clone(),
        config: Arc::new(crate::caps::EmptyConfig),
        clock: Arc::new(crate::caps::TenantClock::utc()),
        call_info: Arc::new(crate::caps::CallInfo::default()),
        features: features.clone(),
    };
    Tenant {
        caps,
        alerts,
        log,
        features,
    }
}

fn acme() -> Tenant {
    let dir = Directory::new()
        .with_extension("100", "Alice", true)
        .with_extension("101", "Bob", false)
        .with_group("sales", &["100", "101"])
        .with_trunk("acme-carrier");
    tenant_with("acme", dir, FixedUsage::default(), 4096)
}

fn call(dialled: &str, class: DestinationClass) -> Call {
    Call {
        call_id: "c1@host".into(),
        caller: "100".into(),
        caller_extension: Some("100".into()),
        dialled: dialled.into(),
        destination_class: class,
    }
}

/// Test runtimes get a generous deadline: tests run in parallel with compiles
/// on a small machine, and only the spin test is about the deadline.
const TEST_DEADLINE: Duration = Duration::from_millis(500);

fn runtime() -> PluginRuntime {
    runtime_with(RuntimeConfig {
        max_instances: 8,
        ..config()
    })
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        deadline: TEST_DEADLINE,
        ..RuntimeConfig::default()
    }
}

fn runtime_with(config: RuntimeConfig) -> PluginRuntime {
    PluginRuntime::new(config).expect("runtime")
}

#[test]
fn decisions_naming_another_tenants_things_are_rejected() {
    let rt = runtime();
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::CROSS_TENANT).unwrap();
    let cases = [
        ("ext", InvalidDecision::UnknownExtension("9999".into())),
        ("mixed", InvalidDecision::UnknownExtension("9999".into())),
        ("group", InvalidDecision::UnknownGroup("other-sales".into())),
        (
            "0123",
            InvalidDecision::UnknownTrunk("other-carrier".into()),
        ),
    ];
    for (dialled, expected) in cases {
        let err = rt
            .route(&plan, &t.caps, &call(dialled, DestinationClass::Unknown))
            .unwrap_err();
        assert_eq!(
            err,
            PluginError::InvalidDecision(expected),
            "dialled {dialled}"
        );
        assert_eq!(err.sip_status(), 500);
    }
    assert!(t.alerts.all().iter().all(|a| a.from_runtime));
    assert_eq!(t.alerts.all().len(), 4);
}

#[test]
fn trap_is_an_error_and_its_panic_message_reaches_the_log() {
    let rt = runtime();
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::TRAP).unwrap();
    let err = rt
        .route(&plan, &t.caps, &call("100", DestinationClass::Internal))
        .unwrap_err();
    assert!(matches!(err, PluginError::Trap(_)), "{err:?}");
    assert!(
        t.log
            .lines()
            .iter()
            .any(|l| l.message.contains("refusing to route 100")),
        "{:?}",
        t.log.lines()
    );
    assert_eq!(t.alerts.all().len(), 1);
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let rt = runtime_with(RuntimeConfig {
        deadline: Duration::from_millis(20),
        max_instances: 2,
        ..RuntimeConfig::default()
    });
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::SPIN).unwrap();
    let started = Instant::now();
    let err = rt
        .route(&plan, &t.caps, &call("100", DestinationClass::Internal))
        .unwrap_err();
    assert_eq!(err, PluginError::Deadline);
    // Only that it terminates, not how fast: the deadline is 20 ms.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn memory_hog_is_stopped_at_the_cap() {
    let rt = runtime();
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::MEMHOG).unwrap();
    let err = rt
        .route(&plan, &t.caps, &call("100", DestinationClass::Internal))
        .unwrap_err();
    assert_eq!(err, PluginError::MemoryExhausted);
}

#[test]
fn sockets_and_filesystem_importer_is_refused_at_load() {
    let rt = runtime();
    let err = rt.load(World::Dialplan, examples::ESCAPE).unwrap_err();
    let ValidationError::ForbiddenImport(name) = &err else {
        panic!("expected a forbidden import, got {err:?}")
    };
    assert!(
        name.starts_with("wasi:filesystem/") || name.starts_with("wasi:sockets/"),
        "{name}"
    );
    assert!(err.to_string().contains("may not use"), "{err}");
}

#[test]
fn core_modules_garbage_and_oversize_files_are_refused() {
    let rt = runtime_with(RuntimeConfig {
        max_component_bytes: 1000,
        max_instances: 2,
        ..config()
    });
    let core = b"\0asm\x01\0\0\0";
    assert_eq!(
        rt.load(World::Dialplan, core).unwrap_err(),
        ValidationError::CoreModule
    );
    assert!(matches!(
        rt.load(World::Dialplan, b"#!/bin/sh\nrm -rf /\n")
            .unwrap_err(),
        ValidationError::NotAComponent(_)
    ));
    assert!(matches!(
        rt.load(World::Dialplan, b"").unwrap_err(),
        ValidationError::NotAComponent(_)
    ));
    let err = rt
        .load(World::Dialplan, shipped::DEFAULT_DIALPLAN)
        .unwrap_err();
    assert_eq!(
        err,
        ValidationError::TooLarge {
            size: shipped::DEFAULT_DIALPLAN.len(),
            limit: 1000
        }
    );
}

#[test]
fn a_component_for_the_other_world_is_refused() {
    let rt = runtime();
    let err = rt.load(World::Dialplan, shipped::RESTRICTIONS).unwrap_err();
    assert!(
        matches!(
            err,
            ValidationError::Exports {
                world: World::Dialplan,
                ..
            }
        ),
        "{err:?}"
    );
    // `config` is the policy world's own import: a dial plan may not have it.
    let err = rt
        .load(World::Dialplan, shipped::DEFAULT_POLICY)
        .unwrap_err();
    assert!(
        matches!(&err, ValidationError::ForbiddenImport(name) if name.contains("pbx:plugin/config")),
        "{err:?}"
    );
    let err = rt.load(World::Policy, examples::COUNTER).unwrap_err();
    assert!(
        matches!(
            err,
            ValidationError::Exports {
                world: World::Policy,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn policy_failure_denies_and_call_ended_yields_nothing() {
    let rt = runtime();
    let t = acme();
    let policy = rt.load(World::Policy, examples::POLICY_TRAP).unwrap();
    let decision = Decision::Ring(Ring {
        targets: vec![RingTarget {
            extension: "100".into(),
            timeout_secs: 20,
        }],
        strategy: RingStrategy::Simultaneous,
    });
    let verdict = rt.check_call(
        &policy,
        &t.caps,
        &call("100", DestinationClass::Internal),
        &decision,
    );
    assert!(matches!(verdict, Verdict::Deny(_)), "{verdict:?}");
    let cdr = Cdr {
        call_id: "c1".into(),
        caller: "100".into(),
        caller_extension: Some("100".into()),
        dialled: "101".into(),
        destination_class: DestinationClass::Internal,
        answered: true,
        duration_secs: 5,
        final_status: 200,
    };
    assert!(rt.call_ended(&policy, &t.caps, &cdr).is_empty());
    assert_eq!(t.alerts.all().len(), 2);
}

fn trunk_out(number: &str) -> Decision {
    Decision::Trunk(TrunkRoute {
        trunk: "acme-carrier".into(),
        number: number.into(),
    })
}

#[test]
fn restrictions_deny_unapproved_costly_classes_out_a_trunk_only() {
    let rt = runtime();
    let policy = rt.load(World::Policy, shipped::RESTRICTIONS).unwrap();
    let out = trunk_out("+4420123");
    let quiet = acme();
    let ring = Decision::Ring(Ring {
        targets: vec![RingTarget {
            extension: "100".into(),
            timeout_secs: 20,
        }],
        strategy: RingStrategy::Simultaneous,
    });

    for class in [
        DestinationClass::Internal,
        DestinationClass::National,
        DestinationClass::Mobile,
        DestinationClass::Emergency,
    ] {
        assert_eq!(
            rt.check_call(&policy, &quiet.caps, &call("0123", class), &out),
            Verdict::Allow,
            "{class:?}"
        );
    }
    for (class, name) in [
        (DestinationClass::International, "international"),
        (DestinationClass::Premium, "premium"),
        (DestinationClass::Unknown, "unknown"),
    ] {
        let verdict = rt.check_call(&policy, &quiet.caps, &call("+4420123", class), &out);
        assert_eq!(
            verdict,
            Verdict::Deny(format!(
                "destination class {name} is not approved for this tenant"
            ))
        );
        // Ringing one of the tenant's own extensions costs nothing.
        assert_eq!(
            rt.check_call(&policy, &quiet.caps, &call("100", class), &ring),
            Verdict::Allow
        );
    }

    // Approval is per class.
    let approved = FixedUsage {
        approved: HashSet::from([DestinationClass::International]),
        ..FixedUsage::default()
    };
    let dir = Directory::new()
        .with_extension("100", "", true)
        .with_trunk("acme-carrier");
    let trusted = tenant_with("t2", dir, approved, 4096);
    let abroad = call("+4420123", DestinationClass::International);
    assert_eq!(
        rt.check_call(&policy, &trusted.caps, &abroad, &out),
        Verdict::Allow
    );
    let premium = call("0900123", DestinationClass::Premium);
    assert!(matches!(
        rt.check_call(&policy, &trusted.caps, &premium, &out),
        Verdict::Deny(_)
    ));
    assert!(quiet.alerts.all().is_empty());
}

#[test]
fn emergency_calls_pass_every_shipped_policy_even_over_the_limits() {
    let rt = runtime();
    let dir = Directory::new()
        .with_extension("100", "", true)
        .with_trunk("acme-carrier");
    let overloaded = FixedUsage {
        concurrent: 1000,
        in_window: 1000,
        ..FixedUsage::default()
    };
    let t = tenant_with("t1", dir, overloaded, 4096);
    let emergency = call("112", DestinationClass::Emergency);
    let national = call("0123", DestinationClass::National);
    for (name, wasm) in shipped::POLICIES {
        let policy = rt.load(World::Policy, wasm).unwrap();
        assert_eq!(
            rt.check_call(&policy, &t.caps, &emergency, &trunk_out("112")),
            Verdict::Allow,
            "{name}"
        );
    }
    let fraud = rt.load(World::Policy, shipped::DEFAULT_POLICY).unwrap();
    assert!(matches!(
        rt.check_call(&fraud, &t.caps, &national, &trunk_out("0123")),
        Verdict::Deny(_)
    ));
}

#[test]
fn default_policy_denies_excess_concurrency_and_call_rate() {
    let rt = runtime();
    let policy = rt.load(World::Policy, shipped::DEFAULT_POLICY).unwrap();
    let out = trunk_out("0123");
    let dir = Directory::new()
        .with_extension("100", "", true)
        .with_trunk("acme-carrier");

    let quiet = tenant_with("t1", dir.clone(), FixedUsage::default(), 4096);
    let national = call("0123", DestinationClass::National);
    assert_eq!(
        rt.check_call(&policy, &quiet.caps, &national, &out),
        Verdict::Allow
    );

    // The limit is the provider's configuration, bound by the host.
    let busy = FixedUsage {
        concurrent: 3,
        ..FixedUsage::default()
    };
    let limited = tenant_with("t3", dir.clone(), busy.clone(), 4096);
    let provider: crate::caps::ConfigMap =
        [("max-concurrent-calls".to_string(), "3".to_string())].into();
    let configured = limited
        .caps
        .with_config(Arc::new(crate::caps::LayeredConfig::new(
            Some(Arc::new(provider)),
            None,
        )));
    assert!(matches!(
        rt.check_call(&policy, &configured, &national, &out),
        Verdict::Deny(r) if r.contains("concurrent")
    ));
    // Below the limit (3 in progress, default 10) the call passes; what the
    // tenant's own storage says changes nothing.
    limited
        .caps
        .storage
        .set("max-concurrent-calls", b"1", Instant::now())
        .unwrap();
    limited
        .caps
        .storage
        .set("policy.max-concurrent-calls", b"1", Instant::now())
        .unwrap();
    assert_eq!(
        rt.check_call(&policy, &limited.caps, &national, &out),
        Verdict::Allow
    );
    // The unconfigured limit is the one `pbx_model::limits` documents.
    let default = model::limits::SHIPPED_POLICY_MAX_CONCURRENT;
    let under_default = tenant_with(
        "t7",
        dir.clone(),
        FixedUsage {
            concurrent: default - 1,
            ..FixedUsage::default()
        },
        4096,
    );
    assert_eq!(
        rt.check_call(&policy, &under_default.caps, &national, &out),
        Verdict::Allow
    );
    let at_default = tenant_with(
        "t5",
        dir.clone(),
        FixedUsage {
            concurrent: default,
            ..FixedUsage::default()
        },
        4096,
    );
    at_default
        .caps
        .storage
        .set("policy.max-concurrent-calls", b"1000000", Instant::now())
        .unwrap();
    assert!(matches!(
        rt.check_call(&policy, &at_default.caps, &national, &out),
        Verdict::Deny(r) if r.contains("concurrent")
    ));

    // 20 calls in the minute already: the 21st is denied, the 20th was not.
    let chatty = FixedUsage {
        in_window: 20,
        ..FixedUsage::default()
    };
    let rapid = tenant_with("t4", dir.clone(), chatty, 4096);
    assert!(matches!(
        rt.check_call(&policy, &rapid.caps, &national, &out),
        Verdict::Deny(r) if r.contains("calls in a minute")
    ));
    let steady = FixedUsage {
        in_window: 19,
        ..FixedUsage::default()
    };
    let fine = tenant_with("t6", dir, steady, 4096);
    assert_eq!(
        rt.check_call(&policy, &fine.caps, &national, &out),
        Verdict::Allow
    );
}

#[test]
fn repeated_failures_quarantine_the_plugin_for_that_tenant_only() {
    let rt = runtime_with(RuntimeConfig {
        quarantine_after: 3,
        max_instances: 4,
        ..config()
    });
    let t = acme();
    let other = tenant_with("other", Directory::new(), FixedUsage::default(), 0);
    let plan = rt.load(World::Dialplan, examples::TRAP).unwrap();
    let c = call("100", DestinationClass::Internal);
    for _ in 0..3 {
        assert!(matches!(
            rt.route(&plan, &t.caps, &c),
            Err(PluginError::Trap(_))
        ));
    }
    assert!(rt.is_quarantined(id_of("acme"), &plan));
    let err = rt.route(&plan, &t.caps, &c).unwrap_err();
    assert_eq!(err, PluginError::Quarantined);
    assert_eq!(err.sip_status(), 503);
    let alerts = t.alerts.all();
    assert!(
        alerts
            .iter()
            .any(|a| a.severity == model::Severity::Critical && a.message.contains("quarantined")),
        "{alerts:?}"
    );
    // Another tenant running the same plugin is not affected.
    assert!(matches!(
        rt.route(&plan, &other.caps, &c),
        Err(PluginError::Trap(_))
    ));
    rt.release_quarantine(id_of("acme"), &plan);
    assert!(!rt.is_quarantined(id_of("acme"), &plan));
    assert!(matches!(
        rt.route(&plan, &t.caps, &c),
        Err(PluginError::Trap(_))
    ));
}

#[test]
fn success_resets_the_failure_count() {
    let rt = runtime_with(RuntimeConfig {
        quarantine_after: 2,
        max_instances: 4,
        ..config()
    });
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::CROSS_TENANT).unwrap();
    let own = rt.load(World::Dialplan, examples::COUNTER).unwrap();
    assert!(
        rt.route(&plan, &t.caps, &call("ext", DestinationClass::Unknown))
            .is_err()
    );
    assert!(!rt.is_quarantined(id_of("acme"), &plan));
    // A different plugin's success does not reset this one's count.
    assert!(
        rt.route(&own, &t.caps, &call("100", DestinationClass::Internal))
            .is_ok()
    );
    assert!(
        rt.route(&plan, &t.caps, &call("ext", DestinationClass::Unknown))
            .is_err()
    );
    assert!(rt.is_quarantined(id_of("acme"), &plan));
}

#[test]
fn every_call_gets_a_fresh_instance_and_storage_persists() {
    let rt = runtime();
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::COUNTER).unwrap();
    for n in 1..=3 {
        let d = rt
            .route(&plan, &t.caps, &call("100", DestinationClass::Internal))
            .unwrap();
        assert_eq!(
            d,
            Decision::Reject(Reject {
                status: 480,
                reason: format!("1/{n}")
            })
        );
    }
}

#[test]
fn storage_quota_is_enforced_for_plugins() {
    let rt = runtime();
    // "count" plus one digit is 6 bytes: over a 5-byte quota.
    let t = tenant_with("tiny", Directory::new(), FixedUsage::default(), 5);
    let plan = rt.load(World::Dialplan, examples::COUNTER).unwrap();
    let d = rt
        .route(&plan, &t.caps, &call("100", DestinationClass::Internal))
        .unwrap();
    assert_eq!(
        d,
        Decision::Reject(Reject {
            status: 480,
            reason: "1/quota".into()
        })
    );
    assert_eq!(t.caps.storage.get("count"), None);
}

#[test]
fn wrong_world_calls_are_errors_and_loads_are_shared_by_hash() {
    let rt = runtime();
    let t = acme();
    let policy = rt.load(World::Policy, shipped::DEFAULT_POLICY).unwrap();
    assert_eq!(
        rt.route(&policy, &t.caps, &call("100", DestinationClass::Internal)),
        Err(PluginError::WrongWorld(World::Policy))
    );
    let again = rt.load(World::Policy, shipped::DEFAULT_POLICY).unwrap();
    assert!(Arc::ptr_eq(&policy, &again));
    assert_eq!(policy.hash().len(), 64);
    assert_eq!(policy.world(), World::Policy);
}

#[test]
fn compiled_artifacts_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        max_instances: 2,
        ..config()
    };
    let t = acme();
    {
        let rt = runtime_with(config.clone());
        rt.load(World::CallHandler, shipped::DEFAULT_DIALPLAN)
            .unwrap();
    }
    let files = walk(dir.path());
    assert!(files > 0, "nothing cached");
    let rt = runtime_with(config);
    let plan = rt
        .load(World::CallHandler, shipped::DEFAULT_DIALPLAN)
        .unwrap();
    let started = crate::handler::Event::CallStarted;
    assert!(
        rt.handle(
            &plan,
            &t.caps,
            &default_dialplan::call("100"),
            &[],
            &started
        )
        .is_ok()
    );
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { walk(&p) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_plugin_that_sleeps_traps_at_once_instead_of_holding_its_thread() {
    let rt = runtime_with(RuntimeConfig {
        deadline: Duration::from_millis(20),
        max_instances: 2,
        ..RuntimeConfig::default()
    });
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::SLEEP).unwrap();
    let started = Instant::now();
    let err = rt
        .route(&plan, &t.caps, &call("100", DestinationClass::Internal))
        .unwrap_err();
    // It asked for an hour; blocking host calls trap instead of waiting.
    assert!(
        matches!(&err, PluginError::Trap(m) if m.contains("would block")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_random_bomb_is_refused_without_allocating_it() {
    let rt = runtime();
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::RANDOM_BOMB).unwrap();
    let err = rt
        .route(&plan, &t.caps, &call("100", DestinationClass::Internal))
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Trap(m) if m.contains("exceeds limit 4096")),
        "{err:?}"
    );
}

#[test]
fn a_log_bomb_keeps_only_the_tenants_byte_budget() {
    let rt = runtime();
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::LOG_BOMB).unwrap();
    for _ in 0..8 {
        // Its stdout is full after 4 KiB, so the guest's `println!` fails.
        let _ = rt.route(&plan, &t.caps, &call("100", DestinationClass::Internal));
    }
    let lines = t.log.lines();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| l.message.capacity() <= 512),
        "a cut line kept its allocation"
    );
    assert!(t.log.bytes() <= 64 << 10, "{} bytes", t.log.bytes());
}

#[test]
fn components_over_the_per_instance_caps_are_refused_at_load() {
    let rt = runtime();
    // 100 is the most the binary format's parser accepts in one module.
    for memories in [3, 100] {
        let err = rt
            .load(
                World::Dialplan,
                &shipped::generated::many_memories(memories),
            )
            .unwrap_err();
        assert!(
            matches!(&err, ValidationError::NotAComponent(m) if m.contains("memor")),
            "{memories} memories: {err}"
        );
    }
}

#[test]
fn compile_bombs_are_refused_before_compiling() {
    let rt = runtime();
    for (locals, branches, cap) in [(5000, 10, "locals"), (2000, 2000, "product")] {
        let bomb = shipped::generated::compile_bomb(1, locals, branches);
        let started = Instant::now();
        let err = rt.load(World::Dialplan, &bomb).unwrap_err();
        assert!(
            matches!(&err, ValidationError::OverLimit(m) if m.contains(cap)),
            "{locals} x {branches}: {err}"
        );
        // Only that nothing compiled it (that would take seconds).
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn a_quarantine_ends_after_its_back_off_and_says_why() {
    let c = call("100", DestinationClass::Internal);
    let long = runtime_with(RuntimeConfig {
        quarantine_after: 2,
        max_instances: 2,
        ..config()
    });
    let t = acme();
    let plan = long.load(World::Dialplan, examples::TRAP).unwrap();
    for _ in 0..2 {
        assert!(long.route(&plan, &t.caps, &c).is_err());
    }
    let quarantines = long.quarantines();
    assert_eq!(quarantines.len(), 1, "{quarantines:?}");
    assert_eq!(quarantines[0].tenant, id_of("acme"));
    assert!(quarantines[0].reason.contains("trapped"), "{quarantines:?}");
    assert!(long.release_quarantine_of(id_of("acme"), plan.hash()));
    assert!(long.quarantines().is_empty());

    // A zero back-off lifts it at the next call, which runs the plugin again.
    let short = runtime_with(RuntimeConfig {
        quarantine_after: 2,
        quarantine_backoff: Duration::ZERO,
        max_instances: 2,
        ..config()
    });
    let t = acme();
    for _ in 0..3 {
        assert!(matches!(
            short.route(&plan_in(&short), &t.caps, &c),
            Err(PluginError::Trap(_))
        ));
    }
    assert!(
        t.alerts
            .all()
            .iter()
            .any(|a| a.message.contains("released")),
        "{:?}",
        t.alerts.all()
    );
}

fn plan_in(rt: &PluginRuntime) -> Arc<crate::LoadedPlugin> {
    rt.load(World::Dialplan, examples::TRAP).unwrap()
}

#[test]
fn a_decision_aliasing_one_big_string_is_refused_before_copying_it() {
    let rt = runtime();
    let t = acme();
    let plan = rt.load(World::Dialplan, examples::DECISION_BOMB).unwrap();
    // Copying its strings would take 50,000 × 1 MiB of host memory.
    let err = rt
        .route(&plan, &t.caps, &call("1", DestinationClass::Internal))
        .unwrap_err();
    // The lift stops at its byte bound (the guest's post-return frees the
    // decision, so it cannot be checked in guest memory after the call).
    assert!(matches!(err, PluginError::Trap(_)), "{err:?}");
}

/// The worked call-handler example (`pbx:plugin@0.2.0`) runs step by step:
/// business hours from the tenant's clock, the hunt group, the mobile.
mod call_handler {
    use super::*;
    use crate::caps::TenantClock;
    use crate::caps::clock::Instant as ClockInstant;
    use crate::handler::{Action, DialOut, DialResult, Event, HandlerCall, RingGroup};

    // 2026-12-02, a Wednesday: 10:00 and 20:00 in Paris (UTC+1).
    const WEDNESDAY_10H: i64 = 1_796_202_000;
    const WEDNESDAY_20H: i64 = WEDNESDAY_10H + 10 * 3600;

    fn at(unix: i64, holidays: &[(&str, &str)]) -> Tenant {
        let mut t = acme();
        t.caps.clock = Arc::new(
            TenantClock::new("Europe/Paris", holidays.iter().copied())
                .unwrap()
                .at(ClockInstant::Fixed(unix)),
        );
        t.caps
            .storage
            .set(
                "forward.mobile",
                b"+33612345678",
                Instant::now() + Duration::from_secs(1),
            )
            .unwrap();
        t
    }

    fn call(dialled: &str, step: u32) -> HandlerCall {
        HandlerCall {
            call_id: "c-1".into(),
            caller: "+15551230000".into(),
            caller_extension: None,
            dialled: dialled.into(),
            destination_class: DestinationClass::National,
            step,
        }
    }

    fn group() -> Action {
        Action::RingGroup(RingGroup {
            name: "sales".into(),
            timeout_secs: 20,
        })
    }

    fn mobile() -> Action {
        Action::DialOut(DialOut {
            trunk: "acme-carrier".into(),
            number: "+33612345678".into(),
            timeout_secs: 30,
        })
    }

    #[test]
    fn open_rings_the_group_then_the_mobile_then_finishes() {
        let rt = runtime();
        let plugin = rt.load(World::CallHandler, examples::OFFICE_HOURS).unwrap();
        let t = at(WEDNESDAY_10H, &[]);
        let first = rt
            .handle(&plugin, &t.caps, &call("0", 1), &[], &Event::CallStarted)
            .unwrap();
        assert_eq!(first.actions, [group()]);
        let second = rt
            .handle(
                &plugin,
                &t.caps,
                &call("0", 2),
                &first.state,
                &Event::DialEnded(DialResult::NoAnswer),
            )
            .unwrap();
        assert_eq!(second.actions, [mobile()]);
        let third = rt
            .handle(
                &plugin,
                &t.caps,
                &call("0", 3),
                &second.state,
                &Event::DialEnded(DialResult::Busy),
            )
            .unwrap();
        assert_eq!(third.actions, [Action::Finish]);
    }

    #[test]
    fn closed_and_holidays_go_to_the_mobile_tagged() {
        let rt = runtime();
        let plugin = rt.load(World::CallHandler, examples::OFFICE_HOURS).unwrap();
        for t in [
            at(WEDNESDAY_20H, &[]),
            at(WEDNESDAY_10H, &[("2026-12-02", "Company day")]),
        ] {
            let step = rt
                .handle(&plugin, &t.caps, &call("0", 1), &[], &Event::CallStarted)
                .unwrap();
            assert_eq!(step.actions, [Action::Tag("after-hours".into()), mobile()]);
        }
    }

    #[test]
    fn an_extension_rings_first_and_forwards_to_the_group() {
        let rt = runtime();
        let plugin = rt.load(World::CallHandler, examples::OFFICE_HOURS).unwrap();
        let t = at(WEDNESDAY_10H, &[]);
        let first = rt
            .handle(&plugin, &t.caps, &call("100", 1), &[], &Event::CallStarted)
            .unwrap();
        assert!(matches!(&first.actions[..], [Action::Ring(r)] if r.targets[0].extension == "100"));
        let second = rt
            .handle(
                &plugin,
                &t.caps,
                &call("100", 2),
                &first.state,
                &Event::DialEnded(DialResult::Busy),
            )
            .unwrap();
        assert_eq!(second.actions, [group()]);
    }

    #[test]
    fn a_call_handler_is_not_a_dial_plan_and_needs_its_world() {
        let rt = runtime();
        // It imports `clock`, which no dial plan may.
        assert!(matches!(
            rt.load(World::Dialplan, examples::OFFICE_HOURS),
            Err(ValidationError::ForbiddenImport(_))
        ));
        let plan = rt.load(World::Dialplan, examples::COUNTER).unwrap();
        let t = at(WEDNESDAY_10H, &[]);
        assert_eq!(
            rt.handle(&plan, &t.caps, &call("0", 1), &[], &Event::CallStarted),
            Err(PluginError::WrongWorld(World::Dialplan))
        );
        // A 0.1 dial plan cannot be loaded as a call handler either, nor the
        // shipped call handler as a 0.1 dial plan (it imports `features`).
        assert!(rt.load(World::CallHandler, examples::COUNTER).is_err());
        assert!(matches!(
            rt.load(World::Dialplan, shipped::DEFAULT_DIALPLAN),
            Err(ValidationError::ForbiddenImport(_))
        ));
    }
}

/// The shipped dial plan, a call handler (`pbx:plugin@0.2.0`), step by step:
/// what it routes, and each extension's forwarding and do-not-disturb read
/// (and, for feature codes, written) through `pbx:plugin/features`.
mod default_dialplan {
    use super::*;
    use crate::caps::Features;
    use crate::handler::{Action, DialOut, DialResult, Event, HandlerCall, RingGroup, Step};
    use model::Forwarding;

    fn tenant() -> Tenant {
        let dir = Directory::new()
            .with_extension("100", "Alice", true)
            .with_extension("101", "Bob", true)
            .with_extension("102", "Carol", false)
            .with_group("sales", &["101", "102"])
            .with_group("support", &["102"])
            .with_trunk("carrier");
        tenant_with("acme", dir, FixedUsage::default(), 4096)
    }

    /// A call from extension 100.
    pub(super) fn call(dialled: &str) -> HandlerCall {
        HandlerCall {
            call_id: "c-1".into(),
            caller: "100".into(),
            caller_extension: Some("100".into()),
            dialled: dialled.into(),
            destination_class: DestinationClass::Internal,
            step: 1,
        }
    }

    /// A call from outside, through a trunk.
    fn inbound(dialled: &str) -> HandlerCall {
        HandlerCall {
            caller: "+15551230000".into(),
            caller_extension: None,
            ..call(dialled)
        }
    }

    struct Plan {
        rt: PluginRuntime,
        plugin: Arc<crate::LoadedPlugin>,
        t: Tenant,
    }

    impl Plan {
        fn new(t: Tenant) -> Plan {
            let rt = runtime();
            let plugin = rt
                .load(World::CallHandler, shipped::DEFAULT_DIALPLAN)
                .unwrap();
            Plan { rt, plugin, t }
        }

        fn start(&self, call: &HandlerCall) -> Step {
            self.rt
                .handle(&self.plugin, &self.t.caps, call, &[], &Event::CallStarted)
                .unwrap()
        }

        /// The step after `last` ended with `result`.
        fn then(&self, call: &HandlerCall, last: &Step, result: DialResult) -> Step {
            self.rt
                .handle(
                    &self.plugin,
                    &self.t.caps,
                    call,
                    &last.state,
                    &Event::DialEnded(result),
                )
                .unwrap()
        }

        fn set(&self, ext: &str, settings: Forwarding) {
            self.t
                .features
                .set_forwarding(ext, &settings, Instant::now())
                .unwrap();
        }

        fn kv(&self, key: &str, value: &str) {
            self.t
                .caps
                .storage
                .set(key, value.as_bytes(), Instant::now())
                .unwrap();
        }
    }

    fn ring(ext: &str, secs: u32) -> Action {
        Action::Ring(Ring {
            targets: vec![RingTarget {
                extension: ext.into(),
                timeout_secs: secs,
            }],
            strategy: RingStrategy::Simultaneous,
        })
    }

    fn group(name: &str) -> Action {
        Action::RingGroup(RingGroup {
            name: name.into(),
            timeout_secs: 0,
        })
    }

    fn out(number: &str) -> Action {
        Action::DialOut(DialOut {
            trunk: "carrier".into(),
            number: number.into(),
            timeout_secs: 0,
        })
    }

    fn reject(status: u16, reason: &str) -> Action {
        Action::Reject(Reject {
            status,
            reason: reason.into(),
        })
    }

    fn always(target: &str) -> Forwarding {
        Forwarding {
            always: Some(target.into()),
            ..Forwarding::default()
        }
    }

    #[test]
    fn it_routes_what_the_dial_plan_before_it_routed() {
        let p = Plan::new(tenant());
        assert_eq!(p.start(&call("101")).actions, [ring("101", 20)]);
        assert_eq!(p.start(&call(" 101 ")).actions, [ring("101", 20)]);
        assert_eq!(p.start(&call("+4420123")).actions, [out("+4420123")]);
        assert_eq!(p.start(&call("0441234")).actions, [out("0441234")]);
        // `9` is the outside-line code: stripped before the trunk.
        assert_eq!(p.start(&call("9+4420123")).actions, [out("+4420123")]);
        assert_eq!(p.start(&call("95551234")).actions, [out("5551234")]);
        for not_a_number in ["9", "9abc", "0x12", "+", "555", ""] {
            assert_eq!(
                p.start(&call(not_a_number)).actions,
                [reject(404, "Not Found")],
                "{not_a_number:?}"
            );
        }
        // Groups by name, or by a number mapped in storage.
        assert_eq!(p.start(&call("sales")).actions, [group("sales")]);
        p.kv("group:600", "sales");
        assert_eq!(p.start(&call("600")).actions, [group("sales")]);
        p.kv("group:601", "other-sales");
        assert_eq!(
            p.start(&call("601")).actions,
            [reject(404, "Not Found")],
            "a mapping to a group the tenant does not have"
        );
        // Calls from outside go where `did:` says, never straight out a trunk.
        assert_eq!(
            p.start(&inbound("+15550001")).actions,
            [reject(404, "Not Found")]
        );
        p.kv("did:+15550001", "101");
        p.kv("did:+15550002", "support");
        p.kv("did:+15550003", "9999");
        assert_eq!(p.start(&inbound("+15550001")).actions, [ring("101", 20)]);
        assert_eq!(p.start(&inbound("+15550002")).actions, [group("support")]);
        assert_eq!(
            p.start(&inbound("+15550003")).actions,
            [reject(404, "Not Found")]
        );
        assert_eq!(p.start(&inbound("101")).actions, [reject(404, "Not Found")]);

        let no_trunks = Plan::new(tenant_with(
            "small",
            Directory::new().with_extension("100", "", true),
            FixedUsage::default(),
            0,
        ));
        assert_eq!(
            no_trunks.start(&call("0800")).actions,
            [reject(403, "No Outbound Route")]
        );
        // After an attempt without a forward, the call ends with its outcome.
        let rang = p.start(&call("101"));
        assert_eq!(
            p.then(&call("101"), &rang, DialResult::Busy).actions,
            [Action::Finish]
        );
    }

    #[test]
    fn unconditional_forwards_and_dnd_are_followed_within_one_step() {
        let p = Plan::new(tenant());
        p.set("101", always("102"));
        assert_eq!(p.start(&call("101")).actions, [ring("102", 20)]);
        // A chain is followed as far as needed: 101 → 102 → the sales group.
        p.set("102", always("sales"));
        assert_eq!(p.start(&call("101")).actions, [group("sales")]);
        // A number goes out the first trunk as written.
        p.set("102", always("+12125550100"));
        assert_eq!(p.start(&call("101")).actions, [out("+12125550100")]);
        // Calls from outside follow forwards too.
        p.kv("did:+15550001", "101");
        assert_eq!(
            p.start(&inbound("+15550001")).actions,
            [out("+12125550100")]
        );
        // A target that is nothing of the tenant's is ignored: 101 rings.
        p.set("101", always("nowhere"));
        assert_eq!(p.start(&call("101")).actions, [ring("101", 20)]);
        assert!(
            p.t.log
                .lines()
                .iter()
                .any(|l| l.message.contains("nowhere")),
            "{:?}",
            p.t.log.lines()
        );

        // Do not disturb: not rung; the busy forward, else 486.
        p.set(
            "101",
            Forwarding {
                dnd: true,
                busy: Some("102".into()),
                ..Forwarding::default()
            },
        );
        p.set("102", Forwarding::default());
        assert_eq!(p.start(&call("101")).actions, [ring("102", 20)]);
        p.set(
            "101",
            Forwarding {
                dnd: true,
                ..Forwarding::default()
            },
        );
        assert_eq!(p.start(&call("101")).actions, [reject(486, "Busy Here")]);
        // `always` comes before do-not-disturb.
        p.set(
            "101",
            Forwarding {
                dnd: true,
                always: Some("support".into()),
                ..Forwarding::default()
            },
        );
        assert_eq!(p.start(&call("101")).actions, [group("support")]);
    }

    #[test]
    fn busy_and_no_answer_forwards_follow_the_attempts_outcome() {
        let p = Plan::new(tenant());
        p.set(
            "101",
            Forwarding {
                busy: Some("102".into()),
                no_answer: Some("+12125550100".into()),
                no_answer_secs: 7,
                ..Forwarding::default()
            },
        );
        let c = call("101");
        // With a no-answer forward, 101 rings for its own time.
        let first = p.start(&c);
        assert_eq!(first.actions, [ring("101", 7)]);
        let busy = p.then(&c, &first, DialResult::Busy);
        assert_eq!(busy.actions, [ring("102", 20)]);
        // 102 has no forward: unanswered, its voicemail; busy or nothing
        // registered, the call ends with that outcome.
        assert_eq!(
            p.then(&c, &busy, DialResult::NoAnswer).actions,
            [Action::Voicemail("102".into())]
        );
        for kept in [DialResult::Busy, DialResult::Unavailable] {
            assert_eq!(p.then(&c, &busy, kept).actions, [Action::Finish]);
        }
        for nobody in [DialResult::NoAnswer, DialResult::Unavailable] {
            assert_eq!(p.then(&c, &first, nobody).actions, [out("+12125550100")]);
        }
        for other in [
            DialResult::Rejected(603),
            DialResult::Cancelled,
            DialResult::AnsweredAndEnded,
        ] {
            assert_eq!(p.then(&c, &first, other).actions, [Action::Finish]);
        }
        // A trunk leg that fails ends the call.
        let out_leg = p.then(&c, &first, DialResult::NoAnswer);
        assert_eq!(
            p.then(&c, &out_leg, DialResult::Busy).actions,
            [Action::Finish]
        );
        // State the plan cannot read ends the call rather than guess.
        let garbage = Step {
            actions: Vec::new(),
            state: vec![0xff, 0x00],
        };
        assert_eq!(
            p.then(&c, &garbage, DialResult::Busy).actions,
            [Action::Finish]
        );
    }

    #[test]
    fn loops_and_overlong_chains_end_with_482() {
        let p = Plan::new(tenant());
        // Within one step: 101 → 102 → 101.
        p.set("101", always("102"));
        p.set("102", always("101"));
        assert_eq!(
            p.start(&call("101")).actions,
            [reject(482, "Loop Detected")]
        );
        // Across steps: 101 does not answer → 102, which is busy → 101.
        p.set(
            "101",
            Forwarding {
                no_answer: Some("102".into()),
                ..Forwarding::default()
            },
        );
        p.set(
            "102",
            Forwarding {
                busy: Some("101".into()),
                ..Forwarding::default()
            },
        );
        let c = call("101");
        let first = p.start(&c);
        let second = p.then(&c, &first, DialResult::NoAnswer);
        assert_eq!(second.actions, [ring("102", 20)]);
        assert_eq!(
            p.then(&c, &second, DialResult::Busy).actions,
            [reject(482, "Loop Detected")]
        );

        // Eleven extensions forwarding each to the next: past ten, the chain
        // ends like a loop, and the state stays small on the way.
        let mut dir = Directory::new();
        for n in 200..=211 {
            dir = dir.with_extension(&n.to_string(), "", true);
        }
        let long = Plan::new(tenant_with("other", dir, FixedUsage::default(), 4096));
        for n in 200..211 {
            long.set(&n.to_string(), always(&(n + 1).to_string()));
        }
        assert_eq!(
            long.start(&call("202")).actions,
            [ring("211", 20)],
            "nine hops are fine"
        );
        assert!(long.start(&call("202")).state.len() < 200);
        assert_eq!(
            long.start(&call("200")).actions,
            [reject(482, "Loop Detected")]
        );
    }

    #[test]
    fn an_unanswered_group_fails_over_where_storage_says() {
        let p = Plan::new(tenant());
        let c = call("sales");
        let rang = p.start(&c);
        assert_eq!(rang.actions, [group("sales")]);
        // No failover: the call ends with the group's outcome.
        assert_eq!(
            p.then(&c, &rang, DialResult::NoAnswer).actions,
            [Action::Finish]
        );
        p.kv("failover:sales", "100");
        for unanswered in [
            DialResult::Busy,
            DialResult::NoAnswer,
            DialResult::Unavailable,
            DialResult::Rejected(480),
        ] {
            assert_eq!(p.then(&c, &rang, unanswered).actions, [ring("100", 20)]);
        }
        assert_eq!(
            p.then(&c, &rang, DialResult::Cancelled).actions,
            [Action::Finish]
        );
        // Another group, then a number out the trunk.
        p.kv("failover:sales", "support");
        p.kv("failover:support", "+12125550100");
        let second = p.then(&c, &rang, DialResult::NoAnswer);
        assert_eq!(second.actions, [group("support")]);
        assert_eq!(
            p.then(&c, &second, DialResult::Busy).actions,
            [out("+12125550100")]
        );
        // Groups failing over to each other loop.
        p.kv("failover:support", "sales");
        assert_eq!(
            p.then(&c, &second, DialResult::Busy).actions,
            [reject(482, "Loop Detected")]
        );
    }

    #[test]
    fn feature_codes_set_the_calling_extensions_forwarding() {
        let p = Plan::new(tenant());
        let confirmed = [Action::Answer, Action::HangUp];
        assert_eq!(p.start(&call("*72102")).actions, confirmed);
        assert_eq!(p.t.features.forwarding("100"), always("102"));
        assert_eq!(p.start(&call("100")).actions, [ring("102", 20)]);
        assert_eq!(p.start(&call("*78")).actions, confirmed);
        assert_eq!(
            p.t.features.forwarding("100"),
            Forwarding {
                dnd: true,
                ..always("102")
            }
        );
        assert_eq!(p.start(&call("*73")).actions, confirmed);
        assert_eq!(
            p.t.features.forwarding("100"),
            Forwarding {
                dnd: true,
                ..Forwarding::default()
            }
        );
        assert_eq!(p.start(&call("*79")).actions, confirmed);
        assert_eq!(p.t.features.forwarding("100"), Forwarding::default());

        // Bad codes and targets the host refuses: 404, nothing changes.
        p.set("100", always("sales"));
        for bad in [
            "*72",
            "*72100",
            "*72a-b",
            "*72sip:x@y",
            "*7",
            "*99",
            "*",
            "*7899",
        ] {
            assert_eq!(
                p.start(&call(bad)).actions,
                [reject(404, "Not Found")],
                "{bad}"
            );
        }
        assert_eq!(p.t.features.forwarding("100"), always("sales"));
        // Only a calling extension of the tenant's own has features: a caller
        // the directory does not know, or a call from outside, changes nothing.
        let stranger = HandlerCall {
            caller_extension: Some("999".into()),
            ..call("*78")
        };
        assert_eq!(p.start(&stranger).actions, [reject(404, "Not Found")]);
        assert_eq!(p.t.features.forwarding("999"), Forwarding::default());
        assert_eq!(p.start(&inbound("*78")).actions, [reject(404, "Not Found")]);
    }
}
