//! The plugin part of the call path: the default dial plan's first step (it
//! is a call handler: `handle` at call start) plus the restrictions policy's
//! `check-call`, each in a fresh instance (instantiation included). Target:
//! p99 under 50 µs.
//!
//! Run with `cargo bench -p pbx-plugin --bench call_path`; for p50/p99 per
//! call see the `latency` bench.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use pbx_plugin::handler::{Action, Event, HandlerCall};
use pbx_plugin::{
    Call, Decision, DestinationClass, Directory, FixedUsage, MemoryAlerts, MemoryStorage,
    PluginLog, PluginRuntime, RuntimeConfig, TenantCaps, Verdict, World, shipped,
};

fn call_path(c: &mut Criterion) {
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("runtime");
    let plan = runtime
        .load(World::CallHandler, shipped::DEFAULT_DIALPLAN)
        .expect("dial plan");
    let policy = runtime
        .load(World::Policy, shipped::RESTRICTIONS)
        .expect("policy");
    let caps = TenantCaps {
        tenant: model::TenantId(1),
        directory: Arc::new(
            Directory::new()
                .with_extension("100", "Alice", true)
                .with_extension("101", "Bob", true)
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
    };
    let call = Call {
        call_id: "bench@host".into(),
        caller: "100".into(),
        caller_extension: Some("100".into()),
        dialled: "101".into(),
        destination_class: DestinationClass::Internal,
    };
    let handler_call = HandlerCall {
        call_id: call.call_id.clone(),
        caller: call.caller.clone(),
        caller_extension: call.caller_extension.clone(),
        dialled: call.dialled.clone(),
        destination_class: call.destination_class,
        step: 1,
    };
    let started = Event::CallStarted;

    c.bench_function("handle", |b| {
        b.iter(|| {
            runtime
                .handle(&plan, &caps, black_box(&handler_call), &[], &started)
                .expect("handle")
        })
    });
    c.bench_function("handle + check_call", |b| {
        b.iter(|| {
            let step = runtime
                .handle(&plan, &caps, black_box(&handler_call), &[], &started)
                .expect("handle");
            let Some(Action::Ring(ring)) = step.actions.into_iter().next() else {
                panic!("the default dial plan rings an extension");
            };
            let verdict = runtime.check_call(&policy, &caps, &call, &Decision::Ring(ring));
            assert_eq!(verdict, Verdict::Allow);
        })
    });
}

criterion_group!(benches, call_path);
criterion_main!(benches);
