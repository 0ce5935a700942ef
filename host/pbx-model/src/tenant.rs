//! A tenant and what it owns: its SIP domains, extensions (as HA1 digests),
//! allowed networks and media and digest settings. `pbx-store`'s `tenant`,
//! `extension` and `acl` modules persist these; this is the same concept
//! without the rows.
//!
//! The same concept as `pbx-store`'s `tenant.rs` at another layer: this one defines
//! a tenant, that one stores it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A tenant's id. Every query that reads tenant data takes one of these.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub struct TenantId(pub i64);

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether a tenant may place and receive calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"id": 1, "name": "acme", "status": "active", "realm": "acme.example", "domains": ["acme.example"], "media_encryption": "optional", "digest": null})))]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, examples("SHA-256,MD5"))]
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

impl TryFrom<String> for DigestAlgorithms {
    type Error = String;
    fn try_from(s: String) -> Result<DigestAlgorithms, String> {
        DigestAlgorithms::parse(&s)
    }
}

/// A tenant's SRTP policy for anchored media.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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

/// One allowed network, for the whole tenant or one extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAcl {
    pub tenant: TenantId,
    pub extension: Option<String>,
    /// An address or CIDR network, in canonical form.
    pub cidr: String,
}

/// Everything the SIP core needs to resolve tenants and check credentials, loaded
/// in one read and swapped in whole when provisioning changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub tenants: Vec<Tenant>,
    pub extensions: Vec<Extension>,
    /// Networks the tenants' phones are limited to (none listed: any).
    pub acls: Vec<NetworkAcl>,
}
