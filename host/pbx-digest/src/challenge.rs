//! Algorithms, the HA1 secret and the `WWW-Authenticate` challenge.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::{Error, Result, bounded};

/// A digest hash algorithm (RFC 7616 §3.3, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `MD5`, the default when a header names no algorithm.
    #[default]
    Md5,
    /// `SHA-256`.
    Sha256,
}

impl Algorithm {
    /// The name used on the wire: `"MD5"` or `"SHA-256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses a wire name, case-insensitively. The `-sess` variants and anything
    /// else are refused.
    pub fn parse(name: &str) -> Result<Algorithm> {
        if name.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(Error::UnsupportedAlgorithm(bounded(name)))
        }
    }

    /// Length in hex characters of a hash from this algorithm.
    pub(crate) fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// Lower-hex hash of the parts joined by `:`.
    pub(crate) fn hash_joined(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(joined::<Md5>(parts)),
            Algorithm::Sha256 => hex::encode(joined::<Sha256>(parts)),
        }
    }
}

fn joined<D: Digest>(parts: &[&[u8]]) -> impl AsRef<[u8]> {
    let mut hasher = D::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b":");
        }
        hasher.update(part);
    }
    hasher.finalize()
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Algorithm> {
        Algorithm::parse(s)
    }
}

/// The stored secret `H(username:realm:password)` in lower hex.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// A digest challenge, rendered into a `WWW-Authenticate` (401) or
/// `Proxy-Authenticate` (407) header value. It always offers `qop="auth"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The protection realm; for this PBX the tenant's domain.
    pub realm: String,
    /// A nonce, normally from [`crate::Nonces::issue`].
    pub nonce: String,
    /// The algorithm the client must use.
    pub algorithm: Algorithm,
    /// Set when the client's nonce went stale but its response was right, so it
    /// retries with the new nonce without asking the user (RFC 7616 §3.3).
    pub stale: bool,
    /// Opaque data the client must echo back.
    pub opaque: Option<String>,
}

impl Challenge {
    /// Parses a challenge received from a server (the client side, e.g. a trunk
    /// challenging our INVITE). A `qop` list is accepted when it offers `auth`;
    /// a challenge offering only other qop values is an error.
    pub fn parse(header_value: &str) -> crate::Result<Challenge> {
        let mut realm = None;
        let mut nonce = None;
        let mut algorithm = Algorithm::Md5;
        let mut stale = false;
        let mut opaque = None;
        let mut qop_ok = true;
        for (name, value) in crate::credentials::parse_params(header_value)? {
            match name.as_str() {
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "algorithm" => algorithm = Algorithm::parse(&value)?,
                "stale" => stale = value.eq_ignore_ascii_case("true"),
                "opaque" => opaque = Some(value),
                "qop" => {
                    qop_ok = value
                        .split(',')
                        .any(|q| q.trim().eq_ignore_ascii_case("auth"));
                }
                _ => {}
            }
        }
        if !qop_ok {
            return Err(crate::Error::MissingParam("qop=auth"));
        }
        Ok(Challenge {
            realm: realm.ok_or(crate::Error::MissingParam("realm"))?,
            nonce: nonce.ok_or(crate::Error::MissingParam("nonce"))?,
            algorithm,
            stale,
            opaque,
        })
    }

    /// The header value, e.g.
    /// `Digest realm="acme.example", nonce="...", algorithm=SHA-256, qop="auth"`,
    /// followed by `, stale=TRUE` when stale and `, opaque="..."` when set.
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(96 + self.realm.len() + self.nonce.len());
        out.push_str("Digest realm=");
        push_quoted(&mut out, &self.realm);
        out.push_str(", nonce=");
        push_quoted(&mut out, &self.nonce);
        out.push_str(", algorithm=");
        out.push_str(self.algorithm.as_str());
        out.push_str(", qop=\"auth\"");
        if self.stale {
            out.push_str(", stale=TRUE");
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(", opaque=");
            push_quoted(&mut out, opaque);
        }
        out
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

/// Appends `value` as a quoted-string (RFC 3261 §25.1): `"` and `\` are escaped
/// with a backslash; CR, LF and other control characters (which no quoted-string
/// can carry) are dropped so that a value can never break out of its header.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::parse("md5"), Ok(Algorithm::Md5));
        assert_eq!(Algorithm::parse("MD5"), Ok(Algorithm::Md5));
        assert_eq!(Algorithm::parse("sha-256"), Ok(Algorithm::Sha256));
        assert_eq!("SHA-256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!(Algorithm::Md5.as_str(), "MD5");
        assert_eq!(Algorithm::Sha256.to_string(), "SHA-256");
        for bad in [
            "MD5-sess",
            "SHA-256-sess",
            "SHA-512-256",
            "SHA256",
            "",
            " MD5",
        ] {
            assert!(
                matches!(Algorithm::parse(bad), Err(Error::UnsupportedAlgorithm(_))),
                "{bad:?} accepted"
            );
        }
        let long = "x".repeat(1000);
        let Err(Error::UnsupportedAlgorithm(kept)) = Algorithm::parse(&long) else {
            panic!("long name accepted");
        };
        assert_eq!(kept.len(), 32);
    }

    #[test]
    fn ha1_vectors() {
        // RFC 2617 §3.5.
        assert_eq!(
            ha1(
                Algorithm::Md5,
                "Mufasa",
                "testrealm@host.com",
                "Circle Of Life"
            ),
            "939e7578ed9e3c518a452acee763bce9"
        );
        let sha = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(sha.len(), 64);
        assert!(
            sha.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn header_value_plain() {
        let c = Challenge {
            realm: "acme.example".into(),
            nonce: "abc".into(),
            algorithm: Algorithm::Sha256,
            stale: false,
            opaque: None,
        };
        assert_eq!(
            c.header_value(),
            r#"Digest realm="acme.example", nonce="abc", algorithm=SHA-256, qop="auth""#
        );
    }

    #[test]
    fn header_value_stale_opaque_and_escaping() {
        let c = Challenge {
            realm: "we\"ird\\realm\r\nX-Injected: 1".into(),
            nonce: "n".into(),
            algorithm: Algorithm::Md5,
            stale: true,
            opaque: Some("op\"q".into()),
        };
        assert_eq!(
            c.to_string(),
            r#"Digest realm="we\"ird\\realmX-Injected: 1", nonce="n", algorithm=MD5, qop="auth", stale=TRUE, opaque="op\"q""#
        );
    }

    #[test]
    fn rendered_challenge_parses_back_as_parameters() {
        let c = Challenge {
            realm: "a \"b\" \\c".into(),
            nonce: "n1".into(),
            algorithm: Algorithm::Md5,
            stale: false,
            opaque: None,
        };
        let params = crate::credentials::parse_params(&c.header_value()).expect("parses");
        assert!(params.contains(&("realm".to_owned(), "a \"b\" \\c".to_owned())));
    }
}
