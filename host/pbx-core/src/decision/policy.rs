//! The policies' part of a decision: every provider policy, then every tenant
//! policy, sees the dial plan's answer; the first deny or failure refuses the
//! call with 403 (fail closed) and raises an alert.

use pbx_guard::Severity;

use super::{Event, NewCall, Plan, Refusal};

/// Whose a policy is. The provider's run first, then the tenant's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOwner {
    /// Shipped, provider-wide, or installed by the provider for this tenant.
    Provider,
    /// Installed by the tenant's admins.
    Tenant,
}

/// What one policy said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyVerdict {
    Allow,
    /// Refused, with the policy's reason.
    Deny(String),
    /// The policy failed: the call is refused with `phrase`; `detail` goes in
    /// the alert only.
    Failed {
        detail: String,
        phrase: String,
    },
}

/// The policies that apply to the calls of one tenant, in running order
/// within each owner.
pub trait Policies {
    /// How many policies of `owner` apply.
    fn count(&self, owner: PolicyOwner) -> usize;
    /// Runs policy `index` of `owner` on the call and the plan.
    fn check(
        &self,
        owner: PolicyOwner,
        index: usize,
        call: &NewCall<'_>,
        plan: &Plan,
    ) -> PolicyVerdict;
}

/// Runs every policy, provider first; any deny or failure wins.
pub(super) fn run(
    policies: &dyn Policies,
    call: &NewCall<'_>,
    plan: &Plan,
    events: &mut Vec<Event>,
) -> Result<(), Refusal> {
    for owner in [PolicyOwner::Provider, PolicyOwner::Tenant] {
        for index in 0..policies.count(owner) {
            // A failing policy denies with a fixed phrase; its details are in
            // the alert, never in the SIP reason.
            let (reason, phrase) = match policies.check(owner, index, call, plan) {
                PolicyVerdict::Allow => continue,
                PolicyVerdict::Deny(reason) => {
                    let phrase = short_reason(&reason);
                    (reason, phrase)
                }
                PolicyVerdict::Failed { detail, phrase } => (detail, phrase),
            };
            events.push(Event::alert(
                Severity::Warning,
                "policy.deny",
                format!(
                    "call {} to {} denied: {reason}",
                    call.request.caller, call.request.dialled
                ),
            ));
            return Err(Refusal::PolicyDenied { phrase });
        }
    }
    Ok(())
}

/// Keeps a plugin's reason fit for a SIP reason phrase: no control
/// characters, at most 64 of them, `Forbidden` when nothing is left.
pub fn short_reason(reason: &str) -> String {
    let clean: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if clean.is_empty() {
        "Forbidden".into()
    } else {
        clean
    }
}
