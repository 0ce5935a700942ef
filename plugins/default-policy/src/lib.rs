//! The provider's default fraud policy, run for every tenant next to the
//! `restrictions` policy (which denies unapproved destination classes).
//!
//! Its limits are the provider's configuration of the policy `default-policy`
//! (`pbx policy config set default-policy KEY VALUE [--tenant T]`), read through
//! the read-only `config` capability; a tenant's override wins over the
//! provider-wide value. Tenants and their plugins cannot change them (the
//! tenant's own plugin storage is not read).
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `max-concurrent-calls` | 10 | calls of the tenant in progress at once |
//! | `max-calls-per-minute` | 20 | calls one extension may start in 60 s |
//! | `max-international-per-hour` | 30 | costly calls of one extension in an hour before it is suspended |
//!
//! `check-call` denies, in this order:
//! - nothing for rejects and emergency calls (always allowed);
//! - a call that takes the tenant over `max-concurrent-calls`;
//! - a call from an extension that started more than `max-calls-per-minute`
//!   calls in the last minute.
//!
//! `call-ended` raises a warning for a long (over an hour) international or
//! premium call and suspends an extension that made more than
//! `max-international-per-hour` such calls in an hour.

use pbx_sdk::{Action, Call, Cdr, Decision, DestinationClass, Policy, Severity, Verdict};
use pbx_sdk::{config, usage};

/// `pbx_model::limits::SHIPPED_POLICY_MAX_CONCURRENT`, which documents how
/// this limit relates to the host's built-in ones (a `pbx-plugin` test checks
/// that the two agree).
const DEFAULT_MAX_CONCURRENT: u64 = 10;
const DEFAULT_MAX_PER_MINUTE: u64 = 20;
const DEFAULT_MAX_INTERNATIONAL_PER_HOUR: u64 = 30;
const LONG_CALL_SECS: u32 = 3600;

/// The provider's value of `key`, or `default` when unset or not a number.
fn limit(key: &str, default: u64) -> u64 {
    config::get_u64(key).unwrap_or(default)
}

fn costly(class: DestinationClass) -> bool {
    matches!(
        class,
        DestinationClass::International | DestinationClass::Premium
    )
}

struct DefaultPolicy;

impl Policy for DefaultPolicy {
    fn check_call(call: &Call, decision: &Decision) -> Verdict {
        if matches!(decision, Decision::Reject(_))
            || call.destination_class == DestinationClass::Emergency
        {
            return Verdict::Allow;
        }
        let max_concurrent = limit("max-concurrent-calls", DEFAULT_MAX_CONCURRENT);
        let concurrent = u64::from(usage::concurrent_calls());
        // This call is not counted yet: it would be one more.
        if concurrent >= max_concurrent {
            return Verdict::deny(format!(
                "concurrent calls {concurrent} at the limit of {max_concurrent}"
            ));
        }
        if let Some(ext) = &call.caller_extension {
            let max_per_minute = limit("max-calls-per-minute", DEFAULT_MAX_PER_MINUTE);
            let recent = u64::from(usage::calls_in_window(60, Some(ext), None));
            if recent >= max_per_minute {
                return Verdict::deny(format!(
                    "extension {ext} made {recent} calls in a minute (limit {max_per_minute})"
                ));
            }
        }
        Verdict::Allow
    }

    fn call_ended(cdr: &Cdr) -> Vec<Action> {
        let mut actions = Vec::new();
        if !costly(cdr.destination_class) {
            return actions;
        }
        if cdr.duration_secs > LONG_CALL_SECS {
            actions.push(Action::Alert((
                Severity::Warning,
                format!(
                    "long {:?} call to {} ({} s)",
                    cdr.destination_class, cdr.dialled, cdr.duration_secs
                ),
            )));
        }
        if let Some(ext) = &cdr.caller_extension {
            let max = limit(
                "max-international-per-hour",
                DEFAULT_MAX_INTERNATIONAL_PER_HOUR,
            );
            let count = u64::from(usage::calls_in_window(
                3600,
                Some(ext),
                Some(cdr.destination_class),
            ));
            if count > max {
                actions.push(Action::SuspendExtension((
                    ext.clone(),
                    format!("{count} costly calls in an hour (limit {max})"),
                )));
            }
        }
        actions
    }
}

pbx_sdk::export_policy!(DefaultPolicy);
