//! The dial plan's part of a decision: what it may answer ([`Plan`]), how it
//! is asked ([`DialPlan`]), and how its answer becomes ring steps or a trunk
//! call.

use std::time::Duration;

use pbx_guard::Severity;

use super::{Event, NewCall, Refusal};
use crate::{RingStep, RouteDecision};

/// Ring targets all at once or in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingStrategy {
    Simultaneous,
    Sequential,
}

/// One extension to ring, for up to `timeout_secs` (0: the host's ring timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingTarget {
    pub extension: String,
    pub timeout_secs: u32,
}

/// Where the dial plan sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Ring extensions of the tenant.
    Ring {
        strategy: RingStrategy,
        targets: Vec<RingTarget>,
    },
    /// Ring one of the tenant's groups, by name.
    RingGroup(String),
    /// Out through one of the tenant's trunks, to `number`, ringing for up to
    /// `timeout_secs` (0: the host's ring timeout), presenting `caller_id`
    /// when set (only one of the tenant's own numbers; the shard checks).
    Trunk {
        trunk: String,
        number: String,
        timeout_secs: u32,
        caller_id: Option<String>,
    },
    /// Reject the call.
    Reject { status: u16, reason: String },
    /// After a dial attempt ([`crate::CallEvent::DialEnded`]): end the call with
    /// that attempt's outcome. A plan written for one decision per call gives
    /// this for every later event.
    Finish,
    /// The host answers the call itself, then hangs up at once (`hang_up`)
    /// or keeps it up until the caller hangs up.
    Answer { hang_up: bool },
    /// The host plays to, listens to or records the caller (answering
    /// first if nobody has).
    Media(crate::HostMedia),
}

impl Plan {
    /// Out `trunk` to `number` for the host's ring timeout, with the call's
    /// own caller ID.
    pub fn trunk(trunk: impl Into<String>, number: impl Into<String>) -> Plan {
        Plan::Trunk {
            trunk: trunk.into(),
            number: number.into(),
            timeout_secs: 0,
            caller_id: None,
        }
    }

    /// Whether the plan places a call leg (rings or dials out).
    pub fn places_a_leg(&self) -> bool {
        matches!(
            self,
            Plan::Ring { .. } | Plan::RingGroup(_) | Plan::Trunk { .. }
        )
    }
}

/// Why a dial plan gave no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The plan is quarantined: the shipped default plan decides instead.
    pub quarantined: bool,
    /// The SIP status and reason the call is refused with.
    pub status: u16,
    pub reason: String,
    /// What went wrong, for the alert.
    pub detail: String,
}

/// The tenant's dial plan and the directory its plans are checked against.
pub trait DialPlan {
    /// Runs the tenant's own plan (or the default when it has none).
    fn route(&self, call: &NewCall<'_>) -> Result<Plan, PlanError>;
    /// Runs the shipped default plan.
    fn route_default(&self, call: &NewCall<'_>) -> Result<Plan, PlanError>;
    /// Whether `number` is one of the tenant's extensions.
    fn is_extension(&self, number: &str) -> bool;
    /// The members of the tenant's ring group `name`, if it has one.
    fn group_members(&self, name: &str) -> Option<Vec<String>>;
}

/// Asks the plan, falling back to the default plan when the tenant's is
/// quarantined. A failure raises a critical alert and refuses the call with the
/// runtime's status.
pub(super) fn run(
    plan: &dyn DialPlan,
    call: &NewCall<'_>,
    events: &mut Vec<Event>,
) -> Result<Plan, Refusal> {
    let answer = match plan.route(call) {
        Err(e) if e.quarantined => plan.route_default(call),
        other => other,
    };
    answer.map_err(|e| {
        events.push(Event::alert(
            Severity::Critical,
            "plugin.failure",
            format!("dial plan failed: {}", e.detail),
        ));
        Refusal::DialPlanFailed {
            status: e.status,
            reason: e.reason,
        }
    })
}

impl Plan {
    /// The plan in the shard's terms: ring steps (a simultaneous ring rings
    /// for its longest target's timeout, a sequential one each target for its
    /// own), a group's members, a trunk call, or a refusal.
    pub fn into_route(self, directory: &dyn DialPlan) -> Result<RouteDecision, Refusal> {
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        Ok(match self {
            Plan::Ring {
                strategy: RingStrategy::Simultaneous,
                targets,
            } => RouteDecision::Ring(vec![RingStep {
                timeout: secs(targets.iter().map(|t| t.timeout_secs).max().unwrap_or(0)),
                extensions: targets.into_iter().map(|t| t.extension).collect(),
            }]),
            Plan::Ring {
                strategy: RingStrategy::Sequential,
                targets,
            } => RouteDecision::Ring(
                targets
                    .into_iter()
                    .map(|t| RingStep {
                        extensions: vec![t.extension],
                        timeout: secs(t.timeout_secs),
                    })
                    .collect(),
            ),
            Plan::RingGroup(name) => match directory.group_members(&name) {
                Some(members) => RouteDecision::Ring(vec![RingStep {
                    extensions: members,
                    timeout: Duration::ZERO,
                }]),
                None => return Err(Refusal::UnknownGroup),
            },
            Plan::Trunk {
                trunk,
                number,
                timeout_secs,
                caller_id,
            } => RouteDecision::Trunk {
                trunk,
                number,
                timeout: secs(timeout_secs),
                caller_id,
            },
            Plan::Finish => RouteDecision::Finish,
            Plan::Answer { hang_up } => RouteDecision::Answer { hang_up },
            Plan::Media(media) => RouteDecision::Media(media),
            Plan::Reject { status, reason } => {
                return Err(Refusal::Rejected {
                    status: crate::route::final_status(status),
                    reason: super::policy::short_reason(&reason),
                });
            }
        })
    }
}
