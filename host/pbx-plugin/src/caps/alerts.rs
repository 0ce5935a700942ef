//! `pbx:plugin/alerts`: alerts raised by plugins, and by the runtime about them.
//!
//! The same concept as `pbx-guard`'s `alerts.rs` at another layer: this one lets a
//! plugin raise alerts, that one signs and pushes them out of the host.

use parking_lot::Mutex;

use model::Severity;

use crate::bindings::alerts::Host;
use crate::runtime::HostState;

/// Longest alert message kept, in bytes; longer ones are cut.
pub const MAX_ALERT_LEN: usize = 512;

/// One alert about a tenant's plugin or call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// How serious.
    pub severity: Severity,
    /// `true` when the runtime raised it (failure, quarantine), `false` when
    /// the plugin did.
    pub from_runtime: bool,
    /// What happened.
    pub message: String,
}

/// Where one tenant's alerts go.
pub trait AlertSink: Send + Sync {
    /// Deliver an alert.
    fn raise(&self, alert: Alert);
}

/// Keeps alerts in memory, for tests and tools.
#[derive(Debug, Default)]
pub struct MemoryAlerts {
    alerts: Mutex<Vec<Alert>>,
}

impl MemoryAlerts {
    /// A copy of every alert raised so far.
    pub fn all(&self) -> Vec<Alert> {
        self.alerts.lock().clone()
    }
}

impl AlertSink for MemoryAlerts {
    fn raise(&self, alert: Alert) {
        self.alerts.lock().push(alert);
    }
}

/// Cut `text` to at most `max` bytes on a char boundary, giving back what the
/// cut-off part took: a guest's 2 MiB line cut to a few hundred bytes must not
/// keep 2 MiB alive.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.shrink_to_fit();
    }
    text
}

impl Host for HostState {
    fn raise(&mut self, severity: crate::types::Severity, message: String) {
        if self.alerts_raised >= crate::runtime::MAX_ALERTS_PER_CALL {
            return;
        }
        self.alerts_raised += 1;
        self.caps.alerts.raise(Alert {
            severity: severity.into(),
            from_runtime: false,
            message: truncate(message, MAX_ALERT_LEN),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_cuts_on_char_boundaries_and_frees_the_rest() {
        assert_eq!(truncate("short".into(), 10), "short");
        let cut = truncate("x".repeat(1 << 20), 512);
        assert_eq!(cut.len(), 512);
        assert!(cut.capacity() < 1024, "capacity {}", cut.capacity());
        // 'é' is two bytes: a cut in its middle backs off to before it.
        assert_eq!(truncate("aé".into(), 2), "a");
    }
}
