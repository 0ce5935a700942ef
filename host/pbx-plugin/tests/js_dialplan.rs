//! The JavaScript example dial plan (`plugins/examples/js-dialplan`, built by
//! its `build.sh` with componentize-js) loaded and run like any tenant upload.
//!
//! Without `dist/dialplan.wasm` the test prints a notice and passes, unless
//! `PBX_REQUIRE_JS_PLUGIN=1` is set (as in CI), when a missing file fails it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pbx_plugin::{
    Call, Decision, DestinationClass, Directory, FixedUsage, MemoryAlerts, MemoryStorage,
    PluginLog, PluginRuntime, Reject, RingStrategy, RuntimeConfig, TenantCaps, TrunkRoute, World,
};

fn wasm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/examples/js-dialplan/dist/dialplan.wasm")
}

/// The built component, or `None` (with a notice) when it is absent and not
/// required.
fn component() -> Option<Vec<u8>> {
    let path = wasm_path();
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            let required = std::env::var("PBX_REQUIRE_JS_PLUGIN").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "PBX_REQUIRE_JS_PLUGIN=1 but {} cannot be read ({e}); run \
                 plugins/examples/js-dialplan/build.sh first",
                path.display()
            );
            eprintln!(
                "skipping the JavaScript dial plan test: {} not found ({e}); \
                 build it with plugins/examples/js-dialplan/build.sh",
                path.display()
            );
            None
        }
    }
}

fn caps(directory: Directory, log: &Arc<PluginLog>) -> TenantCaps {
    TenantCaps {
        tenant: model::TenantId(1),
        directory: Arc::new(directory),
        storage: Arc::new(MemoryStorage::new(4096)),
        usage: Arc::new(FixedUsage::default()),
        alerts: Arc::new(MemoryAlerts::default()),
        log: Arc::clone(log),
        config: Arc::new(pbx_plugin::EmptyConfig),
        clock: Arc::new(pbx_plugin::TenantClock::utc()),
        call_info: Arc::new(pbx_plugin::CallInfo::default()),
        features: Arc::new(pbx_plugin::MemoryFeatures::default()),
    }
}

fn call(dialled: &str) -> Call {
    Call {
        call_id: "js@host".into(),
        caller: "100".into(),
        caller_extension: Some("100".into()),
        dialled: dialled.into(),
        destination_class: DestinationClass::Unknown,
    }
}

#[test]
fn javascript_dial_plan_routes_like_its_source_says() {
    let Some(wasm) = component() else {
        return;
    };
    let runtime = PluginRuntime::new(RuntimeConfig {
        // Generous for a loaded test machine; the first instance maps a
        // multi-megabyte engine snapshot.
        deadline: Duration::from_secs(2),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let plan = runtime
        .load(World::Dialplan, &wasm)
        .expect("the JavaScript component loads under the default limits");

    let log = Arc::new(PluginLog::default());
    let acme = caps(
        Directory::new()
            .with_extension("100", "Alice", true)
            .with_extension("101", "Bob", false)
            .with_group("sales", &["100", "101"])
            .with_trunk("acme-carrier")
            .with_trunk("backup-carrier"),
        &log,
    );

    let Decision::Ring(ring) = runtime.route(&plan, &acme, &call(" 101 ")).unwrap() else {
        panic!("an own extension rings");
    };
    assert_eq!(ring.targets.len(), 1);
    assert_eq!(ring.targets[0].extension, "101");
    assert_eq!(ring.targets[0].timeout_secs, 25);
    assert_eq!(ring.strategy, RingStrategy::Simultaneous);

    assert_eq!(
        runtime.route(&plan, &acme, &call("sales")).unwrap(),
        Decision::RingGroup("sales".into())
    );
    assert_eq!(
        runtime.route(&plan, &acme, &call("9+4420123")).unwrap(),
        Decision::Trunk(TrunkRoute {
            trunk: "acme-carrier".into(),
            number: "+4420123".into(),
        })
    );
    assert_eq!(
        runtime.route(&plan, &acme, &call("555")).unwrap(),
        Decision::Reject(Reject {
            status: 404,
            reason: "Not Found".into(),
        })
    );
    assert!(
        log.lines()
            .iter()
            .any(|l| l.message.contains("no route for 555")),
        "the plan's log line reaches the tenant log"
    );

    let no_trunk = caps(Directory::new().with_extension("100", "", true), &log);
    assert_eq!(
        runtime.route(&plan, &no_trunk, &call("90123")).unwrap(),
        Decision::Reject(Reject {
            status: 403,
            reason: "No Outbound Route".into(),
        })
    );
}
