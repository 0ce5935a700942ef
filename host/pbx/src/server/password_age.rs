//! SIP password ageing (`[extensions] password_max_age_days`, off by
//! default): an extension whose password is older than the provider's
//! maximum raises `sip.password_expired` to its tenant (and
//! `sip.password_expiring` in the days before). A phone is never cut off:
//! the password keeps working until the tenant sets a new one.

use std::collections::HashSet;
use std::time::Duration;

use store::{Alert, Severity, Store, TenantId};
use tokio_util::sync::CancellationToken;

/// `[extensions]` password ageing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordAge {
    pub max: Duration,
    /// How long before expiry the warning comes.
    pub warn: Duration,
}

/// How often passwords are looked at.
const EVERY: Duration = Duration::from_secs(3600);

/// What was already raised: (tenant, extension, password date, expired?).
type Raised = HashSet<(TenantId, String, i64, bool)>;

/// The alerts due at `now_ms` for `ages` (tenant, extension, password set
/// at), each once per password.
pub(crate) fn due(
    ages: &[(TenantId, String, i64)],
    policy: PasswordAge,
    now_ms: i64,
    raised: &mut Raised,
) -> Vec<Alert> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for (tenant, number, set_at) in ages {
        let expires = set_at.saturating_add(ms(policy.max));
        let expired = now_ms >= expires;
        if !expired && now_ms < expires.saturating_sub(ms(policy.warn)) {
            continue;
        }
        if !raised.insert((*tenant, number.clone(), *set_at, expired)) {
            continue;
        }
        let days = (expires - now_ms).max(0) / (24 * 3600 * 1000);
        out.push(Alert {
            tenant: Some(*tenant),
            severity: Severity::Warning,
            event: if expired {
                "sip.password_expired".into()
            } else {
                "sip.password_expiring".into()
            },
            message: if expired {
                format!("extension {number}'s SIP password is past its maximum age; set a new one (the phone keeps working)")
            } else {
                format!("extension {number}'s SIP password expires in {days} days")
            },
            at_ms: now_ms,
        });
    }
    // Forget passwords that were changed or extensions that are gone.
    let current: HashSet<(TenantId, &str, i64)> =
        ages.iter().map(|(t, n, s)| (*t, n.as_str(), *s)).collect();
    raised.retain(|(t, n, s, _)| current.contains(&(*t, n.as_str(), *s)));
    out
}

/// Checks every hour until `stop`.
pub(crate) async fn run(store: Store, policy: PasswordAge, stop: CancellationToken) {
    let mut raised = Raised::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ages = match store.extension_password_ages().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read password ages");
                continue;
            }
        };
        let now_ms = jiff::Timestamp::now().as_millisecond();
        for alert in due(&ages, policy, now_ms, &mut raised) {
            tracing::info!(event = %alert.event, tenant = ?alert.tenant, "{}", alert.message);
            if let Err(e) = store.insert_alert(&alert).await {
                tracing::warn!(error = %e, "password ageing alert not stored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;

    #[test]
    fn warned_then_expired_once_each_and_again_after_a_new_password() {
        let policy = PasswordAge {
            max: Duration::from_secs(90 * 24 * 3600),
            warn: Duration::from_secs(14 * 24 * 3600),
        };
        let t = TenantId(1);
        let ages = vec![(t, "100".to_string(), 0), (t, "101".to_string(), 60 * DAY)];
        let mut raised = Raised::new();
        let events = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.event).collect::<Vec<_>>();
        assert!(due(&ages, policy, 70 * DAY, &mut raised).is_empty());
        assert_eq!(
            events(due(&ages, policy, 80 * DAY, &mut raised)),
            ["sip.password_expiring"]
        );
        assert!(due(&ages, policy, 81 * DAY, &mut raised).is_empty(), "once");
        assert_eq!(
            events(due(&ages, policy, 90 * DAY, &mut raised)),
            ["sip.password_expired"]
        );
        assert!(due(&ages, policy, 95 * DAY, &mut raised).is_empty(), "once");
        // A new password starts over.
        let renewed = vec![
            (t, "100".to_string(), 95 * DAY),
            (t, "101".to_string(), 60 * DAY),
        ];
        assert!(due(&renewed, policy, 96 * DAY, &mut raised).is_empty());
        assert_eq!(raised.len(), 0);
    }
}
