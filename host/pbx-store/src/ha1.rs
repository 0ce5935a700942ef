//! HA1 digests (RFC 3261 §22.4, RFC 8760): the only form in which SIP passwords
//! are kept.

pub(crate) use digest_auth::Algorithm;

/// hex(H(username ":" realm ":" password)), lower-case.
pub(crate) fn compute_ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    digest_auth::ha1(alg, username, realm, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc2617_example() {
        assert_eq!(
            compute_ha1(
                Algorithm::Md5,
                "Mufasa",
                "testrealm@host.com",
                "Circle Of Life"
            ),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    #[test]
    fn sha256_matches_reference() {
        // printf 'Mufasa:http-auth@example.org:Circle of Life' | sha256sum
        assert_eq!(
            compute_ha1(
                Algorithm::Sha256,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life"
            ),
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
    }
}
