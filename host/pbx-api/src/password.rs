//! Passwords: the policy new ones must meet, argon2id hashing, and generated
//! secrets (SIP passwords, TOTP secrets).

use argon2::Argon2;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use rand::Rng;
use subtle::ConstantTimeEq;

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

/// Most argon2 memory a stored hash may ask for, in 1 KiB blocks (64 MiB):
/// a hash asking for more does not verify.
const MAX_BLOCKS: usize = 64 * 1024;

/// argon2id with memory it allocates once and reuses: the hashing workers each
/// own one, so the memory password checks take is fixed by their number.
#[derive(Default)]
pub(crate) struct Hasher {
    blocks: Vec<argon2::Block>,
}

impl Hasher {
    fn memory(&mut self, count: usize) -> Option<&mut [argon2::Block]> {
        if count > MAX_BLOCKS {
            return None;
        }
        if self.blocks.len() < count {
            self.blocks.resize(count, argon2::Block::default());
        }
        self.blocks.get_mut(..count)
    }

    /// Hashes a password with argon2id (default parameters, random salt) into
    /// a PHC string.
    pub(crate) fn hash(&mut self, password: &str) -> Result<String> {
        let crypto = |e: &dyn std::fmt::Display| Error::Crypto(format!("hashing a password: {e}"));
        let params = argon2::Params::default();
        let argon = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params.clone(),
        );
        let salt: [u8; 16] = rand::random();
        let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
        let memory = self
            .memory(params.block_count())
            .ok_or_else(|| crypto(&"too much memory"))?;
        argon
            .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)
            .map_err(|e| crypto(&e))?;
        let phc = PasswordHash {
            algorithm: argon2::Algorithm::Argon2id.ident(),
            version: Some(argon2::Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| crypto(&e))?,
            salt: Some(Salt::new(&salt).map_err(|e| crypto(&e))?),
            hash: Some(Output::new(&out).map_err(|e| crypto(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the stored PHC string. A malformed hash, or
    /// one asking for more than 64 MiB, never matches.
    pub(crate) fn verify(&mut self, password: &str, phc: &str) -> bool {
        let mut check = || -> Option<bool> {
            let parsed = PasswordHash::new(phc).ok()?;
            let algorithm = argon2::Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
            let version = argon2::Version::try_from(parsed.version?).ok()?;
            let params = argon2::Params::try_from(&parsed).ok()?;
            let salt = parsed.salt?;
            let expected = parsed.hash?;
            let mut out = vec![0u8; expected.len()];
            let argon = Argon2::new(algorithm, version, params.clone());
            let memory = self.memory(params.block_count())?;
            argon
                .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)
                .ok()?;
            Some(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
        };
        check().unwrap_or(false)
    }
}

/// Hashes a password with argon2id (default parameters, random salt), with
/// memory of its own (the CLI; the API uses its hashing workers).
pub(crate) fn hash(password: &str) -> Result<String> {
    Hasher::default().hash(password)
}

/// Whether `password` matches the stored PHC string (see [`Hasher::verify`]).
#[cfg(test)]
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    Hasher::default().verify(password, phc)
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
        // Hashes made by the argon2 crate's own hasher (stored by earlier
        // versions) verify too, and a hash asking for 1 GiB does not.
        use argon2::password_hash::PasswordHasher;
        let theirs = Argon2::default()
            .hash_password(b"correct-Horse-battery-7")
            .expect("hash")
            .to_string();
        assert!(verify("correct-Horse-battery-7", &theirs));
        assert!(!verify("correct-Horse-battery-8", &theirs));
        let greedy = theirs.replace("m=19456", "m=1048576");
        assert!(!verify("correct-Horse-battery-7", &greedy));
    }

    #[test]
    fn the_unknown_user_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(crate::routes::DUMMY_HASH).expect("parses");
        let real_hash = hash("x").expect("hash");
        let real = PasswordHash::new(&real_hash).expect("parses");
        assert_eq!(
            argon2::Params::try_from(&dummy).expect("params"),
            argon2::Params::try_from(&real).expect("params")
        );
        assert_eq!(dummy.algorithm, real.algorithm);
        assert!(!verify(
            "no-such-user-Placeholder-1",
            crate::routes::DUMMY_HASH
        ));
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
