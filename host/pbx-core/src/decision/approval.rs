//! Destination approval: a call of a costly class (international,
//! premium-rate, high-risk) goes out only once a provider admin approved the
//! class, or a prefix of the number, for the tenant. Until then the call is
//! held back: refused with 403, and the refusal files the approval request.
//! Emergency calls always pass.
//!
//! The same concept as `pbx-store`'s `approval.rs` at another layer: this one
//! answers whether a call is approved, that one stores the requests and grants.

use std::collections::{HashMap, HashSet};

use model::TenantId;
use pbx_guard::{DestinationClass, Severity};

use super::{Event, Refusal};

/// What one tenant has been approved for.
#[derive(Debug, Default, Clone)]
struct Approved {
    classes: HashSet<DestinationClass>,
    prefixes: Vec<String>,
}

/// Every tenant's granted approvals (a snapshot, rebuilt when they change).
#[derive(Debug, Default, Clone)]
pub struct Approvals {
    tenants: HashMap<TenantId, Approved>,
}

impl Approvals {
    /// Approves every number of `class` for `tenant`.
    pub fn grant_class(&mut self, tenant: TenantId, class: DestinationClass) {
        self.tenants
            .entry(tenant)
            .or_default()
            .classes
            .insert(class);
    }

    /// Approves numbers starting with `prefix` (digits, no `+`) for `tenant`.
    pub fn grant_prefix(&mut self, tenant: TenantId, prefix: impl Into<String>) {
        self.tenants
            .entry(tenant)
            .or_default()
            .prefixes
            .push(prefix.into());
    }

    /// Whether `tenant` may call `class` (and, for a number, its prefix).
    pub fn approved(
        &self,
        tenant: TenantId,
        class: DestinationClass,
        number: Option<&str>,
    ) -> bool {
        if !class.is_costly() {
            return true;
        }
        let Some(a) = self.tenants.get(&tenant) else {
            return false;
        };
        let digits = number.map(|n| n.trim_start_matches('+').trim_start_matches("00"));
        a.classes.contains(&class)
            || digits.is_some_and(|d| a.prefixes.iter().any(|p| d.starts_with(p.as_str())))
    }

    /// The destination check of a call from `caller` going out to `number` of
    /// `class`: passes, or refuses with an alert and an approval request.
    pub fn check(
        &self,
        tenant: TenantId,
        caller: &str,
        class: DestinationClass,
        number: &str,
        events: &mut Vec<Event>,
    ) -> Result<(), Refusal> {
        if class == DestinationClass::Emergency || self.approved(tenant, class, Some(number)) {
            return Ok(());
        }
        events.push(Event::alert(
            Severity::Warning,
            "fraud.approval_requested",
            format!(
                "{} call from {caller} to {number} denied until approved",
                class.as_str()
            ),
        ));
        events.push(Event::RequestApproval {
            class,
            number: number.to_string(),
        });
        Err(Refusal::NotApproved)
    }
}
