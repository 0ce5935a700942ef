//! Call detail records as the SIP core writes them and `pbx-store`'s `cdr`
//! module persists them.
//!
//! The same concept as `pbx-store`'s `cdr.rs` at another layer: this one defines a
//! call record, that one stores and exports it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::TenantId;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Answered, then hung up by either side.
    Answered,
    /// The callee was busy (486/600).
    Busy,
    /// Nobody answered before the caller gave up (CANCEL) or the timeout.
    NoAnswer,
    /// The caller cancelled before an answer.
    Cancelled,
    /// Refused or failed (unknown extension, unregistered callee, error).
    Failed,
    /// Answered, and its node stopped (crashed or lost the database) before
    /// the call ended; the record ends at the node's last heartbeat.
    Dropped,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Busy => "busy",
            Disposition::NoAnswer => "no-answer",
            Disposition::Cancelled => "cancelled",
            Disposition::Failed => "failed",
            Disposition::Dropped => "dropped",
        }
    }

    pub fn parse(s: &str) -> Option<Disposition> {
        Some(match s {
            "answered" => Disposition::Answered,
            "busy" => Disposition::Busy,
            "no-answer" => Disposition::NoAnswer,
            "cancelled" => Disposition::Cancelled,
            "failed" => Disposition::Failed,
            "dropped" => Disposition::Dropped,
            _ => return None,
        })
    }
}

/// One call detail record, tagged by tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "tenant": 1, "caller": "1000", "callee": "1001",
    "started_at_ms": 1700000000000_i64, "answered_at_ms": 1700000002000_i64, "ended_at_ms": 1700000032000_i64,
    "disposition": "answered", "sip_code": 200, "hangup_by": "caller",
    "caller_call_id": "a84b4c76e66710", "callee_call_id": "b93c5d87f77821",
    "media": {
        "caller": {"packets_in": 1500, "bytes_in": 258000, "packets_out": 1500, "bytes_out": 258000, "srtp_auth_failures": 0, "packets_lost": 0},
        "callee": {"packets_in": 1500, "bytes_in": 258000, "packets_out": 1500, "bytes_out": 258000, "srtp_auth_failures": 0, "packets_lost": 0}
    },
    "tags": []
})))]
pub struct Cdr {
    pub tenant: TenantId,
    pub caller: String,
    pub callee: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: i64,
    pub disposition: Disposition,
    /// The final SIP status of the call attempt (200 when answered).
    pub sip_code: u16,
    /// Who ended the call: "caller", "callee", "system".
    pub hangup_by: String,
    pub caller_call_id: String,
    /// The Call-ID of the outbound leg (empty when none was created).
    pub callee_call_id: String,
    /// Media counters of both legs (zero when no media was anchored).
    #[serde(default)]
    pub media: CdrMedia,
    /// Tags the tenant's call handler put on the call (at most 8, each at
    /// most 64 bytes).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Media counters of one leg of a call. "in" is what the leg sent the host,
/// "out" what the host sent it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LegMedia {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// SRTP/SRTCP packets from the leg that failed authentication.
    pub srtp_auth_failures: u64,
    /// RTP packets missing from the leg's sequence numbers.
    pub packets_lost: u64,
}

/// Media counters of a call, per leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CdrMedia {
    /// The caller's leg.
    pub caller: LegMedia,
    /// The callee's leg.
    pub callee: LegMedia,
}
