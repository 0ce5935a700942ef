//! The API's configuration, parsed once at the edge.
//!
//! The same concept as `pbx`'s `config.rs` at another layer: that one is the whole
//! configuration file, this one the API's typed part of it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use store::UserRole;

/// How the admin API listens and whom it trusts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where to listen (default `127.0.0.1:8443`).
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`. Absent: a self-signed certificate is
    /// made in the data directory on first start.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of TLS. Refused unless `listen` is a loopback
    /// address.
    pub plain_http: bool,
    /// Provider admins must enroll TOTP; until they do, a login only grants
    /// enrollment.
    pub require_totp_for_provider_admins: bool,
    /// Accept tokens from an external OpenID Connect issuer too.
    pub oidc: Option<OidcConfig>,
    /// `iss` of the tokens this API issues (and `aud` they carry is `pbx-api`).
    pub issuer: String,
    /// Lifetime of a login token, seconds.
    pub session_ttl_s: u64,
    /// Requests per minute per source address.
    pub rate_per_address_per_min: u32,
    /// Requests per minute per token.
    pub rate_per_token_per_min: u32,
    /// Largest JSON body, bytes.
    pub max_body_bytes: usize,
    /// Largest plugin upload, bytes.
    pub max_plugin_bytes: usize,
    /// Time allowed to read a request and produce a response's head, seconds.
    /// A client whose body stalls gets the JSON error `timeout` (408).
    pub request_timeout_s: u64,
    /// Time a client has to send a request head, and the longest a kept-alive
    /// connection may sit idle between requests, seconds.
    pub header_read_timeout_s: u64,
    /// Time a client has to finish the TLS handshake, seconds.
    pub tls_handshake_timeout_s: u64,
    /// Open connections at most, in all.
    pub max_connections: usize,
    /// Open connections at most from one source address.
    pub max_connections_per_source: usize,
    /// Password hashes or checks (argon2id, 19 MiB each) running at once.
    pub max_concurrent_password_hashes: usize,
    /// Dial-plan plugin bytes a tenant may keep stored, over all its versions.
    pub plugin_quota_bytes: u64,
    /// Dial-plan versions a tenant keeps: older ones are pruned at upload,
    /// except the active version and the one before it.
    pub plugin_versions_kept: usize,
    /// Maximum age of an API user's password, in days; past it the user can
    /// log in only to change it. `None` (the default): passwords do not age.
    pub password_max_age_days: Option<u32>,
    /// How many days before expiry the login answer starts saying when the
    /// password expires.
    pub password_warn_days: u32,
    /// A MaxMind-format GeoIP database (country or city), for login anomaly
    /// alerts by country and network; without one, by /24 or /48.
    pub geoip_db: Option<PathBuf>,
    /// Where browsers reach SIP over secure WebSocket (`wss://HOST:PORT`),
    /// told with their short-lived credentials. Set by the server from its
    /// listeners, not read from the file.
    #[serde(skip)]
    pub sip_wss: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            plain_http: false,
            require_totp_for_provider_admins: false,
            oidc: None,
            issuer: "pbx".into(),
            session_ttl_s: 15 * 60,
            rate_per_address_per_min: 600,
            rate_per_token_per_min: 600,
            max_body_bytes: 1 << 20,
            max_plugin_bytes: 16 << 20,
            request_timeout_s: 30,
            header_read_timeout_s: 10,
            tls_handshake_timeout_s: 10,
            max_connections: 1024,
            max_connections_per_source: 32,
            max_concurrent_password_hashes: 2,
            plugin_quota_bytes: 64 << 20,
            plugin_versions_kept: 10,
            geoip_db: None,
            password_max_age_days: None,
            password_warn_days: 14,
            sip_wss: Vec::new(),
        }
    }
}

/// An external OpenID Connect issuer whose access tokens the API accepts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// A JWKS document (`{"keys":[...]}`) with the issuer's public keys; every key
    /// needs a `kid`.
    pub jwks_file: PathBuf,
    /// The claim that carries the role (default `role`).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The claim that carries the tenant's name (default `tenant`).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Maps the issuer's role values to ours. Empty: the values must be our role
    /// names (`provider-admin`, `tenant-admin`, `user`).
    #[serde(default)]
    pub roles: BTreeMap<String, UserRole>,
    /// Longest lifetime (`exp` - `iat`) of a token accepted from the issuer,
    /// seconds; longer-lived tokens, and tokens without `iat`, are refused.
    #[serde(default = "default_max_token_lifetime_s")]
    pub max_token_lifetime_s: u64,
}

fn default_max_token_lifetime_s() -> u64 {
    3600
}

fn default_role_claim() -> String {
    "role".into()
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_rejects_unknown_keys() {
        let c: ApiConfig = serde_json::from_str(
            r#"{"listen":"0.0.0.0:9443","oidc":{"issuer":"https://id","audience":"pbx",
                "jwks_file":"/etc/jwks.json","roles":{"admins":"provider-admin"}}}"#,
        )
        .expect("parse");
        assert_eq!(c.listen.port(), 9443);
        assert!(!c.plain_http);
        let oidc = c.oidc.expect("oidc");
        assert_eq!(oidc.role_claim, "role");
        assert_eq!(oidc.roles["admins"], UserRole::ProviderAdmin);
        assert!(serde_json::from_str::<ApiConfig>(r#"{"lisen":"0.0.0.0:1"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ApiConfig>("{}").expect("empty"),
            ApiConfig::default()
        );
    }
}
