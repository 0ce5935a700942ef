//! Digest authentication of requests against the tenant directory.
//!
//! Unknown domain, unknown extension and wrong password are one outcome to the
//! sender: the same challenge, after the same hashing work (a dummy digest stands in
//! for a missing HA1), so neither the answer nor its timing enumerates anything.
//! A missing or stale credential is the normal first step of a login and is not
//! counted as a failure.
//!
//! Which algorithms a phone is challenged with is the provider's choice per
//! extension, else per tenant, else the configured default (MD5 alone as
//! shipped); an answer in an algorithm its extension is not offered fails.
//! An unknown user gets what an extension without its own choice gets, so
//! only an extension given its own choice can be told apart by its challenge.
//!
//! A request over secure WebSocket may instead present a short-lived
//! credential ([`digest_auth::ephemeral`]): its username names the extension
//! and expiry, and its password is derived, not stored. Over any other
//! transport such a username is just an unknown user.

use digest_auth::ephemeral::EphemeralError;
use digest_auth::{Challenge, Credentials, EphemeralKey, NonceCheck, Nonces};
use model::{DigestAlgorithms, TenantId};

use crate::directory::{Index, TenantEntry};
use crate::msg::{Msg, SipUri};

/// Which header pair a challenge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// 401 with WWW-Authenticate / Authorization (REGISTER).
    Www,
    /// 407 with Proxy-Authenticate / Proxy-Authorization (INVITE and others).
    Proxy,
}

impl Kind {
    /// The refusal a request without valid credentials gets.
    pub(crate) fn refusal(self) -> crate::Error {
        match self {
            Kind::Www => crate::Error::Unauthorized,
            Kind::Proxy => crate::Error::ProxyAuthenticationRequired,
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
    /// Right credentials of a disabled extension or a suspended tenant: refused
    /// (403) without counting as a failure, so a suspended phone that keeps
    /// retrying does not get its address (and the office behind it) banned.
    Suspended { tenant: TenantId, extension: String },
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

/// Checks the credentials in `msg` for the tenant found from the request's
/// domain; `default` is what is offered where neither the extension nor its
/// tenant chose.
#[allow(clippy::too_many_arguments)] // one call site; each argument is a distinct input
pub(crate) fn check(
    nonces: &Nonces,
    index: &Index,
    tenant: Option<&TenantEntry>,
    domain: &str,
    msg: &Msg,
    kind: Kind,
    default: &DigestAlgorithms,
    short_lived: Option<&EphemeralKey>,
    now_ms: i64,
) -> Outcome {
    let realm = tenant.map_or_else(|| domain.to_ascii_lowercase(), |t| t.realm.clone());
    let method = msg.method().map_or("", crate::msg::method_name);
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
            .and_then(|v| v.branch())
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
    // The extension the credentials are for, and its HA1 when derived from a
    // short-lived password rather than stored.
    let (name, derived_ha1) = match short_lived
        .zip(tenant)
        .map(|(key, t)| key.check(t.id.0, &creds.username, now_ms.div_euclid(1000)))
    {
        Some(Ok((extension, password))) => (
            extension,
            Some(digest_auth::ha1(
                creds.algorithm,
                &creds.username,
                &realm,
                &password,
            )),
        ),
        Some(Err(EphemeralError::Expired | EphemeralError::TooLong)) => {
            creds.verify_dummy(method);
            return Outcome::Challenge {
                realm,
                stale: false,
                failure: failure("short-lived credentials expired", &creds.username),
            };
        }
        Some(Err(EphemeralError::NotEphemeral)) | None => (creds.username.as_str(), None),
    };
    let found = tenant.and_then(|t| {
        index
            .extension(t.id, name)
            .map(|e| (t.id, t.active && e.enabled, e))
    });
    match found {
        Some((tenant_id, usable, ext)) => {
            let stored = match creds.algorithm {
                digest_auth::Algorithm::Md5 => &ext.ha1_md5,
                digest_auth::Algorithm::Sha256 => &ext.ha1_sha256,
            };
            let verified = creds.verify(method, derived_ha1.as_ref().unwrap_or(stored));
            let offered = index
                .digest_algorithms(tenant, name, default)
                .offers(creds.algorithm);
            if verified && !offered {
                return Outcome::Challenge {
                    realm,
                    stale: false,
                    failure: failure("algorithm not offered", &creds.username),
                };
            }
            if verified && !usable {
                // The right password of a suspended extension (or tenant): a
                // phone to stop, not a guess; nothing is revealed to anyone
                // without the password.
                return Outcome::Suspended {
                    tenant: tenant_id,
                    extension: name.to_owned(),
                };
            }
            if verified {
                let extension = name.to_owned();
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

/// The user a challenge is for: the username of presented credentials, else
/// the From user (the one who authenticates, for REGISTER and INVITE alike).
pub(crate) fn challenged_user(msg: &Msg, kind: Kind) -> String {
    msg.headers_named(kind.request_header())
        .find_map(|v| Credentials::parse(v).ok())
        .map(|c| c.username)
        .or_else(|| {
            let from = msg.from().ok()?;
            SipUri::parse(from.uri).and_then(|p| p.user.map(str::to_owned))
        })
        .unwrap_or_default()
}

/// The challenge header values, one per offered algorithm, most preferred first.
pub(crate) fn challenges(
    nonces: &Nonces,
    algorithms: &DigestAlgorithms,
    realm: &str,
    stale: bool,
    now_ms: i64,
) -> Vec<String> {
    let nonce = nonces.issue(now_ms);
    algorithms
        .as_slice()
        .iter()
        .map(|&algorithm| {
            Challenge {
                realm: realm.to_string(),
                nonce: nonce.clone(),
                algorithm,
                stale,
                opaque: None,
            }
            .header_value()
        })
        .collect()
}
