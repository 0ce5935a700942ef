//! Input checks applied before anything is written.

use crate::{Error, Result};

/// Longest tenant name accepted.
const MAX_TENANT_NAME: usize = 64;
/// Longest password accepted (bytes).
const MAX_PASSWORD: usize = 128;
/// Longest extension number accepted.
const MAX_EXTENSION: usize = 32;

/// A tenant name: 1-64 characters, no surrounding spaces, no control characters.
pub(crate) fn tenant_name(name: &str) -> Result<()> {
    let len = name.chars().count();
    if len == 0 || len > MAX_TENANT_NAME {
        return Err(Error::Invalid(format!(
            "tenant name must be 1-{MAX_TENANT_NAME} characters"
        )));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "tenant name has surrounding spaces or control characters".into(),
        ));
    }
    Ok(())
}

/// Lower-cases `domain` and checks it is a DNS host name (RFC 1123 labels).
pub(crate) fn domain(domain: &str) -> Result<String> {
    let d = domain.to_ascii_lowercase();
    let bad = || Error::Invalid(format!("not a valid domain: {domain:?}"));
    if d.is_empty() || d.len() > 253 {
        return Err(bad());
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(d)
}

/// An extension number: 1-32 characters of `[0-9A-Za-z._-]`.
pub(crate) fn extension_number(number: &str) -> Result<()> {
    let ok = !number.is_empty()
        && number.len() <= MAX_EXTENSION
        && number
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "extension number must be 1-{MAX_EXTENSION} characters of [0-9A-Za-z._-]: {number:?}"
        )))
    }
}

/// A password: 1-128 bytes, no control characters.
pub(crate) fn password(password: &str) -> Result<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(Error::Invalid(format!(
            "password must be 1-{MAX_PASSWORD} bytes"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "password contains control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            domain("PBX.Example.COM").ok(),
            Some("pbx.example.com".into())
        );
        assert_eq!(domain("a-b.c1").ok(), Some("a-b.c1".into()));
        assert_eq!(domain("10.0.0.1").ok(), Some("10.0.0.1".into()));
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a.b.",
            "a b",
            "a_b.c",
            "ä.example",
            "user@host",
            &"a".repeat(64),
            &format!("{}.x", "a.".repeat(130)),
        ] {
            assert!(domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn extension_numbers() {
        for good in ["1", "1000", "alice.smith", "a_b-c", &"9".repeat(32)] {
            assert!(extension_number(good).is_ok(), "{good:?} rejected");
        }
        for bad in ["", "10 00", "a@b", "1:2", "é", &"9".repeat(33)] {
            assert!(extension_number(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_and_names() {
        assert!(password("s3cret: with colon").is_ok());
        assert!(password("").is_err());
        assert!(password("a\nb").is_err());
        assert!(password(&"x".repeat(129)).is_err());
        assert!(tenant_name("Acme Corp").is_ok());
        assert!(tenant_name("").is_err());
        assert!(tenant_name(" acme").is_err());
        assert!(tenant_name("a\tb").is_err());
        assert!(tenant_name(&"n".repeat(65)).is_err());
    }
}
