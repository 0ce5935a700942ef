//! The decision without sockets or plugins: fake dial plans, policies and
//! counters, on a virtual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::TenantId;
use pbx_guard::{
    ClassifierConfig, DestinationClass, Limits, PatternConfig, Severity, Usage, UsageConfig,
};

use super::fakes::{FakeCounters, FakePlan, FakePolicies};
use super::*;
use crate::{CallEvent, DialResult, RingStep, RouteDecision, RouteRequest};

const TENANT: TenantId = TenantId(7);
const NATIONAL: &str = "+12125550100";
const INTERNATIONAL: &str = "+442079460018";
const HIGH_RISK: &str = "+88212345678";

fn request(n: u64, dialled: &str) -> RouteRequest {
    RouteRequest {
        shard: 0,
        call: n,
        tenant: TENANT,
        call_id: format!("call-{n}"),
        caller: "1000".into(),
        caller_extension: Some("1000".into()),
        dialled: dialled.into(),
        inbound_trunk: None,
        source: SocketAddr::from(([127, 0, 0, 1], 5060)),
        event: CallEvent::Started,
        step: 1,
        caller_device: None,
        headers: Vec::new(),
        answer_by: None,
    }
}

fn ring(strategy: RingStrategy, targets: &[(&str, u32)]) -> Plan {
    Plan::Ring {
        strategy,
        targets: targets
            .iter()
            .map(|(e, t)| RingTarget {
                extension: (*e).into(),
                timeout_secs: *t,
            })
            .collect(),
    }
}

fn trunk(number: &str) -> Plan {
    Plan::trunk("carrier", number)
}

/// Everything a decision consults, with the shipped classifier and pattern
/// settings and fake counters (no limit unless a test sets one).
struct World {
    destinations: Destinations,
    approvals: Approvals,
    admission: Admission,
    counters: Arc<FakeCounters>,
    start: Instant,
}

impl World {
    fn new() -> World {
        World::with_counters(FakeCounters::new(u32::MAX, u32::MAX))
    }

    fn with_counters(counters: FakeCounters) -> World {
        let counters = Arc::new(counters);
        World {
            destinations: Destinations::new(&ClassifierConfig::default()).unwrap(),
            approvals: Approvals::default(),
            admission: Admission::new(counters.clone(), PatternConfig::default()),
            counters,
            start: Instant::now(),
        }
    }

    fn at(&self, offset: Duration) -> Now {
        Now {
            at: self.start + offset,
            // 2026-12-02 10:00 UTC, a Wednesday in business hours.
            unix_ms: 1_796_205_600_000 + i64::try_from(offset.as_millis()).unwrap(),
        }
    }

    fn decide(&self, req: &RouteRequest, plan: &FakePlan, policies: &FakePolicies) -> Outcome {
        self.decide_at(req, plan, policies, Duration::ZERO)
    }

    fn decide_at(
        &self,
        req: &RouteRequest,
        plan: &FakePlan,
        policies: &FakePolicies,
        offset: Duration,
    ) -> Outcome {
        decide(
            req,
            self.at(offset),
            &Deciders {
                dial_plan: plan,
                policies,
                destinations: &self.destinations,
                approvals: &self.approvals,
                admission: &self.admission,
            },
        )
    }
}

fn events_named(outcome: &Outcome) -> Vec<&'static str> {
    outcome
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Alert { event, .. } => Some(*event),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sequential_plan_rings_each_target_for_its_own_timeout() {
    let w = World::new();
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5), ("1002", 0)]));
    let out = w.decide(&request(1, "1001"), &plan, &FakePolicies::default());
    assert_eq!(
        out.route,
        Ok(RouteDecision::Ring(vec![
            RingStep {
                extensions: vec!["1001".into()],
                timeout: Duration::from_secs(5),
            },
            RingStep {
                extensions: vec!["1002".into()],
                timeout: Duration::ZERO,
            },
        ]))
    );
    assert!(out.events.is_empty());
    assert_eq!(plan.seen_class.get(), Some(DestinationClass::Internal));
    assert_eq!(
        w.admission.live_calls(),
        1,
        "a call that will ring is counted"
    );
}

#[test]
fn a_simultaneous_plan_rings_everyone_for_the_longest_timeout() {
    let w = World::new();
    let plan = FakePlan::answering(ring(
        RingStrategy::Simultaneous,
        &[("1001", 5), ("1002", 20)],
    ));
    let out = w.decide(&request(1, "1001"), &plan, &FakePolicies::default());
    assert_eq!(
        out.into_route(),
        RouteDecision::Ring(vec![RingStep {
            extensions: vec!["1001".into(), "1002".into()],
            timeout: Duration::from_secs(20),
        }])
    );
}

#[test]
fn a_ring_group_rings_its_members_and_an_unknown_one_is_not_found() {
    let w = World::new();
    let mut plan = FakePlan::answering(Plan::RingGroup("sales".into()));
    plan.groups
        .insert("sales".into(), vec!["1001".into(), "1002".into()]);
    let out = w.decide(&request(1, "600"), &plan, &FakePolicies::default());
    assert_eq!(
        out.route,
        Ok(RouteDecision::Ring(vec![RingStep {
            extensions: vec!["1001".into(), "1002".into()],
            timeout: Duration::ZERO,
        }]))
    );
    let plan = FakePlan::answering(Plan::RingGroup("support".into()));
    let out = w.decide(&request(2, "600"), &plan, &FakePolicies::default());
    assert_eq!(out.refusal(), Some(&Refusal::UnknownGroup));
    assert_eq!(out.into_route(), RouteDecision::reject(404, "Not Found"));
    assert_eq!(
        w.admission.live_calls(),
        1,
        "only the placed call is counted"
    );
}

#[test]
fn a_plan_reject_is_kept_to_a_failure_status_and_a_clean_phrase() {
    let w = World::new();
    let plan = FakePlan::answering(Plan::Reject {
        status: 200,
        reason: "no\r\nway".into(),
    });
    let out = w.decide(&request(1, "1001"), &plan, &FakePolicies::default());
    assert_eq!(
        out.into_route(),
        RouteDecision::Reject {
            status: 500,
            reason: "noway".into()
        }
    );
    assert_eq!(w.admission.live_calls(), 0);
}

#[test]
fn a_quarantined_plan_falls_back_to_the_default_and_a_failing_one_refuses() {
    let w = World::new();
    let quarantined = PlanError {
        quarantined: true,
        status: 503,
        reason: "Dial Plan Quarantined".into(),
        detail: "quarantined".into(),
    };
    let mut plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    plan.answer = Err(quarantined.clone());
    plan.default = Ok(ring(RingStrategy::Sequential, &[("1002", 5)]));
    let out = w.decide(&request(1, "1002"), &plan, &FakePolicies::default());
    assert_eq!(plan.default_runs.get(), 1);
    assert!(
        matches!(&out.route, Ok(RouteDecision::Ring(steps)) if steps[0].extensions == ["1002"])
    );

    // A plan that fails (not quarantined) refuses with the runtime's status
    // and raises a critical alert; the default plan is not asked.
    let mut plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    plan.answer = Err(PlanError {
        quarantined: false,
        status: 500,
        reason: "Dial Plan Failed".into(),
        detail: "trap: unreachable".into(),
    });
    let policies = FakePolicies::default();
    let out = w.decide(&request(2, "1001"), &plan, &policies);
    assert_eq!(plan.default_runs.get(), 0);
    assert_eq!(
        out.events,
        vec![Event::Alert {
            severity: Severity::Critical,
            event: "plugin.failure",
            message: "dial plan failed: trap: unreachable".into(),
        }]
    );
    assert_eq!(
        out.into_route(),
        RouteDecision::reject(500, "Dial Plan Failed")
    );

    // The default plan failing after a quarantine refuses too.
    let mut plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    plan.answer = Err(quarantined.clone());
    plan.default = Err(quarantined);
    let out = w.decide(&request(3, "1001"), &plan, &FakePolicies::default());
    assert_eq!(
        out.into_route(),
        RouteDecision::reject(503, "Dial Plan Quarantined")
    );
    assert_eq!(w.admission.live_calls(), 1);
}

#[test]
fn any_deny_wins_provider_policies_first_then_the_tenants() {
    let w = World::new();
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    // A provider policy's deny stops the call before any tenant policy runs.
    let policies = FakePolicies {
        provider: vec![
            PolicyVerdict::Allow,
            PolicyVerdict::Deny("after hours".into()),
            PolicyVerdict::Allow,
        ],
        tenant: vec![PolicyVerdict::Allow],
        ..FakePolicies::default()
    };
    let out = w.decide(&request(1, "1001"), &plan, &policies);
    assert_eq!(
        *policies.asked.borrow(),
        vec![(PolicyOwner::Provider, 0), (PolicyOwner::Provider, 1)]
    );
    assert_eq!(
        out.refusal(),
        Some(&Refusal::PolicyDenied {
            phrase: "after hours".into()
        })
    );
    assert_eq!(events_named(&out), ["policy.deny"]);
    assert_eq!(out.into_route(), RouteDecision::reject(403, "after hours"));

    // Every provider policy allows; the tenant's own deny still wins.
    let policies = FakePolicies {
        provider: vec![PolicyVerdict::Allow, PolicyVerdict::Allow],
        tenant: vec![PolicyVerdict::Allow, PolicyVerdict::Deny(String::new())],
        ..FakePolicies::default()
    };
    let out = w.decide(&request(2, "1001"), &plan, &policies);
    assert_eq!(
        *policies.asked.borrow(),
        vec![
            (PolicyOwner::Provider, 0),
            (PolicyOwner::Provider, 1),
            (PolicyOwner::Tenant, 0),
            (PolicyOwner::Tenant, 1)
        ]
    );
    assert_eq!(out.into_route(), RouteDecision::reject(403, "Forbidden"));
    assert_eq!(
        w.admission.live_calls(),
        0,
        "denied calls are never counted"
    );

    // All allow: the call goes ahead.
    let policies = FakePolicies {
        provider: vec![PolicyVerdict::Allow],
        tenant: vec![PolicyVerdict::Allow],
        ..FakePolicies::default()
    };
    assert!(
        w.decide(&request(3, "1001"), &plan, &policies)
            .route
            .is_ok()
    );
}

#[test]
fn a_failing_policy_refuses_the_call_without_its_details() {
    let w = World::new();
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    let policies = FakePolicies {
        tenant: vec![PolicyVerdict::Failed {
            detail: "out of fuel at 0x1234".into(),
            phrase: "Policy Failed".into(),
        }],
        ..FakePolicies::default()
    };
    let out = w.decide(&request(1, "1001"), &plan, &policies);
    let Event::Alert { message, .. } = &out.events[0] else {
        panic!("an alert first: {:?}", out.events);
    };
    assert!(message.contains("out of fuel"), "{message}");
    assert_eq!(
        out.into_route(),
        RouteDecision::reject(403, "Policy Failed")
    );
}

#[test]
fn a_costly_destination_is_held_until_approved_and_again_once_revoked() {
    let mut w = World::new();
    let plan = FakePlan::answering(trunk(INTERNATIONAL));
    let policies = FakePolicies {
        provider: vec![PolicyVerdict::Allow],
        ..FakePolicies::default()
    };
    // Held: refused, with an alert and the approval request filed; no policy
    // runs and nothing is counted.
    let out = w.decide(&request(1, INTERNATIONAL), &plan, &policies);
    assert_eq!(out.refusal(), Some(&Refusal::NotApproved));
    assert_eq!(
        out.events[1],
        Event::RequestApproval {
            class: DestinationClass::International,
            number: INTERNATIONAL.into(),
        }
    );
    assert_eq!(events_named(&out), ["fraud.approval_requested"]);
    assert!(policies.asked.borrow().is_empty());
    assert_eq!(w.counters.started.lock().len(), 0);
    assert_eq!(
        out.into_route(),
        RouteDecision::reject(403, "Destination Not Approved")
    );

    // Approved: the class goes out.
    w.approvals
        .grant_class(TENANT, DestinationClass::International);
    let out = w.decide(&request(2, INTERNATIONAL), &plan, &policies);
    assert_eq!(
        out.route,
        Ok(RouteDecision::trunk("carrier", INTERNATIONAL))
    );
    assert!(out.events.is_empty());
    // Another tenant's approval is not this one's.
    assert!(
        !w.approvals
            .approved(TenantId(8), DestinationClass::International, None)
    );

    // Revoked (the approvals are rebuilt without it): held again.
    w.approvals = Approvals::default();
    let out = w.decide(&request(3, INTERNATIONAL), &plan, &policies);
    assert_eq!(out.refusal(), Some(&Refusal::NotApproved));

    // A prefix approval covers its numbers only.
    w.approvals.grant_prefix(TENANT, "4420");
    assert!(
        w.decide(&request(4, INTERNATIONAL), &plan, &policies)
            .route
            .is_ok()
    );
    let high_risk = FakePlan::answering(trunk(HIGH_RISK));
    let out = w.decide(&request(5, HIGH_RISK), &high_risk, &policies);
    assert_eq!(
        out.events[1],
        Event::RequestApproval {
            class: DestinationClass::HighRisk,
            number: HIGH_RISK.into(),
        }
    );
}

#[test]
fn national_and_emergency_calls_need_no_approval() {
    let w = World::new();
    for (n, number) in [(1, NATIONAL), (2, "911")] {
        let plan = FakePlan::answering(trunk(number));
        let out = w.decide(&request(n, number), &plan, &FakePolicies::default());
        assert!(out.route.is_ok(), "{number}: {out:?}");
    }
}

#[test]
fn a_burst_is_admitted_up_to_the_limits_and_the_rest_refused() {
    // At most 3 calls at once and 5 per second.
    let w = World::with_counters(FakeCounters::new(3, 5));
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    let policies = FakePolicies::default();
    let outcomes: Vec<Outcome> = (0..10)
        .map(|n| w.decide(&request(n, "1001"), &plan, &policies))
        .collect();
    let admitted = outcomes.iter().filter(|o| o.route.is_ok()).count();
    assert_eq!(admitted, 3);
    for o in &outcomes[3..] {
        assert_eq!(
            o.refusal(),
            Some(&Refusal::LimitReached(
                pbx_guard::Denial::TenantConcurrent { limit: 3 }
            ))
        );
        assert_eq!(events_named(o), ["fraud.limit"]);
        assert_eq!(
            o.clone().into_route(),
            RouteDecision::reject(403, "Call Limit Reached")
        );
    }
    // One call's record is written: its slot is released once only.
    let now = w.at(Duration::from_millis(100));
    let (class, _) = w
        .admission
        .release(TENANT, "call-0", Duration::from_secs(30), now)
        .expect("call-0 was admitted");
    assert_eq!(class, DestinationClass::Internal);
    assert!(
        w.admission
            .release(TENANT, "call-0", Duration::from_secs(30), now)
            .is_none()
    );
    assert!(
        w.admission
            .release(TENANT, "call-5", Duration::from_secs(30), now)
            .is_none()
    );
    assert_eq!(w.counters.concurrent(TENANT), 2);
    assert_eq!(w.counters.charged.lock().len(), 1);

    // Room for one more, then the per-second limit: three started, two more
    // fit within the same second.
    let out = w.decide_at(
        &request(20, "1001"),
        &plan,
        &policies,
        Duration::from_millis(200),
    );
    assert!(out.route.is_ok());
    for n in [21, 22] {
        w.admission
            .release(
                TENANT,
                &format!("call-{}", n - 20),
                Duration::ZERO,
                w.at(Duration::from_millis(300)),
            )
            .expect("admitted");
    }
    assert!(
        w.decide_at(
            &request(23, "1001"),
            &plan,
            &policies,
            Duration::from_millis(400)
        )
        .route
        .is_ok()
    );
    let out = w.decide_at(
        &request(24, "1001"),
        &plan,
        &policies,
        Duration::from_millis(500),
    );
    assert_eq!(
        out.refusal(),
        Some(&Refusal::LimitReached(pbx_guard::Denial::CallsPerSecond {
            limit: 5
        }))
    );
    // A second later the window has moved on.
    let out = w.decide_at(
        &request(25, "1001"),
        &plan,
        &policies,
        Duration::from_millis(1600),
    );
    assert!(out.route.is_ok(), "{out:?}");
}

#[test]
fn the_shipped_usage_counters_refuse_a_burst_over_the_calls_per_second() {
    // The host's counters, with only the per-second limit in the way.
    let usage = Usage::new(UsageConfig {
        defaults: Limits {
            max_concurrent_tenant: None,
            max_concurrent_extension: None,
            max_calls_per_second: Some(10),
            ..Limits::default()
        },
        ..UsageConfig::default()
    });
    let mut w = World::new();
    let usage = Arc::new(usage);
    w.admission = Admission::new(usage.clone(), PatternConfig::default());
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    let policies = FakePolicies::default();
    let refused = (0..25)
        .map(|n| w.decide(&request(n, "1001"), &plan, &policies))
        .filter(|o| matches!(o.refusal(), Some(Refusal::LimitReached(_))))
        .count();
    assert_eq!(refused, 15);
    assert_eq!(usage.concurrent(TENANT), 10);
    let out = w.decide_at(
        &request(99, "1001"),
        &plan,
        &policies,
        Duration::from_secs(2),
    );
    assert!(out.route.is_ok(), "{out:?}");
}

#[test]
fn the_caller_is_the_extension_then_the_inbound_trunk_then_the_number() {
    let w = World::new();
    let plan = FakePlan::answering(trunk(INTERNATIONAL));
    let mut req = request(1, INTERNATIONAL);
    req.caller_extension = None;
    req.inbound_trunk = Some("upstream".into());
    let out = w.decide(&req, &plan, &FakePolicies::default());
    let Event::Alert { message, .. } = &out.events[0] else {
        panic!("{out:?}");
    };
    assert!(message.contains("from upstream"), "{message}");
}

#[test]
fn a_run_of_short_calls_suspends_the_extension() {
    let w = World::new();
    let policies = FakePolicies::default();
    let mut suspended = None;
    for n in 0..20u64 {
        let number = format!("+1212555{:04}", 100 + n);
        let plan = FakePlan::answering(trunk(&number));
        let offset = Duration::from_secs(n * 5);
        let out = w.decide_at(&request(n, &number), &plan, &policies, offset);
        assert!(out.route.is_ok(), "{out:?}");
        let (class, events) = w
            .admission
            .release(
                TENANT,
                &format!("call-{n}"),
                Duration::from_secs(2),
                w.at(offset),
            )
            .expect("admitted");
        assert_eq!(class, DestinationClass::National);
        if events.contains(&Event::SuspendExtension("1000".into())) {
            suspended = Some((n, events));
            break;
        }
    }
    let (n, events) = suspended.expect("short calls to many numbers suspend the caller");
    assert!(n >= 9, "not before ten distinct destinations ({n})");
    assert!(
        matches!(
            &events[0],
            Event::Alert {
                severity: Severity::Critical | Severity::Warning,
                ..
            }
        ),
        "the alert comes first: {events:?}"
    );
}

/// The request for step `step` of call `n`, after a dial attempt ended.
fn after(n: u64, dialled: &str, step: u32, result: DialResult) -> RouteRequest {
    RouteRequest {
        event: CallEvent::DialEnded(result),
        step,
        ..request(n, dialled)
    }
}

#[test]
fn a_forward_out_a_trunk_is_held_for_approval_like_a_first_leg() {
    let w = World::new();
    // 1001 does not answer; the plan forwards abroad.
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]))
        .then(trunk(INTERNATIONAL));
    let policies = FakePolicies {
        provider: vec![PolicyVerdict::Allow],
        ..FakePolicies::default()
    };
    let first = w.decide(&request(1, "1001"), &plan, &policies);
    assert!(first.route.is_ok());
    let out = w.decide(&after(1, "1001", 2, DialResult::NoAnswer), &plan, &policies);
    assert_eq!(out.refusal(), Some(&Refusal::NotApproved));
    assert_eq!(
        out.events[1],
        Event::RequestApproval {
            class: DestinationClass::International,
            number: INTERNATIONAL.into(),
        }
    );
    assert_eq!(
        *plan.seen_events.borrow(),
        [
            CallEvent::Started,
            CallEvent::DialEnded(DialResult::NoAnswer)
        ]
    );
}

#[test]
fn every_leg_of_a_call_is_shown_to_the_policies_and_counted_once() {
    let w = World::with_counters(FakeCounters::new(1, 5));
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]))
        .then(ring(RingStrategy::Sequential, &[("1002", 5)]))
        .then(trunk(NATIONAL));
    let policies = FakePolicies {
        provider: vec![PolicyVerdict::Allow],
        tenant: vec![PolicyVerdict::Allow],
        ..FakePolicies::default()
    };
    for (step, req) in [
        request(1, "1001"),
        after(1, "1001", 2, DialResult::Busy),
        after(1, "1001", 3, DialResult::NoAnswer),
    ]
    .iter()
    .enumerate()
    {
        let out = w.decide(req, &plan, &policies);
        // One call at a time is allowed: a later leg of the same call is
        // not a second call.
        assert!(out.route.is_ok(), "step {}: {out:?}", step + 1);
        assert_eq!(policies.asked.borrow().len(), 2 * (step + 1));
    }
    // Counted at its first leg, and again (not twice at once) when a later
    // leg went to a costlier class: the national leg meets national limits.
    assert_eq!(w.counters.started.lock().len(), 2);
    assert_eq!(w.counters.concurrent(TENANT), 1);
    // Another call is a second call.
    let other = w.decide(&request(2, "1001"), &plan, &policies);
    assert!(matches!(other.refusal(), Some(Refusal::LimitReached(_))));
}

#[test]
fn a_policy_denies_a_later_leg() {
    let w = World::new();
    let plan =
        FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)])).then(trunk(NATIONAL));
    let allow = FakePolicies {
        provider: vec![PolicyVerdict::Allow],
        ..FakePolicies::default()
    };
    assert!(w.decide(&request(1, "1001"), &plan, &allow).route.is_ok());
    let deny = FakePolicies {
        provider: vec![PolicyVerdict::Deny("no forwards out".into())],
        ..FakePolicies::default()
    };
    let out = w.decide(&after(1, "1001", 2, DialResult::Busy), &plan, &deny);
    assert!(matches!(out.refusal(), Some(Refusal::PolicyDenied { .. })));
    assert_eq!(events_named(&out), ["policy.deny"]);
}

#[test]
fn finishing_places_nothing_and_asks_no_policy() {
    let w = World::new();
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    let policies = FakePolicies {
        provider: vec![PolicyVerdict::Deny("never".into())],
        ..FakePolicies::default()
    };
    // No answer for later events: the fake, like a `pbx:plugin@0.1.0` plan,
    // finishes the call.
    let out = w.decide(&after(1, "1001", 2, DialResult::Busy), &plan, &policies);
    assert_eq!(out.route, Ok(RouteDecision::Finish));
    assert!(policies.asked.borrow().is_empty());
    assert!(out.events.is_empty());
    assert_eq!(w.counters.started.lock().len(), 0);
}

#[test]
fn two_tenants_calls_with_one_call_id_are_two_calls() {
    let w = World::with_counters(FakeCounters::new(5, 5));
    let plan = FakePlan::answering(ring(RingStrategy::Sequential, &[("1001", 5)]));
    let policies = FakePolicies::default();
    assert!(
        w.decide(&request(1, "1001"), &plan, &policies)
            .route
            .is_ok()
    );
    // Another tenant's call with the same Call-ID is admitted on its own.
    let theirs = RouteRequest {
        tenant: TenantId(8),
        ..request(1, "1001")
    };
    assert!(w.decide(&theirs, &plan, &policies).route.is_ok());
    assert_eq!(w.counters.started.lock().len(), 2);
    assert!(
        w.admission
            .release(TenantId(8), "call-1", Duration::ZERO, w.at(Duration::ZERO))
            .is_some()
    );
    assert!(
        w.admission
            .release(TENANT, "call-1", Duration::ZERO, w.at(Duration::ZERO))
            .is_some()
    );
}
