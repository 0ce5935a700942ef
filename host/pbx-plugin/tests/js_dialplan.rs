//! The JavaScript example dial plan (`plugins/examples/js-dialplan`, built by
//! its `build.sh` with componentize-js) loaded and run like any tenant upload.
//!
//! Without `dist/dialplan.wasm` the test prints a notice and passes, unless
//! `PBX_REQUIRE_JS_PLUGIN=1` is set (as in CI), when a missing file fails it.

mod common;

use std::sync::Arc;

use pbx_plugin::{
    Call, Decision, DestinationClass, Directory, PluginLog, Reject, RingStrategy, TrunkRoute, World,
};

use common::{caps, js_component, runtime};

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
    let Some(wasm) = js_component("js-dialplan", "dialplan.wasm") else {
        return;
    };
    let runtime = runtime();
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
