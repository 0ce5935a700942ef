//! Short-lived SIP credentials for browser phones.
//!
//! A browser phone must never hold its extension's long-term SIP password:
//! the page would keep it in script memory, where any script injection reads
//! it. Instead the admin API gives a logged-in user a username and password
//! that are good for one extension, over secure WebSocket only, until a
//! stated time. Nothing is stored: the username carries the extension and
//! the expiry (`webrtc.<expires, Unix seconds>.<extension>`) and the password
//! is an HMAC over the tenant, extension and expiry with a key derived from
//! the data directory's secret key, so every node of a cluster (sharing that
//! key) checks what any API node issued, and a credential cannot be bent to
//! another extension, tenant or expiry. Changing the secret key revokes them
//! all; otherwise they end at their expiry, which is at most
//! [`MAX_LIFETIME_S`] away.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// How a short-lived username starts.
pub const PREFIX: &str = "webrtc.";

/// The longest lifetime a short-lived credential may have.
pub const MAX_LIFETIME_S: i64 = 12 * 3600;

/// The key short-lived credentials are made and checked with.
#[derive(Clone)]
pub struct EphemeralKey([u8; 32]);

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EphemeralKey(..)")
    }
}

/// A short-lived credential: what a browser phone authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ephemeral {
    pub username: String,
    pub password: String,
    /// When it stops working, Unix seconds.
    pub expires_s: i64,
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl EphemeralKey {
    /// Derives the key from the host's secret (a label keeps it apart from
    /// every other use of that secret).
    pub fn derive(secret: &[u8; 32]) -> EphemeralKey {
        EphemeralKey(mac(secret, &[b"pbx short-lived sip credentials v1"]))
    }

    fn password(&self, tenant: i64, extension: &str, expires_s: i64) -> String {
        let tag = mac(
            &self.0,
            &[
                &tenant.to_be_bytes(),
                extension.as_bytes(),
                &expires_s.to_be_bytes(),
            ],
        );
        hex::encode(&tag[..16])
    }

    /// A credential for `extension` of `tenant` that works until `expires_s`.
    pub fn issue(&self, tenant: i64, extension: &str, expires_s: i64) -> Ephemeral {
        Ephemeral {
            username: format!("{PREFIX}{expires_s}.{extension}"),
            password: self.password(tenant, extension, expires_s),
            expires_s,
        }
    }

    /// The password of a short-lived `username` in `tenant`, if it is one and
    /// is good at `now_s` (not expired, and not claiming a lifetime longer
    /// than [`MAX_LIFETIME_S`]): `(extension, password)`.
    pub fn check<'u>(
        &self,
        tenant: i64,
        username: &'u str,
        now_s: i64,
    ) -> Result<(&'u str, String), EphemeralError> {
        let (expires_s, extension) = parse(username).ok_or(EphemeralError::NotEphemeral)?;
        if expires_s <= now_s {
            return Err(EphemeralError::Expired);
        }
        if expires_s - now_s > MAX_LIFETIME_S {
            return Err(EphemeralError::TooLong);
        }
        Ok((extension, self.password(tenant, extension, expires_s)))
    }
}

/// Why a username gives no short-lived password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralError {
    /// It is not of the short-lived form.
    NotEphemeral,
    /// Its time is over.
    Expired,
    /// It claims to last longer than any credential is issued for.
    TooLong,
}

/// `(expires_s, extension)` of a short-lived username.
pub fn parse(username: &str) -> Option<(i64, &str)> {
    let rest = username.strip_prefix(PREFIX)?;
    let (expires, extension) = rest.split_once('.')?;
    if extension.is_empty() || expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((expires.parse().ok()?, extension))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn an_issued_credential_checks_until_it_expires() {
        let key = EphemeralKey::derive(&[9; 32]);
        let issued = key.issue(3, "1000", NOW + 600);
        assert_eq!(issued.username, format!("webrtc.{}.1000", NOW + 600));
        assert_eq!(issued.password.len(), 32);
        let (ext, password) = key.check(3, &issued.username, NOW).expect("good");
        assert_eq!((ext, password.as_str()), ("1000", issued.password.as_str()));
        assert_eq!(
            key.check(3, &issued.username, NOW + 600),
            Err(EphemeralError::Expired)
        );
    }

    #[test]
    fn a_credential_is_bound_to_its_tenant_extension_expiry_and_key() {
        let key = EphemeralKey::derive(&[9; 32]);
        let issued = key.issue(3, "1000", NOW + 600);
        let other_tenant = key.check(4, &issued.username, NOW).expect("form").1;
        assert_ne!(other_tenant, issued.password);
        let other_ext = key.issue(3, "1001", NOW + 600).password;
        assert_ne!(other_ext, issued.password);
        let later = key.issue(3, "1000", NOW + 601).password;
        assert_ne!(later, issued.password);
        let other_key = EphemeralKey::derive(&[8; 32]).issue(3, "1000", NOW + 600);
        assert_ne!(other_key.password, issued.password);
    }

    #[test]
    fn only_the_short_lived_form_within_the_longest_lifetime_is_taken() {
        let key = EphemeralKey::derive(&[9; 32]);
        for not in [
            "1000",
            "webrtc.",
            "webrtc.12",
            "webrtc..1000",
            "webrtc.x1.1000",
            "webrtc.1.",
        ] {
            assert_eq!(
                key.check(1, not, NOW),
                Err(EphemeralError::NotEphemeral),
                "{not}"
            );
        }
        let far = format!("webrtc.{}.1000", NOW + MAX_LIFETIME_S + 1);
        assert_eq!(key.check(1, &far, NOW), Err(EphemeralError::TooLong));
        assert_eq!(parse("webrtc.5.1.2"), Some((5, "1.2")));
    }
}
