//! Passwords: the policy new ones must meet, argon2id hashing, and generated
//! secrets (SIP passwords, TOTP secrets).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng;

use crate::{Error, Result};

/// Passwords too common to allow, bundled with the crate.
const COMMON: &str = include_str!("common-passwords.txt");

/// Shortest password accepted.
pub(crate) const MIN_LEN: usize = 12;
/// Longest password accepted (bytes); bounds hashing work.
pub(crate) const MAX_LEN: usize = 256;

/// Checks a new login password: at least 12 characters, at least three of
/// lower case, upper case, digits and other characters, not containing the
/// username, not a common password.
pub fn check_policy(username: &str, password: &str) -> Result<()> {
    let refuse = |why: &str| Err(Error::Invalid(format!("password refused: {why}")));
    if password.chars().count() < MIN_LEN {
        return refuse("it must be at least 12 characters long");
    }
    if password.len() > MAX_LEN {
        return refuse("it is longer than 256 bytes");
    }
    if password.chars().any(char::is_control) {
        return refuse("it contains control characters");
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|&&c| c).count() < 3 {
        return refuse("it must mix at least three of: lower case, upper case, digits, symbols");
    }
    let lower = password.to_lowercase();
    let user = username.to_lowercase();
    if user.chars().count() >= 3 && lower.contains(&user) {
        return refuse("it contains the username");
    }
    if is_common(&lower) {
        return refuse("it is a commonly used password");
    }
    Ok(())
}

/// Checks a SIP password chosen by a person: 12-128 bytes, no control
/// characters, not a common password.
pub(crate) fn check_sip_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_LEN || password.len() > 128 {
        return Err(Error::Invalid(
            "SIP password must be 12-128 characters".into(),
        ));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::Invalid("SIP password has control characters".into()));
    }
    if is_common(&password.to_lowercase()) {
        return Err(Error::Invalid(
            "SIP password is a commonly used password".into(),
        ));
    }
    Ok(())
}

fn is_common(lower: &str) -> bool {
    COMMON
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|l| l.to_lowercase() == lower)
}

/// Hashes a password with argon2id (default parameters, random salt).
pub(crate) fn hash(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("hashing a password: {e}")))
}

/// Whether `password` matches the stored PHC string. A malformed hash never
/// matches.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random password of `len` characters from an unambiguous alphabet.
pub(crate) fn generate(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rejects_weak_passwords() {
        let weak = [
            ("alice", "Sh0rt!"),              // too short
            ("alice", "alllowercaseletters"), // one class
            ("alice", "lowerandupperONLY"),   // two classes
            ("alice", "My-alice-Passw0rd"),   // contains the username
            ("alice", "MY-ALICE-PASSW0RD"),   // ... in any case
            ("alice", "Password1234"),        // common
            ("alice", "qwerty123456"),        // common, and two classes
            ("alice", "P@SSW0RD1234"),        // common, case-insensitively
        ];
        for (user, pw) in weak {
            assert!(check_policy(user, pw).is_err(), "{pw:?} was accepted");
        }
        assert!(check_policy("alice", "correct-Horse-battery-7").is_ok());
        assert!(check_policy("bob", "Tr0ub4dour&3xyz").is_ok());
    }

    #[test]
    fn hash_and_verify() {
        let h = hash("correct-Horse-battery-7").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct-Horse-battery-7", &h));
        assert!(!verify("correct-Horse-battery-8", &h));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn generated_passwords_pass_the_sip_check() {
        let a = generate(20);
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate(20));
        assert!(check_sip_password(&a).is_ok());
        assert!(check_sip_password("short").is_err());
        assert!(check_sip_password("Password1234").is_err());
    }
}
