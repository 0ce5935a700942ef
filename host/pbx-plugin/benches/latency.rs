//! Per-call latency of the plugin part of the call path, as percentiles:
//! instantiate + the first step of the default dial plan (a call handler:
//! `handle` at call start; labelled `route`, the decision it makes), then
//! instantiate + `check-call` of the restrictions policy, timed one call at a
//! time; then the same with the fraud policy's `check-call` too (the whole
//! shipped set). Target: p99 under 50 µs for instantiate + route + one
//! check-call.
//!
//! Run with `cargo bench -p pbx-plugin --bench latency`; it prints p50, p90,
//! p99, p99.9 and the maximum over 20 000 calls after 2 000 warm-up calls.
//! `cargo bench -p pbx-plugin --bench latency -- <samples>` changes the count.
//! When `plugins/examples/js-dialplan/dist/dialplan.wasm` has been built, the
//! JavaScript dial plan's `route` is measured too (a tenth of the samples).
//! Last, a three-step call through the worked call handler
//! (`pbx:plugin@0.2.0`, `office-hours`): call started, the extension busy, the
//! group unanswered; each step timed on its own, then the three together.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_plugin::{
    Call, Decision, DestinationClass, Directory, FixedUsage, MemoryAlerts, MemoryStorage,
    PluginLog, PluginRuntime, RuntimeConfig, TenantCaps, Verdict, World, shipped,
};

const DEFAULT_SAMPLES: usize = 20_000;
const WARM_UP: usize = 2_000;

fn caps() -> TenantCaps {
    TenantCaps {
        tenant: model::TenantId(1),
        directory: Arc::new(
            Directory::new()
                .with_extension("100", "Alice", true)
                .with_extension("101", "Bob", true)
                .with_group("sales", &["100", "101"])
                .with_trunk("carrier"),
        ),
        storage: Arc::new(MemoryStorage::new(4096)),
        usage: Arc::new(FixedUsage::default()),
        alerts: Arc::new(MemoryAlerts::default()),
        log: Arc::new(PluginLog::default()),
        config: Arc::new(pbx_plugin::EmptyConfig),
        clock: Arc::new(pbx_plugin::TenantClock::utc()),
        call_info: Arc::new(pbx_plugin::CallInfo::default()),
        features: Arc::new(pbx_plugin::MemoryFeatures::default()),
    }
}

fn report(name: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e6
    };
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / samples.len() as f64;
    println!(
        "{name:<32} n={:<6} mean {mean:7.1} µs  p50 {:7.1}  p90 {:7.1}  p99 {:7.1}  p99.9 {:7.1}  max {:8.1}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0),
    );
}

/// Time `f` `n` times after a warm-up, one sample per call.
fn measure(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..WARM_UP {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f();
        samples.push(start.elapsed());
    }
    samples
}

fn main() {
    // `cargo bench` passes `--bench`; the first number given is the sample count.
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_SAMPLES)
        .max(1);
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("runtime");
    let plan = runtime
        .load(World::CallHandler, shipped::DEFAULT_DIALPLAN)
        .expect("dial plan");
    let policy = runtime
        .load(World::Policy, shipped::RESTRICTIONS)
        .expect("restrictions");
    let fraud = runtime
        .load(World::Policy, shipped::DEFAULT_POLICY)
        .expect("fraud policy");
    let caps = caps();
    let call = Call {
        call_id: "bench@host".into(),
        caller: "100".into(),
        caller_extension: Some("100".into()),
        dialled: "101".into(),
        destination_class: DestinationClass::Internal,
    };
    // The default dial plan's decision at call start: its first step.
    let route = |call: &Call| -> Decision {
        use pbx_plugin::handler::{Action, Event, HandlerCall};
        let handler_call = HandlerCall {
            call_id: call.call_id.clone(),
            caller: call.caller.clone(),
            caller_extension: call.caller_extension.clone(),
            dialled: call.dialled.clone(),
            destination_class: call.destination_class,
            step: 1,
        };
        let step = runtime
            .handle(&plan, &caps, &handler_call, &[], &Event::CallStarted)
            .expect("route");
        match step.actions.into_iter().next() {
            Some(Action::Ring(ring)) => Decision::Ring(ring),
            other => panic!("the default dial plan rings an extension, not {other:?}"),
        }
    };
    let decision = route(&call);

    let mut route_only = measure(n, || {
        black_box(route(black_box(&call)));
    });
    report("route", &mut route_only);
    let mut check = measure(n, || {
        let verdict = runtime.check_call(&policy, &caps, black_box(&call), &decision);
        assert_eq!(verdict, Verdict::Allow);
    });
    report("check_call", &mut check);
    let mut both = measure(n, || {
        let decision = route(black_box(&call));
        let verdict = runtime.check_call(&policy, &caps, &call, &decision);
        assert_eq!(verdict, Verdict::Allow);
    });
    report("route + check_call", &mut both);
    let mut all = measure(n, || {
        let decision = route(black_box(&call));
        for policy in [&policy, &fraud] {
            let verdict = runtime.check_call(policy, &caps, &call, &decision);
            assert_eq!(verdict, Verdict::Allow);
        }
    });
    report("route + 2 × check_call", &mut all);

    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/examples/js-dialplan/dist/dialplan.wasm");
    if let Ok(wasm) = std::fs::read(&js) {
        let plan = runtime.load(World::Dialplan, &wasm).expect("js dial plan");
        let mut route = measure((n / 10).max(1), || {
            black_box(
                runtime
                    .route(&plan, &caps, black_box(&call))
                    .expect("route"),
            );
        });
        report("route (JavaScript)", &mut route);
    }

    three_step_call(&runtime, &caps, n);
}

/// Steps of one call through the office-hours call handler, timed one by one.
fn three_step_call(runtime: &PluginRuntime, caps: &TenantCaps, n: usize) {
    use pbx_plugin::handler::{Action, DialResult, Event, HandlerCall};
    use pbx_plugin::shipped::examples;

    let handler = runtime
        .load(World::CallHandler, examples::OFFICE_HOURS)
        .expect("call handler");
    let storage_write = std::time::Instant::now() + Duration::from_secs(1);
    caps.storage
        .set("forward.mobile", b"+12125550100", storage_write)
        .expect("storage");
    let call = |step| HandlerCall {
        call_id: "bench@host".into(),
        caller: "100".into(),
        caller_extension: Some("100".into()),
        dialled: "101".into(),
        destination_class: DestinationClass::Internal,
        step,
    };
    let events = [
        Event::CallStarted,
        Event::DialEnded(DialResult::Busy),
        Event::DialEnded(DialResult::NoAnswer),
    ];
    let mut per_step: [Vec<Duration>; 3] = Default::default();
    let mut whole = Vec::with_capacity(n);
    for i in 0..WARM_UP + n {
        let started = Instant::now();
        let mut state = Vec::new();
        for (k, event) in events.iter().enumerate() {
            let at = Instant::now();
            let step = runtime
                .handle(&handler, caps, &call(k as u32 + 1), &state, event)
                .expect("step");
            if i >= WARM_UP {
                per_step[k].push(at.elapsed());
            }
            state = step.state;
            black_box(&step.actions);
        }
        if i >= WARM_UP {
            whole.push(started.elapsed());
        }
    }
    let last = runtime
        .handle(&handler, caps, &call(3), b"group", &events[2])
        .expect("step");
    assert!(
        matches!(&last.actions[..], [Action::DialOut(_)]),
        "{last:?}"
    );
    for (k, name) in [
        "handle: call-started",
        "handle: dial-ended (busy)",
        "handle: dial-ended (no answer)",
    ]
    .iter()
    .enumerate()
    {
        report(name, &mut per_step[k]);
    }
    report("handle: three steps", &mut whole);
}
