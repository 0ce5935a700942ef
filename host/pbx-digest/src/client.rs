//! The client side: answering a `401`/`407` that may carry several challenges.
//!
//! A server may offer one challenge per algorithm (RFC 8760 §2.4: it lists them
//! in order of preference, and the client uses the first one it supports). This
//! crate supports `SHA-256` and `MD5`; the strongest one offered is answered,
//! so a server listing `MD5` first cannot make us downgrade.

use crate::{Algorithm, Challenge, Credentials};

impl Algorithm {
    /// Relative strength: a higher value is preferred when answering.
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 => 0,
            Algorithm::Sha256 => 1,
        }
    }
}

/// The challenge to answer among the header values of a `401`
/// (`WWW-Authenticate`) or `407` (`Proxy-Authenticate`): the one with the
/// strongest supported algorithm, the first of equals. Values that do not parse
/// (another scheme, an unsupported algorithm or qop) are skipped; `None` when
/// none is left.
pub fn choose_challenge<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut best: Option<Challenge> = None;
    for challenge in header_values
        .into_iter()
        .filter_map(|v| Challenge::parse(v).ok())
    {
        if best
            .as_ref()
            .is_none_or(|b| challenge.algorithm.strength() > b.algorithm.strength())
        {
            best = Some(challenge);
        }
    }
    best
}

/// Answers the strongest challenge among `header_values` for `method` on
/// `uri` ([`choose_challenge`], then [`Credentials::answer`]). Returns the
/// challenge answered (callers check its nonce to notice a rejected password)
/// with the credentials, or `None` when there is nothing we can answer.
pub fn answer_challenges<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
) -> Option<(Challenge, Credentials)> {
    let challenge = choose_challenge(header_values)?;
    let credentials = Credentials::answer(&challenge, method, uri, username, password, cnonce);
    Some((challenge, credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = r#"Digest realm="carrier", nonce="n-md5", algorithm=MD5, qop="auth""#;
    const SHA: &str = r#"Digest realm="carrier", nonce="n-sha", algorithm=SHA-256, qop="auth""#;

    #[test]
    fn strongest_algorithm_wins_whatever_the_order() {
        for values in [[MD5, SHA], [SHA, MD5]] {
            let c = choose_challenge(values).expect("a challenge");
            assert_eq!(c.algorithm, Algorithm::Sha256);
            assert_eq!(c.nonce, "n-sha");
        }
    }

    #[test]
    fn first_of_equals_and_unusable_values_skipped() {
        let other = r#"Digest realm="carrier", nonce="n2", algorithm=MD5"#;
        let c = choose_challenge([MD5, other]).expect("a challenge");
        assert_eq!(c.nonce, "n-md5");
        let sess = r#"Digest realm="r", nonce="x", algorithm=MD5-sess"#;
        let int = r#"Digest realm="r", nonce="y", qop="auth-int""#;
        let c = choose_challenge(["Basic realm=\"r\"", sess, int, other]).expect("one usable");
        assert_eq!(c.nonce, "n2");
        assert!(choose_challenge([sess, int, "garbage"]).is_none());
        assert!(choose_challenge(std::iter::empty()).is_none());
    }

    #[test]
    fn answer_verifies_against_the_chosen_challenge() {
        let (challenge, creds) =
            answer_challenges([MD5, SHA], "REGISTER", "sip:carrier", "acct", "pw", "cn")
                .expect("answered");
        assert_eq!(challenge.algorithm, Algorithm::Sha256);
        assert_eq!(creds.algorithm, Algorithm::Sha256);
        assert_eq!(creds.nonce, "n-sha");
        let stored = crate::ha1(Algorithm::Sha256, "acct", "carrier", "pw");
        assert!(creds.verify("REGISTER", &stored));
        assert!(!creds.verify("INVITE", &stored));
        let wrong = crate::ha1(Algorithm::Sha256, "acct", "carrier", "other");
        assert!(!creds.verify("REGISTER", &wrong));
        assert!(answer_challenges(["Basic x"], "INVITE", "sip:a", "u", "p", "c").is_none());
    }
}
