//! The provider's shipped call restrictions by destination class, run for
//! every tenant (world `policy`).
//!
//! The host classifies each dialled number before the plugins run. Only a
//! decision that sends the call out a trunk can cost money, so `check-call`
//! looks at trunk decisions only:
//! - `emergency` is always allowed, whatever the decision: no shipped policy
//!   ever blocks an emergency call;
//! - `internal`, `national` and `mobile` are allowed;
//! - `international`, `premium` and `unknown` (fail closed) are denied unless
//!   the provider approved that class for the tenant (`usage.class-approved`).
//!
//! Ringing extensions or groups and rejecting are always allowed. `call-ended`
//! does nothing; fraud limits are the default policy's job.
//!
//! Approval itself is the host's: it grants and revokes approvals, checks every
//! call out a trunk before any policy runs (and files the approval request), and
//! answers `usage.class-approved` from the same record. This policy is a caller
//! of that check, kept as a provider-editable second line (see
//! `docs/ARCHITECTURE.md`, "A call, end to end").

use pbx_sdk::{Call, Decision, DestinationClass, Policy, Verdict, usage};

/// Whether calls of `class` out a trunk need the provider's approval.
fn needs_approval(class: DestinationClass) -> bool {
    match class {
        DestinationClass::Emergency
        | DestinationClass::Internal
        | DestinationClass::National
        | DestinationClass::Mobile => false,
        DestinationClass::International | DestinationClass::Premium | DestinationClass::Unknown => {
            true
        }
    }
}

/// The class's WIT name, for deny reasons.
fn class_name(class: DestinationClass) -> &'static str {
    match class {
        DestinationClass::Internal => "internal",
        DestinationClass::Emergency => "emergency",
        DestinationClass::National => "national",
        DestinationClass::Mobile => "mobile",
        DestinationClass::International => "international",
        DestinationClass::Premium => "premium",
        DestinationClass::Unknown => "unknown",
    }
}

struct Restrictions;

impl Policy for Restrictions {
    fn check_call(call: &Call, decision: &Decision) -> Verdict {
        let class = call.destination_class;
        if !matches!(decision, Decision::Trunk(_)) || !needs_approval(class) {
            return Verdict::Allow;
        }
        if usage::class_approved(class) {
            return Verdict::Allow;
        }
        Verdict::deny(format!(
            "destination class {} is not approved for this tenant",
            class_name(class)
        ))
    }
}

pbx_sdk::export_policy!(Restrictions);
