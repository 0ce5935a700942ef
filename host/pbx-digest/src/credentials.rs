//! The `Authorization` header: a robust parameter parser and response checking.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::challenge::push_quoted;
use crate::{Algorithm, Error, Result, bounded};

/// Most parameters one header may carry; more is refused as malformed.
const MAX_PARAMS: usize = 64;

/// Digest credentials sent by a client (RFC 3261 §22.4, RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (for this PBX, the extension's SIP user).
    pub username: String,
    /// The realm the client answers for.
    pub realm: String,
    /// The nonce from the challenge.
    pub nonce: String,
    /// The `digest-uri`, hashed into HA2.
    pub uri: String,
    /// The client's response hash, in hex.
    pub response: String,
    /// The hash algorithm; MD5 when the header names none.
    pub algorithm: Algorithm,
    /// Client nonce; required when `qop` is present.
    pub cnonce: Option<String>,
    /// Nonce count, sent as eight hex digits; required when `qop` is present.
    pub nc: Option<u32>,
    /// Quality of protection; only `auth` can verify.
    pub qop: Option<String>,
    /// Opaque value echoed from the challenge.
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parses a header value such as
    /// `Digest username="alice", realm="acme.example", nonce="...", uri="sip:acme.example", response="..."`.
    ///
    /// The scheme is matched case-insensitively, parameter names too; values may
    /// be tokens or quoted strings with backslash escapes; whitespace (including
    /// folded line breaks) may surround every separator. Unknown parameters are
    /// ignored, a repeated parameter or a missing required one is an error, and
    /// when `qop` is present `cnonce` and `nc` are required.
    pub fn parse(header_value: &str) -> Result<Credentials> {
        let params = parse_params(header_value)?;
        let mut username = None;
        let mut realm = None;
        let mut nonce = None;
        let mut uri = None;
        let mut response = None;
        let mut algorithm = Algorithm::Md5;
        let mut cnonce = None;
        let mut nc = None;
        let mut qop = None;
        let mut opaque = None;
        for (name, value) in params {
            match name.as_str() {
                "username" => username = Some(value),
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "uri" => uri = Some(value),
                "response" => response = Some(value),
                "algorithm" => algorithm = Algorithm::parse(&value)?,
                "cnonce" => cnonce = Some(value),
                "nc" => nc = Some(parse_nc(&value)?),
                "qop" => qop = Some(value),
                "opaque" => opaque = Some(value),
                _ => {}
            }
        }
        if qop.is_some() {
            if cnonce.is_none() {
                return Err(Error::MissingParam("cnonce"));
            }
            if nc.is_none() {
                return Err(Error::MissingParam("nc"));
            }
        }
        Ok(Credentials {
            username: username.ok_or(Error::MissingParam("username"))?,
            realm: realm.ok_or(Error::MissingParam("realm"))?,
            nonce: nonce.ok_or(Error::MissingParam("nonce"))?,
            uri: uri.ok_or(Error::MissingParam("uri"))?,
            response: response.ok_or(Error::MissingParam("response"))?,
            algorithm,
            cnonce,
            nc,
            qop,
            opaque,
        })
    }

    /// The response a client knowing `ha1_hex` would send for `method`, in lower
    /// hex; `None` when it cannot be computed (a `qop` other than `auth`, or `qop`
    /// without `cnonce`/`nc`). `nc` is hashed in its canonical form, eight lower
    /// hex digits.
    pub fn expected_response(&self, method: &str, ha1_hex: &str) -> Option<String> {
        let alg = self.algorithm;
        let ha1 = ha1_hex.to_ascii_lowercase();
        let ha2 = alg.hash_joined(&[method.as_bytes(), self.uri.as_bytes()]);
        match &self.qop {
            None => Some(alg.hash_joined(&[ha1.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()])),
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let cnonce = self.cnonce.as_ref()?;
                let nc = format!("{:08x}", self.nc?);
                Some(alg.hash_joined(&[
                    ha1.as_bytes(),
                    self.nonce.as_bytes(),
                    nc.as_bytes(),
                    cnonce.as_bytes(),
                    qop.as_bytes(),
                    ha2.as_bytes(),
                ]))
            }
            Some(_) => None,
        }
    }

    /// Whether the response matches the stored `ha1_hex` for this request
    /// `method`. The comparison runs in constant time; hex case in the received
    /// response is ignored. `qop=auth-int` is unsupported and never verifies.
    ///
    /// This checks the hash only: the caller checks the nonce with
    /// [`crate::Nonces::check`] and that `realm` is the one it challenged with.
    pub fn verify(&self, method: &str, ha1_hex: &str) -> bool {
        let Some(expected) = self.expected_response(method, ha1_hex) else {
            return false;
        };
        let received = self.response.to_ascii_lowercase();
        expected.as_bytes().ct_eq(received.as_bytes()).into()
    }

    /// Does the same hashing and comparison as [`Credentials::verify`] against a
    /// fixed dummy HA1 and discards the outcome: call it for an unknown user so
    /// the time taken does not reveal that the user does not exist.
    pub fn verify_dummy(&self, method: &str) {
        let dummy = "0".repeat(self.algorithm.hex_len());
        let outcome = self.verify(method, &dummy);
        std::hint::black_box(outcome);
    }

    /// The client side: credentials answering `challenge` for `method` on `uri`
    /// with `username` and `password`, using `qop=auth` with the given client
    /// nonce and `nc=1`.
    pub fn answer(
        challenge: &crate::Challenge,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        cnonce: &str,
    ) -> Credentials {
        let mut credentials = Credentials {
            username: username.to_string(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_string(),
            response: String::new(),
            algorithm: challenge.algorithm,
            cnonce: Some(cnonce.to_string()),
            nc: Some(1),
            qop: Some("auth".into()),
            opaque: challenge.opaque.clone(),
        };
        let ha1 = crate::ha1(challenge.algorithm, username, &challenge.realm, password);
        credentials.response = credentials
            .expected_response(method, &ha1)
            .unwrap_or_default();
        credentials
    }

    /// Renders these credentials as an `Authorization` header value (the client
    /// side, e.g. when registering to a trunk).
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(160 + self.uri.len() + self.nonce.len());
        out.push_str("Digest username=");
        push_quoted(&mut out, &self.username);
        out.push_str(", realm=");
        push_quoted(&mut out, &self.realm);
        out.push_str(", nonce=");
        push_quoted(&mut out, &self.nonce);
        out.push_str(", uri=");
        push_quoted(&mut out, &self.uri);
        out.push_str(", response=");
        push_quoted(&mut out, &self.response);
        out.push_str(", algorithm=");
        out.push_str(self.algorithm.as_str());
        if let Some(cnonce) = &self.cnonce {
            out.push_str(", cnonce=");
            push_quoted(&mut out, cnonce);
        }
        if let Some(nc) = self.nc {
            out.push_str(&format!(", nc={nc:08x}"));
        }
        if let Some(qop) = &self.qop {
            // qop is a token; quote it only if it is not one.
            out.push_str(", qop=");
            if !qop.is_empty() && qop.chars().all(is_token_char) {
                out.push_str(qop);
            } else {
                push_quoted(&mut out, qop);
            }
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(", opaque=");
            push_quoted(&mut out, opaque);
        }
        out
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

fn parse_nc(value: &str) -> Result<u32> {
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidNc);
    }
    u32::from_str_radix(value, 16).map_err(|_| Error::InvalidNc)
}

/// RFC 3261 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Linear whitespace, folded line breaks included.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        Some(c)
    }

    /// Skips whitespace; returns whether any was skipped.
    fn skip_ws(&mut self) -> bool {
        let before = self.rest.len();
        self.rest = self.rest.trim_start_matches(is_ws);
        self.rest.len() != before
    }

    fn token(&mut self) -> &'a str {
        let end = self
            .rest
            .find(|c: char| !is_token_char(c))
            .unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token
    }

    /// Reads a quoted string after its opening quote, undoing backslash escapes.
    fn quoted(&mut self) -> Result<String> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(Error::Malformed("unterminated quoted string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return Err(Error::Malformed("unterminated quoted string")),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

/// Checks the `Digest` scheme and splits the parameters into `(lower-case name,
/// unescaped value)` pairs, in order, refusing duplicates.
pub(crate) fn parse_params(header_value: &str) -> Result<Vec<(String, String)>> {
    let mut cur = Cursor { rest: header_value };
    cur.skip_ws();
    if !cur.token().eq_ignore_ascii_case("Digest") {
        return Err(Error::NotDigest);
    }
    let mut params: Vec<(String, String)> = Vec::new();
    if !cur.skip_ws() {
        return match cur.peek() {
            None => Ok(params),
            Some(_) => Err(Error::NotDigest),
        };
    }
    if cur.peek().is_none() {
        return Ok(params);
    }
    loop {
        cur.skip_ws();
        let name = cur.token();
        if name.is_empty() {
            return Err(Error::Malformed("expected a parameter name"));
        }
        cur.skip_ws();
        if cur.bump() != Some('=') {
            return Err(Error::Malformed("expected '=' after a parameter name"));
        }
        cur.skip_ws();
        let value = if cur.peek() == Some('"') {
            cur.bump();
            cur.quoted()?
        } else {
            let token = cur.token();
            if token.is_empty() {
                return Err(Error::Malformed("expected a parameter value"));
            }
            token.to_owned()
        };
        if params.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(Error::DuplicateParam(bounded(name)));
        }
        if params.len() == MAX_PARAMS {
            return Err(Error::Malformed("too many parameters"));
        }
        params.push((name.to_ascii_lowercase(), value));
        cur.skip_ws();
        match cur.bump() {
            None => return Ok(params),
            Some(',') => {}
            Some(_) => return Err(Error::Malformed("expected ',' between parameters")),
        }
    }
}

#[cfg(test)]
mod answer_tests {
    use super::*;
    use crate::{Algorithm, Challenge};

    #[test]
    fn an_answer_to_a_parsed_challenge_verifies() {
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let sent = Challenge {
                realm: "carrier.example".into(),
                nonce: "abc123".into(),
                algorithm: alg,
                stale: false,
                opaque: Some("op".into()),
            };
            let parsed = Challenge::parse(&sent.header_value()).unwrap();
            assert_eq!(parsed, sent);
            let creds = Credentials::answer(
                &parsed,
                "INVITE",
                "sip:15551234@carrier.example",
                "acct",
                "s3cret",
                "cn0nce",
            );
            let back = Credentials::parse(&creds.header_value()).unwrap();
            let ha1 = crate::ha1(alg, "acct", "carrier.example", "s3cret");
            assert!(back.verify("INVITE", &ha1));
            assert!(!back.verify("BYE", &ha1));
            assert_eq!(back.opaque.as_deref(), Some("op"));
        }
    }

    #[test]
    fn a_challenge_without_auth_qop_or_nonce_is_refused() {
        assert!(Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").is_err());
        assert!(Challenge::parse("Digest realm=\"r\"").is_err());
        assert!(Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth,auth-int\"").is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha1;
    use proptest::prelude::*;

    const RFC2617: &str = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    #[test]
    fn rfc2617_example_verifies() {
        let c = Credentials::parse(RFC2617).expect("parses");
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.realm, "testrealm@host.com");
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.cnonce.as_deref(), Some("0a4f113b"));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert_eq!(c.algorithm, Algorithm::Md5);
        let secret = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(c.verify("GET", &secret));
        assert!(c.verify("GET", &secret.to_ascii_uppercase()));
        assert!(!c.verify("POST", &secret));
        let wrong = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "circle of life",
        );
        assert!(!c.verify("GET", &wrong));
        let mut upper = c.clone();
        upper.response = upper.response.to_ascii_uppercase();
        assert!(upper.verify("GET", &secret));
        let mut replayed_nc = c.clone();
        replayed_nc.nc = Some(2);
        assert!(!replayed_nc.verify("GET", &secret));
    }

    #[test]
    fn rfc7616_sha256_example_verifies() {
        let header = r#"Digest username="Mufasa", realm="http-auth@example.org",
            uri="/dir/index.html", algorithm=SHA-256,
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001,
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth,
            response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = Credentials::parse(header).expect("parses");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let secret = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(
            c.expected_response("GET", &secret).as_deref(),
            Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        );
        assert!(c.verify("GET", &secret));
        // The same exchange under MD5 gives the RFC's MD5 response.
        let mut md5 = c.clone();
        md5.algorithm = Algorithm::Md5;
        let md5_secret = ha1(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(
            md5.expected_response("GET", &md5_secret).as_deref(),
            Some("8ca523f5e9506fed4657c9700eebdbec")
        );
        assert!(!c.verify("GET", &md5_secret));
    }

    #[test]
    fn rfc2069_form_without_qop() {
        let secret = ha1(Algorithm::Md5, "bob", "r", "pw");
        let mut c = Credentials::parse(
            r#"Digest username="bob", realm="r", nonce="n", uri="sip:r", response="x""#,
        )
        .expect("parses");
        assert_eq!(c.qop, None);
        assert_eq!(c.nc, None);
        let ha2 = Algorithm::Md5.hash_joined(&[b"REGISTER", b"sip:r"]);
        let expected = Algorithm::Md5.hash_joined(&[secret.as_bytes(), b"n", ha2.as_bytes()]);
        c.response = expected;
        assert!(c.verify("REGISTER", &secret));
        assert!(!c.verify("INVITE", &secret));
    }

    #[test]
    fn auth_int_never_verifies() {
        let secret = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let mut c = Credentials::parse(RFC2617).expect("parses");
        c.qop = Some("auth-int".into());
        assert_eq!(c.expected_response("GET", &secret), None);
        assert!(!c.verify("GET", &secret));
        c.verify_dummy("GET");
        let mut missing = Credentials::parse(RFC2617).expect("parses");
        missing.cnonce = None;
        assert!(!missing.verify("GET", &secret));
    }

    #[test]
    fn verify_dummy_runs_for_both_algorithms() {
        let mut c = Credentials::parse(RFC2617).expect("parses");
        c.verify_dummy("GET");
        c.algorithm = Algorithm::Sha256;
        c.verify_dummy("GET");
        // The dummy HA1 never matches a real response.
        assert!(!c.verify("GET", &"0".repeat(64)));
    }

    #[test]
    fn parse_edge_cases() {
        // Scheme case, odd whitespace, token values, escapes, unknown params.
        let c = Credentials::parse(
            "  dIgEsT\tusername = \"al\\\"ice\" ,realm=\"r\\\\x\",nonce=abc,\r\n uri=\"sip:a@b\",\
             response=\"00\",algorithm=sha-256,userhash=false,x-foo=\"a,b=c\"",
        )
        .expect("parses");
        assert_eq!(c.username, "al\"ice");
        assert_eq!(c.realm, "r\\x");
        assert_eq!(c.nonce, "abc");
        assert_eq!(c.uri, "sip:a@b");
        assert_eq!(c.algorithm, Algorithm::Sha256);

        // Quoted qop is accepted as well.
        let c = Credentials::parse(
            r#"Digest username="u", realm="r", nonce="n", uri="u", response="0", qop="auth", nc=0000000a, cnonce="c""#,
        )
        .expect("parses");
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc, Some(10));

        // Non-ASCII inside quoted strings survives.
        let c = Credentials::parse(
            "Digest username=\"jürgen\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\"",
        )
        .expect("parses");
        assert_eq!(c.username, "jürgen");
    }

    #[test]
    fn parse_rejections() {
        let base = r#"username="u", realm="r", nonce="n", uri="sip:r", response="0""#;
        let cases: Vec<(String, Error)> = vec![
            (format!("Basic {base}"), Error::NotDigest),
            (format!("Digestive {base}"), Error::NotDigest),
            ("".into(), Error::NotDigest),
            (format!("Digest,{base}"), Error::NotDigest),
            ("Digest".into(), Error::MissingParam("username")),
            ("Digest   ".into(), Error::MissingParam("username")),
            (
                format!("Digest {base}, realm=\"again\""),
                Error::DuplicateParam("realm".into()),
            ),
            (
                format!("Digest {base}, x=1, X=2"),
                Error::DuplicateParam("X".into()),
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", response="0""#.into(),
                Error::MissingParam("uri"),
            ),
            (
                format!("Digest {base}, algorithm=MD5-sess"),
                Error::UnsupportedAlgorithm("MD5-sess".into()),
            ),
            (
                format!("Digest {base}, qop=auth, nc=00000001"),
                Error::MissingParam("cnonce"),
            ),
            (
                format!("Digest {base}, qop=auth, cnonce=\"c\""),
                Error::MissingParam("nc"),
            ),
            (format!("Digest {base}, nc=1"), Error::InvalidNc),
            (format!("Digest {base}, nc=+0000001"), Error::InvalidNc),
            (format!("Digest {base}, nc=0000000g"), Error::InvalidNc),
            (format!("Digest {base}, nc=000000001"), Error::InvalidNc),
            (
                format!("Digest {base},"),
                Error::Malformed("expected a parameter name"),
            ),
            (
                format!("Digest {base},, x=1"),
                Error::Malformed("expected a parameter name"),
            ),
            (
                format!("Digest {base} x=1"),
                Error::Malformed("expected ',' between parameters"),
            ),
            (
                "Digest username".into(),
                Error::Malformed("expected '=' after a parameter name"),
            ),
            (
                "Digest username=".into(),
                Error::Malformed("expected a parameter value"),
            ),
            (
                "Digest username=\"abc".into(),
                Error::Malformed("unterminated quoted string"),
            ),
            (
                "Digest username=\"abc\\".into(),
                Error::Malformed("unterminated quoted string"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Credentials::parse(&input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn too_many_params_rejected() {
        let mut header = String::from("Digest ");
        for i in 0..=MAX_PARAMS {
            header.push_str(&format!("p{i}=1, "));
        }
        header.push_str("last=1");
        assert_eq!(
            Credentials::parse(&header),
            Err(Error::Malformed("too many parameters"))
        );
    }

    #[test]
    fn header_value_round_trips() {
        let c = Credentials::parse(RFC2617).expect("parses");
        assert_eq!(Credentials::parse(&c.to_string()), Ok(c));
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 \"\\\\,=:@/;äß\t-]{0,24}"
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = Credentials::parse(&input);
            let _ = Credentials::parse(&format!("Digest {input}"));
        }

        #[test]
        fn parse_never_panics_on_near_valid(input in "[Dd]igest[ ,=\"\\\\a-z0-9\t\r\n]{0,80}") {
            if let Ok(c) = Credentials::parse(&input) {
                c.verify_dummy("INVITE");
                prop_assert!(Credentials::parse(&c.header_value()).is_ok());
            }
        }

        #[test]
        fn rendered_credentials_parse_back(
            username in text(), realm in text(), nonce in text(), uri in text(),
            response in "[0-9a-f]{32}", sha in any::<bool>(),
            auth in proptest::option::of((text(), any::<u32>())), opaque in proptest::option::of(text()),
        ) {
            let (cnonce, nc, qop) = match auth {
                Some((cnonce, nc)) => (Some(cnonce), Some(nc), Some("auth".to_owned())),
                None => (None, None, None),
            };
            let c = Credentials {
                username, realm, nonce, uri, response,
                algorithm: if sha { Algorithm::Sha256 } else { Algorithm::Md5 },
                cnonce, nc, qop, opaque,
            };
            prop_assert_eq!(Credentials::parse(&c.header_value()), Ok(c));
        }
    }
}
