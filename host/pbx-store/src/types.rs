//! Plain data carried between the store and the rest of the host.

use serde::{Deserialize, Serialize};

/// A tenant's id. Every query that reads tenant data takes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TenantId(pub i64);

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether a tenant may place and receive calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<TenantStatus> {
        match s {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            _ => None,
        }
    }
}

/// A tenant as the SIP core needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub status: TenantStatus,
    /// The digest realm: the tenant's first (primary) domain. HA1 values are computed
    /// for this realm, whichever of the tenant's domains a request names.
    pub realm: String,
    /// Every SIP domain of the tenant, lower-case, the primary one first.
    pub domains: Vec<String>,
    /// Whether the tenant's calls must, may or must not use SRTP.
    #[serde(default)]
    pub media_encryption: MediaEncryption,
    /// Digest algorithms offered to the tenant's phones; `None`: the server's
    /// configured default (MD5 alone as shipped).
    #[serde(default)]
    pub digest: Option<DigestAlgorithms>,
}

/// Digest algorithms offered in challenges (one challenge each), most
/// preferred first: a non-empty list without repeats. Written and read as
/// `MD5`, `SHA-256` or both comma-separated (`SHA-256,MD5`), any case.
///
/// MD5 alone is what every phone answers; SHA-256 (RFC 8760) is for phones
/// known to handle it, since some clients give up when offered a challenge
/// they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DigestAlgorithms(Vec<DigestAlgorithm>);

pub use digest_auth::Algorithm as DigestAlgorithm;

impl DigestAlgorithms {
    /// MD5 alone: the shipped default, answered by old and new phones.
    pub fn md5() -> DigestAlgorithms {
        DigestAlgorithms(vec![DigestAlgorithm::Md5])
    }

    /// A list from algorithms in order; empty or repeated lists are refused.
    pub fn new(list: Vec<DigestAlgorithm>) -> Result<DigestAlgorithms, String> {
        if list.is_empty() {
            return Err("no digest algorithm given (use MD5, SHA-256 or both)".into());
        }
        for (i, a) in list.iter().enumerate() {
            if list[..i].contains(a) {
                return Err(format!("digest algorithm {} listed twice", a.as_str()));
            }
        }
        Ok(DigestAlgorithms(list))
    }

    /// Parses `MD5`, `SHA-256`, `SHA-256,MD5` or `MD5,SHA-256` (any case,
    /// spaces allowed around the commas).
    pub fn parse(text: &str) -> Result<DigestAlgorithms, String> {
        let list = text
            .split(',')
            .map(|name| {
                let name = name.trim();
                DigestAlgorithm::parse(name).map_err(|_| {
                    let shown: String = name.chars().take(32).collect();
                    format!("unknown digest algorithm {shown:?} (use MD5 or SHA-256)")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        DigestAlgorithms::new(list)
    }

    /// The algorithms, most preferred first.
    pub fn as_slice(&self) -> &[DigestAlgorithm] {
        &self.0
    }

    /// Whether `algorithm` is one of them.
    pub fn offers(&self, algorithm: DigestAlgorithm) -> bool {
        self.0.contains(&algorithm)
    }
}

impl std::fmt::Display for DigestAlgorithms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

impl From<DigestAlgorithms> for String {
    fn from(d: DigestAlgorithms) -> String {
        d.to_string()
    }
}

/// The `digest_algorithms` column of a tenants or extensions row.
pub(crate) fn stored_digest(
    row: &sqlx::sqlite::SqliteRow,
    whose: impl FnOnce() -> String,
) -> crate::Result<Option<DigestAlgorithms>> {
    use sqlx::Row;
    let text: Option<String> = row.try_get("digest_algorithms")?;
    text.map(|t| {
        DigestAlgorithms::parse(&t).map_err(|e| {
            crate::Error::Invalid(format!(
                "stored {} has digest algorithms {t:?}: {e}",
                whose()
            ))
        })
    })
    .transpose()
}

impl TryFrom<String> for DigestAlgorithms {
    type Error = String;
    fn try_from(s: String) -> Result<DigestAlgorithms, String> {
        DigestAlgorithms::parse(&s)
    }
}

/// A tenant's SRTP policy for anchored media.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaEncryption {
    /// Both legs must use SRTP; a plaintext offer is refused with 488.
    Required,
    /// SRTP on each leg that offers or accepts it over TLS.
    #[default]
    Optional,
    /// Never SRTP.
    Disabled,
}

impl MediaEncryption {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaEncryption::Required => "required",
            MediaEncryption::Optional => "optional",
            MediaEncryption::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<MediaEncryption> {
        match s {
            "required" => Some(MediaEncryption::Required),
            "optional" => Some(MediaEncryption::Optional),
            "disabled" => Some(MediaEncryption::Disabled),
            _ => None,
        }
    }
}

/// An extension's SIP credentials: HA1 digests only, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub tenant: TenantId,
    /// The extension number, e.g. "1000"; also the digest username.
    pub number: String,
    /// hex(MD5(number ":" realm ":" password))
    pub ha1_md5: String,
    /// hex(SHA-256(number ":" realm ":" password))
    pub ha1_sha256: String,
    pub enabled: bool,
    /// Digest algorithms offered to this extension's phone; `None`: its
    /// tenant's choice.
    #[serde(default)]
    pub digest: Option<DigestAlgorithms>,
}

/// Everything the SIP core needs to resolve tenants and check credentials, loaded
/// in one read and swapped in whole when provisioning changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub tenants: Vec<Tenant>,
    pub extensions: Vec<Extension>,
    /// Networks the tenants' phones are limited to (none listed: any).
    pub acls: Vec<crate::NetworkAcl>,
}

/// The transport a registration arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
        }
    }

    pub fn parse(s: &str) -> Option<TransportKind> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(TransportKind::Udp),
            "tcp" => Some(TransportKind::Tcp),
            "tls" => Some(TransportKind::Tls),
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

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Busy => "busy",
            Disposition::NoAnswer => "no-answer",
            Disposition::Cancelled => "cancelled",
            Disposition::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Disposition> {
        Some(match s {
            "answered" => Disposition::Answered,
            "busy" => Disposition::Busy,
            "no-answer" => Disposition::NoAnswer,
            "cancelled" => Disposition::Cancelled,
            "failed" => Disposition::Failed,
            _ => return None,
        })
    }
}

/// One call detail record, tagged by tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Media counters of one leg of a call. "in" is what the leg sent the host,
/// "out" what the host sent it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrMedia {
    /// The caller's leg.
    pub caller: LegMedia,
    /// The callee's leg.
    pub callee: LegMedia,
}
