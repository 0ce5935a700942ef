//! Digest authentication of requests against the tenant directory.
//!
//! Unknown domain, unknown extension and wrong password are one outcome to the
//! sender: the same challenge, after the same hashing work (a dummy digest stands in
//! for a missing HA1), so neither the answer nor its timing enumerates anything.
//! A missing or stale credential is the normal first step of a login and is not
//! counted as a failure.

use digest_auth::{Algorithm, Challenge, Credentials, NonceCheck, Nonces};
use store::TenantId;

use crate::DigestAlgorithm;
use crate::directory::{Index, TenantEntry};
use crate::msg::Msg;

/// Which header pair a challenge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// 401 with WWW-Authenticate / Authorization (REGISTER).
    Www,
    /// 407 with Proxy-Authenticate / Proxy-Authorization (INVITE and others).
    Proxy,
}

impl Kind {
    pub(crate) fn status(self) -> (u16, &'static str) {
        match self {
            Kind::Www => (401, "Unauthorized"),
            Kind::Proxy => (407, "Proxy Authentication Required"),
        }
    }

    fn request_header(self) -> &'static str {
        match self {
            Kind::Www => "Authorization",
            Kind::Proxy => "Proxy-Authorization",
        }
    }

    pub(crate) fn challenge_header(self) -> &'static str {
        match self {
            Kind::Www => "WWW-Authenticate",
            Kind::Proxy => "Proxy-Authenticate",
        }
    }
}

/// The result of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Authenticated as this extension of this tenant.
    Ok { tenant: TenantId, extension: String },
    /// Right credentials whose nonce count was already used. `retransmission`
    /// when the request is the one that used it (same Call-ID, CSeq and branch:
    /// a stateless REGISTER has no transaction to absorb its retransmissions);
    /// otherwise a replay.
    Repeated {
        tenant: TenantId,
        extension: String,
        realm: String,
        retransmission: bool,
    },
    /// Challenge the sender. `failure` is set when credentials were presented and
    /// were wrong (feeds brute-force detection); `stale` asks for a fresh nonce only.
    Challenge {
        realm: String,
        stale: bool,
        failure: Option<Failure>,
    },
}

/// Credentials that were presented and did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) reason: &'static str,
    /// The username the credentials named (empty when unreadable).
    pub(crate) user: String,
}

pub(crate) fn failure(reason: &'static str, user: &str) -> Option<Failure> {
    Some(Failure {
        reason,
        user: user.to_owned(),
    })
}

/// Checks the credentials in `msg` for the tenant found from the request's domain.
pub(crate) fn check(
    nonces: &Nonces,
    index: &Index,
    tenant: Option<&TenantEntry>,
    domain: &str,
    msg: &Msg,
    kind: Kind,
    now_ms: i64,
) -> Outcome {
    let realm = tenant.map_or_else(|| domain.to_ascii_lowercase(), |t| t.realm.clone());
    let method = msg.method().unwrap_or("");
    // Pick the credentials for our realm (a request may carry several).
    let creds = msg
        .headers_named(kind.request_header())
        .filter_map(|v| Credentials::parse(v).ok())
        .find(|c| c.realm.eq_ignore_ascii_case(&realm));
    let Some(creds) = creds else {
        let presented = msg.headers_named(kind.request_header()).next().is_some();
        return Outcome::Challenge {
            realm,
            stale: false,
            failure: if presented {
                failure("unusable credentials", "")
            } else {
                None
            },
        };
    };
    let request = nonces.fingerprint(&[
        msg.call_id().as_bytes(),
        msg.header("CSeq").unwrap_or("").as_bytes(),
        msg.top_via()
            .ok()
            .and_then(|v| v.branch)
            .unwrap_or("")
            .as_bytes(),
    ]);
    let mut repeated = None;
    match nonces.check_request(&creds.nonce, creds.nc, Some(request), now_ms) {
        NonceCheck::Valid => {}
        NonceCheck::Stale => {
            return Outcome::Challenge {
                realm,
                stale: true,
                failure: None,
            };
        }
        NonceCheck::Invalid => {
            creds.verify_dummy(method);
            return Outcome::Challenge {
                realm,
                stale: false,
                failure: failure("invalid nonce", &creds.username),
            };
        }
        NonceCheck::Replay => repeated = Some(false),
        NonceCheck::Retransmission => repeated = Some(true),
    }
    let found = tenant.filter(|t| t.active).and_then(|t| {
        index
            .extension(t.id, &creds.username)
            .filter(|e| e.enabled)
            .map(|e| (t.id, e))
    });
    match found {
        Some((tenant_id, ext)) => {
            let ha1 = match creds.algorithm {
                Algorithm::Md5 => &ext.ha1_md5,
                Algorithm::Sha256 => &ext.ha1_sha256,
            };
            if creds.verify(method, ha1) {
                let extension = creds.username.clone();
                if let Some(retransmission) = repeated {
                    Outcome::Repeated {
                        tenant: tenant_id,
                        extension,
                        realm,
                        retransmission,
                    }
                } else {
                    Outcome::Ok {
                        tenant: tenant_id,
                        extension,
                    }
                }
            } else {
                Outcome::Challenge {
                    realm,
                    stale: false,
                    failure: failure("wrong credentials", &creds.username),
                }
            }
        }
        None => {
            creds.verify_dummy(method);
            Outcome::Challenge {
                realm,
                stale: false,
                failure: failure("wrong credentials", &creds.username),
            }
        }
    }
}

/// The challenge header values, one per configured algorithm, most preferred first.
pub(crate) fn challenges(
    nonces: &Nonces,
    algorithms: &[DigestAlgorithm],
    realm: &str,
    stale: bool,
    now_ms: i64,
) -> Vec<String> {
    let nonce = nonces.issue(now_ms);
    algorithms
        .iter()
        .map(|a| {
            Challenge {
                realm: realm.to_string(),
                nonce: nonce.clone(),
                algorithm: match a {
                    DigestAlgorithm::Md5 => Algorithm::Md5,
                    DigestAlgorithm::Sha256 => Algorithm::Sha256,
                },
                stale,
                opaque: None,
            }
            .header_value()
        })
        .collect()
}
