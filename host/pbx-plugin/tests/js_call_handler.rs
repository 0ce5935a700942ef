//! The JavaScript example call handler (`plugins/examples/js-call-handler`,
//! `pbx:plugin@0.2.0`, built by its `build.sh` with componentize-js) loaded
//! like a tenant's upload and driven step by step, as the host drives a call:
//! the same job as the Rust worked example (`office-hours`), so both guest
//! languages prove the contract.
//!
//! Without `dist/call-handler.wasm` the tests print a notice and pass, unless
//! `PBX_REQUIRE_JS_PLUGIN=1` is set (as in CI), when a missing file fails them.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pbx_plugin::caps::clock::Instant as ClockInstant;
use pbx_plugin::handler::{self, Action, DialOut, DialResult, Event, HandlerCall, RingGroup, Step};
use pbx_plugin::{
    DestinationClass, Directory, LoadedPlugin, PluginLog, PluginRuntime, RingStrategy, TenantCaps,
    TenantClock, World,
};

use common::{caps, js_component, runtime};

// 2026-12-02, a Wednesday: 10:00 and 20:00 in Paris (UTC+1).
const WEDNESDAY_10H: i64 = 1_796_202_000;
const WEDNESDAY_20H: i64 = WEDNESDAY_10H + 10 * 3600;
// 2026-12-05, the Saturday after, 10:00 in Paris.
const SATURDAY_10H: i64 = WEDNESDAY_10H + 3 * 86_400;

const MOBILE: &str = "+33612345678";

/// One runtime and the loaded component for every test of this file (compiling
/// the engine takes seconds), or `None` when the component is not built.
fn handler() -> Option<&'static (PluginRuntime, Arc<LoadedPlugin>)> {
    static LOADED: OnceLock<Option<(PluginRuntime, Arc<LoadedPlugin>)>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let wasm = js_component("js-call-handler", "call-handler.wasm")?;
            // The world of a tenant's dial plan slot is read from its exports.
            let world = handler::dial_plan_world(&wasm);
            assert_eq!(world, World::CallHandler, "the component exports `handle`");
            let runtime = runtime();
            let plugin = runtime
                .load(world, &wasm)
                .expect("the JavaScript call handler loads under the default limits");
            Some((runtime, plugin))
        })
        .as_ref()
}

/// Acme at `unix` in Paris (with `holidays`) and `storage` set; its first
/// trunk is `acme-carrier`.
fn acme(unix: i64, holidays: &[(&str, &str)], storage: &[(&str, &str)]) -> TenantCaps {
    acme_with(
        Directory::new()
            .with_extension("100", "Alice", true)
            .with_extension("101", "Bob", false)
            .with_group("sales", &["100", "101"])
            .with_trunk("acme-carrier")
            .with_trunk("backup-carrier"),
        unix,
        holidays,
        storage,
    )
}

fn acme_with(
    directory: Directory,
    unix: i64,
    holidays: &[(&str, &str)],
    storage: &[(&str, &str)],
) -> TenantCaps {
    let mut caps = caps(directory, &Arc::new(PluginLog::default()));
    caps.clock = Arc::new(
        TenantClock::new("Europe/Paris", holidays.iter().copied())
            .expect("a known zone")
            .at(ClockInstant::Fixed(unix)),
    );
    let until = Instant::now() + Duration::from_secs(1);
    for (key, value) in storage {
        caps.storage
            .set(key, value.as_bytes(), until)
            .expect("within quota");
    }
    caps
}

/// A caller from outside, at `step` of the call.
fn call(dialled: &str, step: u32) -> HandlerCall {
    HandlerCall {
        call_id: "js-handler@host".into(),
        caller: "+15551230000".into(),
        caller_extension: None,
        dialled: dialled.into(),
        destination_class: DestinationClass::National,
        step,
    }
}

/// Runs one step of `dialled`'s call.
fn step(
    (runtime, plugin): &(PluginRuntime, Arc<LoadedPlugin>),
    caps: &TenantCaps,
    dialled: &str,
    n: u32,
    state: &[u8],
    event: Event,
) -> Step {
    runtime
        .handle(plugin, caps, &call(dialled, n), state, &event)
        .unwrap_or_else(|e| panic!("step {n} ({event:?}) of a call to {dialled}: {e}"))
}

fn ended(result: DialResult) -> Event {
    Event::DialEnded(result)
}

fn group(secs: u32) -> Action {
    Action::RingGroup(RingGroup {
        name: "sales".into(),
        timeout_secs: secs,
    })
}

fn mobile() -> Action {
    Action::DialOut(DialOut {
        trunk: "acme-carrier".into(),
        number: MOBILE.into(),
        timeout_secs: 30,
    })
}

fn after_hours() -> Action {
    Action::Tag("after-hours".into())
}

#[test]
fn an_extension_rings_then_the_group_then_the_mobile_with_the_state_carried() {
    let Some(js) = handler() else {
        return;
    };
    let acme = acme(WEDNESDAY_10H, &[], &[("forward.mobile", MOBILE)]);

    let first = step(js, &acme, "101", 1, &[], Event::CallStarted);
    let [Action::Ring(ring)] = &first.actions[..] else {
        panic!("an own extension rings: {:?}", first.actions);
    };
    assert_eq!(ring.targets.len(), 1);
    assert_eq!(ring.targets[0].extension, "101");
    assert_eq!(ring.targets[0].timeout_secs, 20);
    assert_eq!(ring.strategy, RingStrategy::Simultaneous);
    assert_eq!(first.state, b"extension");

    let second = step(js, &acme, "101", 2, &first.state, ended(DialResult::Busy));
    assert_eq!(second.actions, [group(20)]);
    assert_eq!(second.state, b"group");

    let third = step(
        js,
        &acme,
        "101",
        3,
        &second.state,
        ended(DialResult::NoAnswer),
    );
    assert_eq!(third.actions, [mobile()]);
    assert_eq!(third.state, b"mobile");

    let fourth = step(
        js,
        &acme,
        "101",
        4,
        &third.state,
        ended(DialResult::NoAnswer),
    );
    assert_eq!(fourth.actions, [Action::Finish]);
    assert_eq!(fourth.state, b"");
}

#[test]
fn the_next_attempt_follows_the_state_handed_back() {
    let Some(js) = handler() else {
        return;
    };
    let acme = acme(
        WEDNESDAY_10H,
        &[],
        &[("forward.mobile", MOBILE), ("ring.secs", "45")],
    );
    // Each step runs in a fresh instance: only the state says where the call is.
    for result in [
        DialResult::Busy,
        DialResult::NoAnswer,
        DialResult::Unavailable,
        DialResult::Rejected(603),
    ] {
        let next = step(js, &acme, "100", 2, b"extension", ended(result));
        assert_eq!(next.actions, [group(45)], "after the extension: {result:?}");
        let next = step(js, &acme, "100", 3, b"group", ended(result));
        assert_eq!(next.actions, [mobile()], "after the group: {result:?}");
    }
    // Nothing to go on, or a caller who gave up: the call ends.
    for (state, event) in [
        (&b""[..], ended(DialResult::Busy)),
        (&b"\xff\xfe"[..], ended(DialResult::Busy)),
        (&b"somewhere"[..], ended(DialResult::NoAnswer)),
        (&b"extension"[..], ended(DialResult::Cancelled)),
        (&b"group"[..], Event::CallerHungUp),
    ] {
        let next = step(js, &acme, "100", 2, state, event.clone());
        assert_eq!(next.actions, [Action::Finish], "{state:?} then {event:?}");
        assert_eq!(next.state, b"");
    }
}

#[test]
fn the_company_number_rings_the_group_in_business_hours() {
    let Some(js) = handler() else {
        return;
    };
    let open = acme(WEDNESDAY_10H, &[], &[("forward.mobile", MOBILE)]);
    let first = step(js, &open, "0", 1, &[], Event::CallStarted);
    assert_eq!(first.actions, [group(20)]);
    assert_eq!(first.state, b"group");
    let second = step(js, &open, "0", 2, &first.state, ended(DialResult::NoAnswer));
    assert_eq!(second.actions, [mobile()]);

    // Open on Saturdays when the tenant says so.
    let weekends = acme(
        SATURDAY_10H,
        &[],
        &[("forward.mobile", MOBILE), ("hours.weekends", "1")],
    );
    assert_eq!(
        step(js, &weekends, "0", 1, &[], Event::CallStarted).actions,
        [group(20)]
    );
}

#[test]
fn out_of_hours_the_call_goes_to_the_mobile_tagged() {
    let Some(js) = handler() else {
        return;
    };
    let storage = [("forward.mobile", MOBILE)];
    for (when, caps) in [
        ("evening", acme(WEDNESDAY_20H, &[], &storage)),
        (
            "holiday",
            acme(WEDNESDAY_10H, &[("2026-12-02", "Company day")], &storage),
        ),
        ("weekend", acme(SATURDAY_10H, &[], &storage)),
        (
            "closing at 10",
            acme(
                WEDNESDAY_10H,
                &[],
                &[("forward.mobile", MOBILE), ("hours.close", "10")],
            ),
        ),
    ] {
        let first = step(js, &caps, "0", 1, &[], Event::CallStarted);
        assert_eq!(first.actions, [after_hours(), mobile()], "{when}");
        assert_eq!(first.state, b"mobile", "{when}");
        let second = step(js, &caps, "0", 2, &first.state, ended(DialResult::Busy));
        assert_eq!(second.actions, [Action::Finish], "{when}");
    }
    // An extension still rings out of hours.
    let evening = acme(WEDNESDAY_20H, &[], &storage);
    let first = step(js, &evening, "100", 1, &[], Event::CallStarted);
    assert!(
        matches!(&first.actions[..], [Action::Ring(r)] if r.targets[0].extension == "100"),
        "{:?}",
        first.actions
    );
}

#[test]
fn without_a_mobile_a_trunk_or_the_group_the_call_finishes_sooner() {
    let Some(js) = handler() else {
        return;
    };
    // No mobile number: out of hours, the tag and the end.
    let no_mobile = acme(WEDNESDAY_20H, &[], &[]);
    let first = step(js, &no_mobile, "0", 1, &[], Event::CallStarted);
    assert_eq!(first.actions, [after_hours(), Action::Finish]);
    assert_eq!(first.state, b"");
    let after_group = step(js, &no_mobile, "0", 2, b"group", ended(DialResult::Busy));
    assert_eq!(after_group.actions, [Action::Finish]);

    // No trunk: the same.
    let no_trunk = acme_with(
        Directory::new()
            .with_extension("100", "Alice", true)
            .with_group("sales", &["100"]),
        WEDNESDAY_20H,
        &[],
        &[("forward.mobile", MOBILE)],
    );
    let first = step(js, &no_trunk, "0", 1, &[], Event::CallStarted);
    assert_eq!(first.actions, [after_hours(), Action::Finish]);

    // No `sales` group: in business hours, straight to the mobile, untagged.
    let no_group = acme_with(
        Directory::new()
            .with_extension("100", "Alice", true)
            .with_trunk("acme-carrier"),
        WEDNESDAY_10H,
        &[],
        &[("forward.mobile", MOBILE)],
    );
    let first = step(js, &no_group, "0", 1, &[], Event::CallStarted);
    assert_eq!(first.actions, [mobile()]);
    assert_eq!(first.state, b"mobile");
}
