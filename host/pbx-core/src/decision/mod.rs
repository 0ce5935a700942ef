//! Where a call is routed: the whole decision for a new call, sans-IO.
//!
//! A call waiting in [`crate::Output::Route`] is decided here, in a fixed order:
//!
//! 1. the tenant's **dial plan** ([`DialPlan`], [`dial_plan`]) says where the
//!    call goes (a quarantined plan falls back to the shipped default);
//! 2. a call going out a trunk passes the **destination check**
//!    ([`approval`]): a costly destination class needs a provider admin's
//!    approval, and a refusal files the request for one;
//! 3. every **provider policy**, then every **tenant policy**, sees the plan
//!    ([`Policies`], [`policy`]); any deny or failure refuses the call (fail
//!    closed);
//! 4. the plan becomes a [`RouteDecision`]; a call that will be placed is
//!    **admitted** against the tenant's limits and usage counters
//!    ([`Counters`], [`admission`]), which may raise pattern alerts and
//!    suspensions.
//!
//! The result is an [`Outcome`]: the route or a typed [`Refusal`], and the
//! [`Event`]s (alerts, approval requests, suspensions) for the I/O layer to
//! store. Time comes in as [`Now`]; nothing here reads a clock, runs a plugin
//! or touches the database: the wasm runtime and the counters sit behind the
//! traits, implemented by the `pbx` binary (over `pbx-plugin` and
//! `pbx_guard::Usage`) and by fakes in the tests.

pub mod admission;
pub mod approval;
pub mod destination;
pub mod dial_plan;
#[cfg(test)]
pub(crate) mod fakes;
pub mod policy;
#[cfg(test)]
mod tests;

use std::time::Instant;

pub use admission::{Admission, CallSlot, Counters};
pub use approval::Approvals;
pub use destination::Destinations;
pub use dial_plan::{DialPlan, Plan, PlanError, RingStrategy, RingTarget};
use pbx_guard::{Denial, DestinationClass, Severity};
pub use policy::{Policies, PolicyOwner, PolicyVerdict};

use crate::{RouteDecision, RouteRequest};

/// The time a decision is taken at, on both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For windows and rates.
    pub at: Instant,
    /// Wall-clock Unix milliseconds (picks the spend day and the pattern hour).
    pub unix_ms: i64,
}

/// The new call as the dial plan and the policies see it.
#[derive(Debug, Clone, Copy)]
pub struct NewCall<'a> {
    pub request: &'a RouteRequest,
    /// The destination class of what was dialled.
    pub class: DestinationClass,
}

/// Why a call is refused, with the SIP status and reason phrase it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The call's tenant is not (or no longer) known.
    UnknownTenant,
    /// The dial plan failed (trapped, ran out of time, decided nonsense).
    DialPlanFailed { status: u16, reason: String },
    /// The dial plan rejected the call itself.
    Rejected { status: u16, reason: String },
    /// The plan named a ring group the tenant does not have.
    UnknownGroup,
    /// A costly destination without an approval (the request is filed).
    NotApproved,
    /// A policy denied the call, or failed; `phrase` is the reason phrase.
    PolicyDenied { phrase: String },
    /// A limit of the tenant or the extension was reached.
    LimitReached(Denial),
}

/// Reason phrase of [`Refusal::NotApproved`].
pub const NOT_APPROVED: &str = "Destination Not Approved";
/// Reason phrase of [`Refusal::LimitReached`].
pub const LIMIT_REACHED: &str = "Call Limit Reached";

impl Refusal {
    /// The SIP status the caller gets.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::UnknownTenant | Refusal::UnknownGroup => 404,
            Refusal::DialPlanFailed { status, .. } | Refusal::Rejected { status, .. } => {
                crate::route::final_status(*status)
            }
            Refusal::NotApproved | Refusal::PolicyDenied { .. } | Refusal::LimitReached(_) => 403,
        }
    }

    /// The reason phrase the caller gets.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::UnknownTenant | Refusal::UnknownGroup => "Not Found",
            Refusal::DialPlanFailed { reason, .. } | Refusal::Rejected { reason, .. } => reason,
            Refusal::NotApproved => NOT_APPROVED,
            Refusal::PolicyDenied { phrase } => phrase,
            Refusal::LimitReached(_) => LIMIT_REACHED,
        }
    }
}

impl From<Refusal> for RouteDecision {
    fn from(refusal: Refusal) -> RouteDecision {
        RouteDecision::reject(refusal.status(), refusal.reason())
    }
}

/// Something the decision asks the I/O layer to record or carry out, for the
/// call's tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Log and store an alert under its stable event name.
    Alert {
        severity: Severity,
        event: &'static str,
        message: String,
    },
    /// File a request for a provider admin to approve `class` (sample number).
    RequestApproval {
        class: DestinationClass,
        number: String,
    },
    /// Disable one extension.
    SuspendExtension(String),
    /// Suspend the whole tenant.
    SuspendTenant,
}

impl Event {
    fn alert(severity: Severity, event: &'static str, message: String) -> Event {
        Event::Alert {
            severity,
            event,
            message,
        }
    }
}

/// The decision for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Where the call goes, or why it does not.
    pub route: Result<RouteDecision, Refusal>,
    /// What to record, in order.
    pub events: Vec<Event>,
}

impl Outcome {
    /// The decision in the shard's terms ([`crate::Shard::route_decided`]).
    pub fn into_route(self) -> RouteDecision {
        self.route.unwrap_or_else(RouteDecision::from)
    }

    /// The typed refusal, when the call is refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.route.as_ref().err()
    }
}

/// What a decision consults besides the call.
pub struct Deciders<'a> {
    pub dial_plan: &'a dyn DialPlan,
    pub policies: &'a dyn Policies,
    pub destinations: &'a Destinations,
    pub approvals: &'a Approvals,
    pub admission: &'a Admission,
}

/// Decides call `request` (of `request.tenant`) at `now`, in the
/// order of the module documentation.
pub fn decide(request: &RouteRequest, now: Now, with: &Deciders<'_>) -> Outcome {
    let mut events = Vec::new();
    let route = decide_into(request, now, with, &mut events);
    Outcome { route, events }
}

fn decide_into(
    request: &RouteRequest,
    now: Now,
    with: &Deciders<'_>,
    events: &mut Vec<Event>,
) -> Result<RouteDecision, Refusal> {
    let is_extension = with.dial_plan.is_extension(&request.dialled);
    let call = NewCall {
        request,
        class: with.destinations.classify(&request.dialled, is_extension),
    };
    let plan = dial_plan::run(with.dial_plan, &call, events)?;
    let who = request
        .caller_extension
        .as_deref()
        .or(request.inbound_trunk.as_deref())
        .unwrap_or(&request.caller);
    // Built-in destination control first: costly classes need an approval.
    let class = match &plan {
        Plan::Trunk { number, .. } => {
            let class = with.destinations.classify_number(number);
            with.approvals
                .check(request.tenant, who, class, number, events)?;
            class
        }
        _ => call.class,
    };
    // Every leg a call places is checked, not only its first: toll fraud
    // cannot hide behind a forward.
    if !matches!(plan, Plan::Finish | Plan::Answer { .. } | Plan::Media(_)) {
        policy::run(with.policies, &call, &plan, events)?;
    }
    let places_a_leg = plan.places_a_leg();
    let route = plan.into_route(with.dial_plan)?;
    if !places_a_leg {
        return Ok(route);
    }
    // The limits count only calls that will be placed.
    with.admission.admit(
        &admission::Admit {
            call_id: &request.call_id,
            tenant: request.tenant,
            extension: who,
            class,
            dialled: &request.dialled,
        },
        now,
        events,
    )?;
    Ok(route)
}
