//! Stand-ins for the dial plan, the policies and the counters, for tests.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pbx_guard::{CallStart, Denial, DestinationClass};

use crate::CallEvent;

use super::{
    CallSlot, Counters, DialPlan, NewCall, Plan, PlanError, Policies, PolicyOwner, PolicyVerdict,
};

/// A dial plan that answers what it was given, and counts its runs.
pub(crate) struct FakePlan {
    pub(crate) answer: Result<Plan, PlanError>,
    /// What the shipped default plan answers.
    pub(crate) default: Result<Plan, PlanError>,
    pub(crate) extensions: Vec<String>,
    pub(crate) groups: HashMap<String, Vec<String>>,
    pub(crate) runs: Cell<u32>,
    pub(crate) default_runs: Cell<u32>,
    /// The class of the last call the plan saw.
    pub(crate) seen_class: Cell<Option<DestinationClass>>,
    /// Answers to the events after the call started, in order; once used up,
    /// [`Plan::Finish`].
    pub(crate) later: RefCell<VecDeque<Plan>>,
    /// Every event the plan was asked about.
    pub(crate) seen_events: RefCell<Vec<CallEvent>>,
}

impl FakePlan {
    pub(crate) fn answering(plan: Plan) -> FakePlan {
        FakePlan {
            answer: Ok(plan),
            default: Ok(Plan::Reject {
                status: 404,
                reason: "default plan".into(),
            }),
            extensions: ["1000", "1001", "1002"].map(String::from).to_vec(),
            groups: HashMap::new(),
            runs: Cell::new(0),
            default_runs: Cell::new(0),
            seen_class: Cell::new(None),
            later: RefCell::new(VecDeque::new()),
            seen_events: RefCell::new(Vec::new()),
        }
    }

    /// Answers `plan` to the next event after the earlier ones.
    pub(crate) fn then(self, plan: Plan) -> FakePlan {
        self.later.borrow_mut().push_back(plan);
        self
    }
}

impl DialPlan for FakePlan {
    fn route(&self, call: &NewCall<'_>) -> Result<Plan, PlanError> {
        self.runs.set(self.runs.get() + 1);
        self.seen_class.set(Some(call.class));
        self.seen_events
            .borrow_mut()
            .push(call.request.event.clone());
        if !matches!(
            call.request.event,
            CallEvent::Started | CallEvent::TransferRequested
        ) {
            return Ok(self.later.borrow_mut().pop_front().unwrap_or(Plan::Finish));
        }
        self.answer.clone()
    }

    fn route_default(&self, _call: &NewCall<'_>) -> Result<Plan, PlanError> {
        self.default_runs.set(self.default_runs.get() + 1);
        self.default.clone()
    }

    fn is_extension(&self, number: &str) -> bool {
        self.extensions.iter().any(|e| e == number)
    }

    fn group_members(&self, name: &str) -> Option<Vec<String>> {
        self.groups.get(name).cloned()
    }
}

/// Policies with fixed verdicts that record which of them ran.
#[derive(Default)]
pub(crate) struct FakePolicies {
    pub(crate) provider: Vec<PolicyVerdict>,
    pub(crate) tenant: Vec<PolicyVerdict>,
    pub(crate) asked: RefCell<Vec<(PolicyOwner, usize)>>,
}

impl Policies for FakePolicies {
    fn count(&self, owner: PolicyOwner) -> usize {
        match owner {
            PolicyOwner::Provider => self.provider.len(),
            PolicyOwner::Tenant => self.tenant.len(),
        }
    }

    fn check(
        &self,
        owner: PolicyOwner,
        index: usize,
        _call: &NewCall<'_>,
        _plan: &Plan,
    ) -> PolicyVerdict {
        self.asked.borrow_mut().push((owner, index));
        let list = match owner {
            PolicyOwner::Provider => &self.provider,
            PolicyOwner::Tenant => &self.tenant,
        };
        list[index].clone()
    }
}

/// Counters with a tenant-wide concurrency limit and a per-second limit,
/// on the caller's clock.
pub(crate) struct FakeCounters {
    pub(crate) max_concurrent: u32,
    pub(crate) per_second: u32,
    pub(crate) active: Arc<AtomicU32>,
    pub(crate) started: Mutex<Vec<Instant>>,
    pub(crate) charged: Mutex<Vec<(DestinationClass, Duration)>>,
}

impl FakeCounters {
    pub(crate) fn new(max_concurrent: u32, per_second: u32) -> FakeCounters {
        FakeCounters {
            max_concurrent,
            per_second,
            active: Arc::new(AtomicU32::new(0)),
            started: Mutex::new(Vec::new()),
            charged: Mutex::new(Vec::new()),
        }
    }
}

/// Releases one concurrent call when dropped.
struct Slot(Arc<AtomicU32>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Counters for FakeCounters {
    fn start_call(&self, call: &CallStart<'_>) -> Result<CallSlot, Denial> {
        let mut started = self.started.lock();
        let second_ago = call.now.checked_sub(Duration::from_secs(1));
        let recent = started
            .iter()
            .filter(|t| second_ago.is_none_or(|s| **t > s))
            .count();
        if recent >= self.per_second as usize {
            return Err(Denial::CallsPerSecond {
                limit: self.per_second,
            });
        }
        if self.active.load(Ordering::Acquire) >= self.max_concurrent {
            return Err(Denial::TenantConcurrent {
                limit: self.max_concurrent,
            });
        }
        started.push(call.now);
        self.active.fetch_add(1, Ordering::AcqRel);
        Ok(Box::new(Slot(self.active.clone())))
    }

    fn concurrent(&self, _tenant: model::TenantId) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    fn concurrent_extension(&self, _tenant: model::TenantId, _extension: &str) -> u32 {
        0
    }

    fn calls_in_window(
        &self,
        _tenant: model::TenantId,
        _extension: Option<&str>,
        _class: Option<DestinationClass>,
        _window: Duration,
        _now: Instant,
    ) -> u32 {
        0
    }

    fn charge(
        &self,
        _tenant: model::TenantId,
        class: DestinationClass,
        talk: Duration,
        _unix_ms: i64,
    ) -> Result<u64, Denial> {
        self.charged.lock().push((class, talk));
        Ok(0)
    }
}
