//! Bearer tokens: the API's own EdDSA-signed JWTs (keys in the data directory,
//! `kid` for rotation) and, optionally, tokens of an external OIDC issuer.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};
use store::{TenantId, UserRole};

use crate::config::OidcConfig;
use crate::{Error, Result};

/// The `aud` of every token this API issues.
pub(crate) const AUDIENCE: &str = "pbx-api";
/// The one algorithm of this API's own tokens.
const ALG: Algorithm = Algorithm::EdDSA;
/// Clock skew tolerated on `nbf` and `iat`, seconds.
const LEEWAY_S: i64 = 30;
/// The folder of signing keys inside the data directory.
pub(crate) const KEY_DIR: &str = "api-keys";

/// What kind of token this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TokenKind {
    /// Issued at login; `sub` is the user id.
    Session,
    /// An integration token; `jti` names its stored record.
    Api,
}

/// The claims of this API's tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    pub(crate) aud: String,
    pub(crate) sub: String,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
    pub(crate) jti: String,
    pub(crate) role: UserRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<TenantId>,
    pub(crate) scopes: Vec<String>,
    pub(crate) typ: TokenKind,
    /// For sessions: the user's session epoch when it was issued.
    #[serde(default)]
    pub(crate) epoch: i64,
}

/// Checks `exp`, `nbf` and `iat` against `now_s`.
pub(crate) fn times_ok(exp: i64, nbf: i64, iat: i64, now_s: i64) -> bool {
    exp > now_s && nbf <= now_s + LEEWAY_S && iat <= now_s + LEEWAY_S
}

/// A random token id.
pub(crate) fn new_jti() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// The signing keys: the newest signs, all verify (so tokens survive a rotation
/// until they expire).
pub(crate) struct KeyRing {
    current: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("kids", &self.verifying.keys().collect::<Vec<_>>())
            .finish()
    }
}

struct KeyFile {
    kid: String,
    pkcs8: Vec<u8>,
}

fn generate_key(now_ms: i64) -> Result<KeyFile> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .map_err(|e| Error::Crypto(format!("generating a signing key: {e}")))?;
    let suffix: [u8; 4] = rand::random();
    Ok(KeyFile {
        kid: format!("{:013}-{}", now_ms.max(0), hex::encode(suffix)),
        pkcs8: pair.serialize_der(),
    })
}

fn public_key(pkcs8: &[u8]) -> Result<Vec<u8>> {
    let der = PrivatePkcs8KeyDer::from(pkcs8);
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .map_err(|e| Error::Crypto(format!("reading a signing key: {e}")))?;
    Ok(pair.public_key_raw().to_vec())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The longest lifetime of any token this API issues (integration tokens: a
/// year). A key stops verifying this long after its successor was made, when
/// every token it signed has expired.
pub(crate) const MAX_TOKEN_LIFETIME_S: u64 = 365 * 24 * 3600;

/// When the key named `kid` was made, Unix ms (the `kid` starts with it).
fn made_at_ms(kid: &str) -> Option<i64> {
    kid.split_once('-')?.0.parse().ok()
}

/// Which of the sorted `kids` are retired at `now_ms`: those whose successor
/// was made at least [`MAX_TOKEN_LIFETIME_S`] ago. The newest never is.
fn retired(kids: &[&str], now_ms: i64) -> Vec<bool> {
    let life_ms = i64::try_from(MAX_TOKEN_LIFETIME_S * 1000).unwrap_or(i64::MAX);
    (0..kids.len())
        .map(|i| {
            kids.get(i + 1)
                .and_then(|next| made_at_ms(next))
                .is_some_and(|t| t.saturating_add(life_ms) <= now_ms)
        })
        .collect()
}

/// What [`rotate_signing_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The new key's `kid`: the API signs with it from its next start.
    pub kid: String,
    /// Keys deleted because every token they signed has expired.
    pub retired: Vec<String>,
}

/// Makes a new signing key in `data_dir`; the API signs with it from its next
/// start, and keeps accepting tokens of the older keys until the longest token
/// lifetime has passed since their successor was made. Keys past that are
/// deleted now.
pub fn rotate_signing_key(data_dir: &Path, now_ms: i64) -> Result<Rotation> {
    let dir = data_dir.join(KEY_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let key = generate_key(now_ms)?;
    write_private(&dir.join(format!("{}.pk8", key.kid)), &key.pkcs8)?;
    let mut files = read_keys(data_dir)?;
    files.sort_by(|a, b| a.kid.cmp(&b.kid));
    let kids: Vec<&str> = files.iter().map(|f| f.kid.as_str()).collect();
    let mut gone = Vec::new();
    for (kid, old) in kids.iter().zip(retired(&kids, now_ms)) {
        if old {
            let path = dir.join(format!("{kid}.pk8"));
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            gone.push((*kid).to_owned());
        }
    }
    Ok(Rotation {
        kid: key.kid,
        retired: gone,
    })
}

fn read_keys(data_dir: &Path) -> Result<Vec<KeyFile>> {
    let dir = data_dir.join(KEY_DIR);
    let mut files = Vec::new();
    if !dir.is_dir() {
        return Ok(files);
    }
    let read_err = |e| Error::io(format!("reading {}", dir.display()), e);
    for entry in std::fs::read_dir(&dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            && path.extension().and_then(|s| s.to_str()) == Some("pk8")
        {
            let pkcs8 = std::fs::read(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            files.push(KeyFile {
                kid: stem.to_owned(),
                pkcs8,
            });
        }
    }
    Ok(files)
}

impl KeyRing {
    fn from_files(mut files: Vec<KeyFile>, now_ms: i64) -> Result<KeyRing> {
        files.sort_by(|a, b| a.kid.cmp(&b.kid));
        let kids: Vec<&str> = files.iter().map(|f| f.kid.as_str()).collect();
        let old = retired(&kids, now_ms);
        let mut old = old.into_iter();
        files.retain(|_| !old.next().unwrap_or(false));
        let newest = files
            .last()
            .ok_or_else(|| Error::Crypto("no signing key".into()))?;
        let current = newest.kid.clone();
        let signing = EncodingKey::from_ed_der(&newest.pkcs8);
        let mut verifying = HashMap::new();
        for f in &files {
            verifying.insert(
                f.kid.clone(),
                DecodingKey::from_ed_der(&public_key(&f.pkcs8)?),
            );
        }
        Ok(KeyRing {
            current,
            signing,
            verifying,
        })
    }

    /// Loads the keys of `data_dir/api-keys`, making the first one if there is
    /// none.
    pub(crate) fn load_or_create(data_dir: &Path, now_ms: i64) -> Result<KeyRing> {
        let mut files = read_keys(data_dir)?;
        if files.is_empty() {
            rotate_signing_key(data_dir, now_ms)?;
            files = read_keys(data_dir)?;
        }
        KeyRing::from_files(files, now_ms)
    }

    /// A key ring that lives in memory only (tests).
    #[cfg(test)]
    pub(crate) fn in_memory(now_ms: i64) -> Result<KeyRing> {
        KeyRing::from_files(vec![generate_key(now_ms)?], now_ms)
    }

    /// Signs with this ring's key but names `kid` (to forge tokens in tests).
    #[cfg(test)]
    pub(crate) fn sign_as(&self, claims: &Claims, kid: &str) -> Result<String> {
        let mut header = Header::new(ALG);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.signing)
            .map_err(|e| Error::Crypto(format!("signing a token: {e}")))
    }

    /// The `kid` new tokens carry.
    #[cfg(test)]
    pub(crate) fn current_kid(&self) -> &str {
        &self.current
    }

    /// Whether `kid` is one of ours.
    pub(crate) fn knows(&self, kid: &str) -> bool {
        self.verifying.contains_key(kid)
    }

    /// Signs `claims` with the newest key.
    pub(crate) fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(ALG);
        header.kid = Some(self.current.clone());
        jsonwebtoken::encode(&header, claims, &self.signing)
            .map_err(|e| Error::Crypto(format!("signing a token: {e}")))
    }

    /// Verifies signature, algorithm, `iss`, `aud`, `exp`, `nbf` and `iat`.
    /// `None` for any failure: the caller answers 401 whatever went wrong.
    pub(crate) fn verify(&self, token: &str, issuer: &str, now_s: i64) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != ALG {
            return None;
        }
        let key = self.verifying.get(header.kid.as_deref()?)?;
        let mut v = Validation::new(ALG);
        v.algorithms = vec![ALG];
        v.set_issuer(&[issuer]);
        v.set_audience(&[AUDIENCE]);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).ok()?;
        let c = data.claims;
        times_ok(c.exp, c.nbf, c.iat, now_s).then_some(c)
    }
}

/// The external issuer's keys and claim mapping.
pub(crate) struct Oidc {
    config: OidcConfig,
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.issuer)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What an OIDC token says about its bearer, before the tenant name is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OidcIdentity {
    pub(crate) sub: String,
    pub(crate) role: UserRole,
    pub(crate) tenant_name: Option<String>,
}

fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm.and_then(|a| match a {
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::ES384 => Some(Algorithm::ES384),
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::PS384 => Some(Algorithm::PS384),
        KeyAlgorithm::PS512 => Some(Algorithm::PS512),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        _ => None,
    });
    let from_key = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(p) => {
            let len = URL_SAFE_NO_PAD.decode(&p.x).map(|x| x.len()).ok();
            (p.curve == EllipticCurve::Ed25519 && len == Some(32)).then_some(Algorithm::EdDSA)
        }
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        // shared secrets are never accepted from an external issuer
        _ => None,
    };
    match (declared, from_key) {
        (Some(d), Some(k)) if d == k => Some(d),
        (
            Some(d @ (Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256)),
            Some(Algorithm::RS256),
        )
        | (Some(d @ (Algorithm::PS384 | Algorithm::PS512)), Some(Algorithm::RS256)) => Some(d),
        (None, k) => k,
        _ => None,
    }
}

impl Oidc {
    /// Reads the JWKS file; keys without a `kid` or of an unusable type are
    /// skipped, and a file without any usable key is an error.
    pub(crate) fn load(config: &OidcConfig) -> Result<Oidc> {
        let text = std::fs::read_to_string(&config.jwks_file)
            .map_err(|e| Error::io(format!("reading {}", config.jwks_file.display()), e))?;
        Oidc::from_jwks(config, &text)
    }

    pub(crate) fn from_jwks(config: &OidcConfig, jwks: &str) -> Result<Oidc> {
        let set: JwkSet =
            serde_json::from_str(jwks).map_err(|e| Error::Config(format!("OIDC JWKS: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), jwk_algorithm(jwk)) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (alg, key));
            }
        }
        if keys.is_empty() {
            return Err(Error::Config(
                "OIDC JWKS has no usable key with a kid".into(),
            ));
        }
        Ok(Oidc {
            config: config.clone(),
            keys,
        })
    }

    /// Verifies an external token and maps its claims. `None` for any failure.
    pub(crate) fn verify(&self, token: &str, now_s: i64) -> Option<OidcIdentity> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let (alg, key) = self.keys.get(header.kid.as_deref()?)?;
        if header.alg != *alg {
            return None;
        }
        let mut v = Validation::new(*alg);
        v.algorithms = vec![*alg];
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &v).ok()?;
        let c = data.claims;
        let exp = c.get("exp")?.as_i64()?;
        let nbf = c.get("nbf").and_then(|v| v.as_i64()).unwrap_or(i64::MIN);
        // The lifetime must be known and within the configured maximum, so a
        // token leaked from the issuer cannot serve for longer than that.
        let iat = c.get("iat")?.as_i64()?;
        let max = i64::try_from(self.config.max_token_lifetime_s).unwrap_or(i64::MAX);
        if exp.saturating_sub(iat) > max || exp.saturating_sub(now_s) > max {
            return None;
        }
        if !times_ok(exp, nbf, iat, now_s) {
            return None;
        }
        let sub = c.get("sub")?.as_str()?.to_owned();
        let role_value = c.get(&self.config.role_claim)?.as_str()?;
        let role = if self.config.roles.is_empty() {
            UserRole::parse(role_value)?
        } else {
            *self.config.roles.get(role_value)?
        };
        let tenant_name = match c.get(&self.config.tenant_claim) {
            Some(v) => Some(v.as_str()?.to_owned()),
            None => None,
        };
        if (role == UserRole::ProviderAdmin) != tenant_name.is_none() {
            return None;
        }
        Some(OidcIdentity {
            sub,
            role,
            tenant_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now_s: i64) -> Claims {
        Claims {
            iss: "pbx".into(),
            aud: AUDIENCE.into(),
            sub: "1".into(),
            iat: now_s,
            nbf: now_s,
            exp: now_s + 60,
            jti: new_jti(),
            role: UserRole::TenantAdmin,
            tenant: Some(TenantId(1)),
            scopes: vec!["*".into()],
            typ: TokenKind::Session,
            epoch: 0,
        }
    }

    #[test]
    fn sign_verify_and_time_checks() {
        let ring = KeyRing::in_memory(0).expect("ring");
        let now = 1_000_000;
        let c = claims(now);
        let t = ring.sign(&c).expect("sign");
        assert_eq!(ring.verify(&t, "pbx", now), Some(c.clone()));
        assert_eq!(ring.verify(&t, "other", now), None);
        assert_eq!(ring.verify(&t, "pbx", now + 60), None, "expired");
        assert_eq!(ring.verify(&t, "pbx", now - 31), None, "not yet valid");
        let other = KeyRing::in_memory(0).expect("ring");
        assert_eq!(other.verify(&t, "pbx", now), None);
    }

    #[test]
    fn keys_persist_and_rotate() {
        let dir = tempfile::tempdir().expect("dir");
        let ring = KeyRing::load_or_create(dir.path(), 5).expect("ring");
        let c = claims(100);
        let old = ring.sign(&c).expect("sign");
        let again = KeyRing::load_or_create(dir.path(), 6).expect("ring");
        assert_eq!(again.current, ring.current);
        let kid = rotate_signing_key(dir.path(), 7).expect("rotate").kid;
        let rotated = KeyRing::load_or_create(dir.path(), 8).expect("ring");
        assert_eq!(rotated.current, kid);
        assert!(
            rotated.verify(&old, "pbx", 100).is_some(),
            "old tokens still verify"
        );
        let new = rotated.sign(&c).expect("sign");
        let header = jsonwebtoken::decode_header(&new).expect("header");
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        assert_eq!(header.alg, Algorithm::EdDSA);
    }

    #[test]
    fn old_keys_retire_after_the_longest_token_lifetime() {
        let dir = tempfile::tempdir().expect("dir");
        let t0 = 1_700_000_000_000;
        let first = KeyRing::load_or_create(dir.path(), t0).expect("ring");
        let old_token = first.sign(&claims(t0 / 1000)).expect("sign");
        let t1 = t0 + 1000;
        let second = rotate_signing_key(dir.path(), t1).expect("rotate");
        assert!(second.retired.is_empty());
        let life_ms = i64::try_from(MAX_TOKEN_LIFETIME_S * 1000).expect("ms");
        // Just before the successor is a lifetime old, the first key verifies.
        let ring = KeyRing::load_or_create(dir.path(), t1 + life_ms - 1).expect("ring");
        assert!(ring.knows(&first.current));
        // From then on it does not, and the next rotation deletes it.
        let ring = KeyRing::load_or_create(dir.path(), t1 + life_ms).expect("ring");
        assert!(!ring.knows(&first.current));
        assert_eq!(ring.verify(&old_token, "pbx", t0 / 1000), None);
        let third = rotate_signing_key(dir.path(), t1 + life_ms).expect("rotate");
        assert_eq!(third.retired, vec![first.current.clone()]);
        let ring = KeyRing::load_or_create(dir.path(), t1 + life_ms).expect("ring");
        assert!(ring.knows(&second.kid) && ring.knows(&third.kid));
        assert_eq!(ring.current, third.kid);
    }
}
