//! Alerts: something a provider or tenant should know about, raised by the
//! guard's detectors, the fraud checks and policy plugins, stored by
//! `pbx-store`'s `alert` module and pushed to webhooks.
//!
//! The same concept as `pbx-store`'s `alert.rs` at another layer: this one defines
//! an alert, that one stores it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::TenantId;

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// Every severity, least urgent first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// The lower-case name stored, shown by the API and sent in webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The severity named by [`Severity::as_str`]; `None` for any other text
    /// (never a silent default).
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a provider or tenant should know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = AlertEvent)]
pub struct Alert {
    /// The tenant concerned; `None` for provider-wide alerts (bans, scanners).
    pub tenant: Option<TenantId>,
    pub severity: Severity,
    /// A stable event name such as `fraud.burst` or `sip.ban`.
    pub event: String,
    pub message: String,
    /// When it happened, Unix milliseconds.
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_names_round_trip_and_unknown_names_are_refused() {
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("json");
            assert_eq!(json, format!("\"{s}\""));
        }
        assert_eq!(Severity::parse("Warning"), None);
        assert_eq!(Severity::parse("panic"), None);
        assert_eq!(Severity::parse(""), None);
        assert!(serde_json::from_str::<Severity>("\"panic\"").is_err());
    }
}
