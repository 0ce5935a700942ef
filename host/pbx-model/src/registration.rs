//! Registrar bindings (RFC 3261 §10) as the SIP core keeps them and
//! `pbx-store`'s `registration` module persists them.
//!
//! The same concept as `pbx-store`'s `registration.rs` at another layer: this one
//! defines a binding, that one persists it.

use serde::{Deserialize, Serialize};

use crate::TenantId;

/// The transport a registration arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
    /// SIP over secure WebSocket (RFC 7118): browsers. Reached only over the
    /// connection they opened; never dialled.
    Wss,
}

/// A phone placing a call, as its INVITE shows it (what a call handler's
/// `call-info` reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerDevice {
    /// Its Contact URI.
    pub contact: String,
    /// Its User-Agent (empty when it sent none).
    pub user_agent: String,
    pub transport: TransportKind,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Wss => "wss",
        }
    }

    /// Whether the hop is encrypted (TLS, or WebSocket over TLS): SDES keys
    /// may go in SDP sent over it, and be taken from SDP received on it.
    pub fn is_secure(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::Wss)
    }

    pub fn parse(s: &str) -> Option<TransportKind> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(TransportKind::Udp),
            "tcp" => Some(TransportKind::Tcp),
            "tls" => Some(TransportKind::Tls),
            "wss" => Some(TransportKind::Wss),
            _ => None,
        }
    }
}

/// One contact binding of an address-of-record (RFC 3261 §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub tenant: TenantId,
    /// The extension number the binding belongs to.
    pub extension: String,
    /// The Contact URI as the phone sent it.
    pub contact: String,
    /// Where the REGISTER came from: requests to the phone go here (NAT).
    pub source: std::net::SocketAddr,
    pub transport: TransportKind,
    /// The host address the REGISTER arrived on (so replies leave from it).
    pub local: std::net::SocketAddr,
    pub call_id: String,
    pub cseq: u32,
    /// Unix milliseconds at which the binding lapses.
    pub expires_at_ms: i64,
    pub user_agent: Option<String>,
    /// The Path header values (RFC 3327) a front proxy added, in order: a
    /// request to the phone is routed through them. Empty without a front.
    pub path: Vec<String>,
    /// The cluster node the binding was made on (empty on a single node).
    pub node: String,
}

/// A change to the registrar's bindings, written behind the SIP path in batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistrationChange {
    /// Insert or replace the binding (key: tenant, extension, contact).
    Upsert(Registration),
    /// Remove one binding.
    Remove {
        tenant: TenantId,
        extension: String,
        contact: String,
    },
}
