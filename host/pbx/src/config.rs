//! The TOML configuration file, parsed once into typed values; unknown keys are
//! rejected so that a typo never silently falls back to a default.
//!
//! ```toml
//! user_agent = "pbx"
//!
//! [sip]
//! udp = ["127.0.0.1:5060"]
//! tcp = ["127.0.0.1:5060"]
//! advertise = "pbx.example.net"   # host name or IP put in Via/Contact
//! tls = ["0.0.0.0:5061"]           # SIP over TLS
//! wss = ["0.0.0.0:8089"]           # SIP over secure WebSocket (browsers)
//! tls_cert = "/etc/pbx/cert.pem"
//! tls_key = "/etc/pbx/key.pem"
//! tls_ca = "/etc/pbx/trunk-ca.pem" # CAs trusted for TLS to trunks
//!
//! [registrar]
//! min_expires = 60
//! max_expires = 7200
//! default_expires = 3600
//! max_contacts = 5
//!
//! [subscriptions]                  # message-waiting SUBSCRIBE (RFC 3842)
//! min_expires = 60                 # shorter: 423
//! max_expires = 3600               # longer: cut to this
//! default_expires = 3600
//! max_per_extension = 8            # a further one replaces the oldest
//! max_per_tenant = 1000            # a tenant's share; beyond it 480
//! max_total = 20000                # beyond it 503
//!
//! [auth]
//! algorithms = ["MD5"]             # offered in this order where the tenant or
//!                                  # extension has no choice (`pbx tenant set --digest`)
//! nonce_lifetime_secs = 60
//!
//! [calls]
//! ring_timeout_secs = 60
//! max_duration_secs = 14400
//! plugin_headers = []              # INVITE headers call handlers may read
//!                                  # (`call-info`), e.g. ["X-Customer-Id"]
//!
//! [guard]                          # abuse defenses, on by default
//! enabled = true
//! max_failures = 10                # authentication failures that ban a source ...
//! window_secs = 300                # ... within this window
//! ban_secs = 900                   # the first ban; repeat offenders get longer ones
//! messages_per_second = 50         # per source address ...
//! burst = 200
//! authenticated_messages_per_second = 2000  # ... once its phones authenticate
//! authenticated_burst = 4000
//! trusted = ["10.0.0.0/8"]         # never limited or banned; default: none
//! proxies = ["10.0.0.2/32"]        # a front (Kamailio) relaying phones: each request
//!                                  # is judged by the client address in the Via
//!                                  # below the front's (its `received`); default: none
//!
//! [fraud]                          # call-level controls (limits: `pbx tenant limits`)
//! home_country = "US"              # national vs international
//! premium_prefixes = ["1900"]      # E.164 digits, on top of the numbering library
//! high_risk_prefixes = ["882", "883"]
//! webhook_url = "http://127.0.0.1:9000/alerts"   # alerts POSTed, HMAC-signed
//! webhook_secret = "change-me"     # or PBX_WEBHOOK_SECRET
//!
//! [media]                          # media anchoring (SDP rewritten to the relay)
//! enabled = true
//! bind_ip = "0.0.0.0"              # default: the first SIP listener's address
//! advertise_ip = "203.0.113.7"     # default: the bind address or SIP's advertised one
//! port_min = 20000
//! port_max = 29999
//! idle_timeout_secs = 60           # a call without media this long is hung up
//! max_sessions = 1000              # host media sessions (IVR, voicemail) of the host
//! max_sessions_per_tenant = 20     # ... of a tenant, unless `pbx tenant limits` sets its own
//!
//! [log]
//! format = "text"                  # or "json"
//!
//! [retention]                      # call records and alerts; absent: kept
//! cdr_days = 365                   # for tenants without their own (`pbx tenant retention`)
//! alert_days = 180
//! max_cdr_days = 2555              # the most any tenant keeps them
//! max_alert_days = 365
//! audit_days = 2555                # the audit log (purged behind a keyed checkpoint)
//!
//! [cluster]                        # several nodes; absent: one node
//! redis = "redis://127.0.0.1:6379" # where per-tenant limits are counted for all nodes
//! node = "pbx-1"                   # this node's id (default: the host name)
//!
//! [extensions]                     # SIP password ageing; off by default
//! password_max_age_days = 90       # older: an alert to the tenant (phones keep working)
//! password_warn_days = 14
//!
//! [siem]                           # security events as RFC 5424 syslog; absent: none
//! syslog = "tls://siem.example:6514"   # or udp://, tcp:// (octet counting)
//! ca = "/etc/pbx/siem-ca.pem"      # needed for tls:// and https://
//! # https = "https://siem.example/ingest"  # instead of syslog: NDJSON batches by POST
//! # token_file = "/etc/pbx/siem-token"     # its bearer token
//! facility = 10                    # security/authorization
//!
//! [backup]                         # scheduled encrypted backups; absent: none
//! dir = "/var/backups/pbx"         # pbx-<UTC time>.age files
//! every_hours = 24                 # the first at start-up
//! keep = 7                         # older archives are deleted
//! recipients = ["age1…"]           # age public keys; the server holds no key that opens them
//!
//! [api]                            # the admin REST API; absent: not served
//! listen = "127.0.0.1:8443"
//! # tls_cert = "/etc/pbx/api.pem"  # absent: a self-signed one in the data dir
//! # tls_key = "/etc/pbx/api.key"
//! # plain_http = false             # only allowed on a loopback address
//! ```
//!
//! Command-line flags override the file: `--sip-udp`/`--sip-tcp` replace the
//! file's lists, `--advertise`, `--log-format` and `--api` (the API's address)
//! its values. With no listener named
//! anywhere the server listens on 127.0.0.1:5060 over UDP and TCP.
//!
//! The same concept as `pbx-api`'s `config.rs` at another layer: this one is the
//! whole file, that one the API's typed part of it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pbx_core::{
    CoreConfig, DigestAlgorithm, DigestAlgorithms, RegistrarConfig, SubscriptionConfig,
};
use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::logging::LogFormat;
use crate::server::{GuardOptions, MediaOptions, ServeOptions, TlsFiles};
use crate::{Error, Result};

/// The default SIP listener (UDP and TCP) when none is configured.
pub const DEFAULT_SIP_ADDR: &str = "127.0.0.1:5060";
/// Where `pbx demo` serves the admin API (plain HTTP: loopback only).
pub const DEMO_API_ADDR: &str = "127.0.0.1:8080";

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Sent as `Server`/`User-Agent`; nothing is sent when absent.
    pub user_agent: Option<String>,
    #[serde(default)]
    pub sip: SipSection,
    #[serde(default)]
    pub registrar: RegistrarSection,
    #[serde(default)]
    pub subscriptions: SubscriptionsSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub calls: CallsSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub guard: GuardSection,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub fraud: FraudSection,
    /// `[api]`: the admin API's own settings ([`pbx_api::ApiConfig`]).
    pub api: Option<pbx_api::ApiConfig>,
    /// `[backup]`: scheduled encrypted backups; none without it.
    pub backup: Option<BackupSection>,
    /// `[siem]`: security events to a syslog collector; none without it.
    pub siem: Option<SiemSection>,
    #[serde(default)]
    pub extensions: ExtensionsSection,
    #[serde(default)]
    pub retention: RetentionSection,
    /// `[cluster]`: what several nodes share; none without it.
    pub cluster: Option<ClusterSection>,
    #[serde(default)]
    pub store: StoreSection,
}

/// `[cluster]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The Redis (or Valkey) that per-tenant limits are counted in across
    /// nodes: `redis://HOST:PORT` or `unix:///path/redis.sock`.
    pub redis: String,
    /// This node's id, unique in the cluster (default: the host name).
    pub node: Option<String>,
}

/// `[store]`: where the database is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// A `postgres://` URL; absent: SQLite, `pbx.db` in the data directory.
    /// `--database` overrides it.
    pub url: Option<String>,
}

/// `[retention]`: how long call records and alerts are kept, in days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// The default for tenants without their own; absent: kept.
    pub cdr_days: Option<u32>,
    pub alert_days: Option<u32>,
    /// The most any tenant keeps them.
    pub max_cdr_days: Option<u32>,
    pub max_alert_days: Option<u32>,
    /// Days the audit log keeps its entries; absent: kept.
    pub audit_days: Option<u32>,
}

/// `[extensions]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionsSection {
    /// Maximum age of a SIP password in days; absent (the default): no ageing.
    pub password_max_age_days: Option<u32>,
    /// Days before expiry the tenant is warned (default 14).
    pub password_warn_days: Option<u32>,
}

/// `[siem]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemSection {
    /// `udp://HOST:PORT`, `tcp://HOST:PORT` or `tls://HOST:PORT`.
    pub syslog: Option<String>,
    /// `https://HOST[:PORT]/PATH`: an HTTPS collector instead of syslog.
    pub https: Option<String>,
    /// A file holding the bearer token for the HTTPS collector.
    pub token_file: Option<PathBuf>,
    /// CA certificates a `tls://` collector is checked against.
    pub ca: Option<PathBuf>,
    /// Syslog facility, 0 to 23 (default 10, security/authorization).
    pub facility: Option<u8>,
}

/// `[backup]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// Where the archives go.
    pub dir: PathBuf,
    /// Hours between backups (default 24).
    pub every_hours: Option<u64>,
    /// Archives kept; older ones are deleted (default 7).
    pub keep: Option<usize>,
    /// age public keys (`age1…`) the archives are encrypted to: the server
    /// holds no secret that opens them.
    pub recipients: Vec<String>,
}

/// `[sip]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    #[serde(default)]
    pub udp: Vec<SocketAddr>,
    #[serde(default)]
    pub tcp: Vec<SocketAddr>,
    /// SIP over TLS listeners.
    #[serde(default)]
    pub tls: Vec<SocketAddr>,
    /// SIP over secure WebSocket listeners (RFC 7118), for browsers.
    #[serde(default)]
    pub wss: Vec<SocketAddr>,
    /// PEM certificate chain and key for the TLS listeners.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates that TLS connections to trunks are verified against.
    pub tls_ca: Option<PathBuf>,
    pub advertise: Option<String>,
}

/// `[media]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// Anchor media (default true); false passes SDP through untouched.
    pub enabled: Option<bool>,
    pub bind_ip: Option<IpAddr>,
    pub advertise_ip: Option<IpAddr>,
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    pub idle_timeout_secs: Option<u64>,
    /// Host media sessions of the whole host (`pbx_model::limits`).
    pub max_sessions: Option<u32>,
    /// Host media sessions of a tenant without its own cap.
    pub max_sessions_per_tenant: Option<u32>,
}

/// `[registrar]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarSection {
    pub min_expires: Option<u32>,
    pub max_expires: Option<u32>,
    pub default_expires: Option<u32>,
    pub max_contacts: Option<usize>,
}

/// `[subscriptions]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsSection {
    pub min_expires: Option<u32>,
    pub max_expires: Option<u32>,
    pub default_expires: Option<u32>,
    pub max_per_extension: Option<usize>,
    pub max_per_tenant: Option<usize>,
    pub max_total: Option<usize>,
}

/// `[auth]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `"SHA-256"` and/or `"MD5"`, most preferred first.
    pub algorithms: Option<Vec<String>>,
    pub nonce_lifetime_secs: Option<u64>,
}

/// `[calls]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsSection {
    pub ring_timeout_secs: Option<u64>,
    pub max_duration_secs: Option<u64>,
    /// INVITE headers a call handler may read through `call-info` (none by
    /// default; at most 16 names).
    pub plugin_headers: Option<Vec<String>>,
}

/// `[guard]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    pub enabled: Option<bool>,
    pub max_failures: Option<u32>,
    pub window_secs: Option<u64>,
    pub ban_secs: Option<u64>,
    pub messages_per_second: Option<u32>,
    pub burst: Option<u32>,
    /// Per source whose phones authenticated within the hour.
    pub authenticated_messages_per_second: Option<u32>,
    pub authenticated_burst: Option<u32>,
    /// CIDR networks or single addresses never limited or banned (none by default).
    pub trusted: Option<Vec<String>>,
    /// SIP proxies in front of the PBX (a cluster's Kamailio), whose requests
    /// are judged by the client address they record in the Via below their
    /// own; never limited or banned themselves (none by default).
    pub proxies: Option<Vec<String>>,
}

/// `[fraud]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudSection {
    /// ISO country the host's numbers are national in (default "US").
    pub home_country: Option<String>,
    /// Number prefixes (E.164 digits) treated as premium-rate.
    pub premium_prefixes: Option<Vec<String>>,
    /// Number prefixes (E.164 digits) treated as high-risk.
    pub high_risk_prefixes: Option<Vec<String>>,
    /// `http://HOST[:PORT]/PATH` that alerts are POSTed to, signed.
    pub webhook_url: Option<String>,
    /// The HMAC secret; `PBX_WEBHOOK_SECRET` in the environment wins.
    pub webhook_secret: Option<String>,
}

/// `[log]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: Option<LogFormat>,
}

impl FileConfig {
    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<FileConfig> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end();
            match e.span() {
                Some(span) => {
                    let line = 1 + text[..span.start.min(text.len())].matches('\n').count();
                    Error::Config(format!("line {line}: {message}"))
                }
                None => Error::Config(message.to_owned()),
            }
        })
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::File {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(&text).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }
}

/// Everything `serve` runs with: the file and the flags merged and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub serve: ServeOptions,
    pub log_format: LogFormat,
    /// The admin API, when `[api]` or `--api` asks for it.
    pub api: Option<pbx_api::ApiConfig>,
    /// `[store] url`: the database, when not SQLite in the data directory.
    pub database: Option<String>,
}

impl Settings {
    /// Reads `--config` (when given) and merges the flags over it.
    pub fn load(args: &ServeArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Settings::resolve(file, args)
    }

    /// Like [`Settings::load`]; the demo always serves somewhere, by default on
    /// 127.0.0.1:5060, and always serves the admin API, by default on
    /// [`DEMO_API_ADDR`] over plain HTTP (loopback).
    pub fn load_demo(args: &ServeArgs) -> Result<Settings> {
        let mut settings = Settings::load(args)?;
        match settings.api.as_mut() {
            None => {
                let listen = DEMO_API_ADDR
                    .parse()
                    .map_err(|_| Error::Config("bad built-in API address".into()))?;
                settings.api = Some(pbx_api::ApiConfig {
                    listen,
                    plain_http: true,
                    ..pbx_api::ApiConfig::default()
                });
            }
            // `--api` in the demo: plain HTTP where that is allowed.
            Some(api) if args.api.is_some() => api.plain_http = api.listen.ip().is_loopback(),
            Some(_) => {}
        }
        Ok(settings)
    }

    /// Merges flags over a parsed file and checks the result.
    pub fn resolve(file: FileConfig, args: &ServeArgs) -> Result<Settings> {
        let pick = |flags: &[SocketAddr], file: &[SocketAddr]| {
            if flags.is_empty() {
                file.to_vec()
            } else {
                flags.to_vec()
            }
        };
        let mut udp = pick(&args.sip_udp, &file.sip.udp);
        let mut tcp = pick(&args.sip_tcp, &file.sip.tcp);
        let mut tls = pick(&args.sip_tls, &file.sip.tls);
        let mut wss = pick(&args.sip_wss, &file.sip.wss);
        if udp.is_empty() && tcp.is_empty() && tls.is_empty() && wss.is_empty() {
            let default: SocketAddr = DEFAULT_SIP_ADDR
                .parse()
                .map_err(|_| Error::Config("bad built-in default address".into()))?;
            udp.push(default);
            tcp.push(default);
        }
        for list in [&mut udp, &mut tcp, &mut tls, &mut wss] {
            let mut seen = std::collections::HashSet::new();
            list.retain(|a| seen.insert(*a));
        }

        let advertise = args
            .advertise
            .clone()
            .or_else(|| file.sip.advertise.clone())
            .map(|a| a.trim().to_owned());
        if let Some(host) = &advertise {
            check_host(host)?;
        }

        let mut api = file.api.clone();
        if let Some(addr) = args.api {
            api.get_or_insert_with(pbx_api::ApiConfig::default).listen = addr;
        }
        if let Some(api) = &api
            && api.plain_http
            && !api.listen.ip().is_loopback()
        {
            return Err(Error::Config(format!(
                "api.plain_http is only allowed on a loopback address, not {}",
                api.listen
            )));
        }

        let core = core_config(&file)?;
        let mut serve = ServeOptions::new(udp, tcp, core);
        serve.advertise = advertise;
        serve.guard = guard_options(&file.guard)?;
        serve.fraud = fraud_options(&file.fraud)?;
        if let Some(cluster) = &file.cluster {
            let node = match &cluster.node {
                Some(n) => n.clone(),
                None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default(),
            };
            if node.is_empty() {
                return Err(Error::Config("cluster.node: give this node an id".into()));
            }
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
            if node.len() > 64 || !node.chars().all(allowed) {
                return Err(Error::Config(format!(
                    "cluster.node {node:?}: at most 64 letters, digits, '.', '-' or '_'"
                )));
            }
            serve.fraud.shared_counters = Some(crate::server::SharedCountersConfig {
                url: cluster.redis.clone(),
                node: node.clone(),
            });
            serve.core.registrar.node = node.clone();
            serve.node = Some(node);
        }
        serve.tls_files = tls_files(&file.sip, args)?;
        serve.tls_ca = args.tls_ca.clone().or_else(|| file.sip.tls_ca.clone());
        if !tls.is_empty() && serve.tls_files.is_none() {
            return Err(Error::Config(
                "SIP over TLS needs --tls-cert and --tls-key (sip.tls_cert, sip.tls_key)".into(),
            ));
        }
        if !wss.is_empty() && serve.tls_files.is_none() {
            return Err(Error::Config(
                "SIP over WebSocket needs --tls-cert and --tls-key (sip.tls_cert, sip.tls_key)"
                    .into(),
            ));
        }
        serve.tls = tls;
        serve.wss = wss;
        serve.media = media_options(&file.media)?;
        serve.backup = file.backup.as_ref().map(backup_schedule).transpose()?;
        serve.siem = file.siem.as_ref().map(siem_options).transpose()?;
        let r = &file.retention;
        if [
            r.cdr_days,
            r.alert_days,
            r.max_cdr_days,
            r.max_alert_days,
            r.audit_days,
        ]
        .contains(&Some(0))
        {
            return Err(Error::Config("retention: days must be at least 1".into()));
        }
        serve.record_retention = store::RecordRetention {
            audit_days: r.audit_days,
            cdr_days: r.cdr_days,
            alert_days: r.alert_days,
            max_cdr_days: r.max_cdr_days,
            max_alert_days: r.max_alert_days,
        };
        serve.sip_password_age = match file.extensions.password_max_age_days {
            Some(0) => {
                return Err(Error::Config(
                    "extensions.password_max_age_days must be at least 1".into(),
                ));
            }
            Some(days) => Some(crate::server::password_age::PasswordAge {
                max: std::time::Duration::from_secs(u64::from(days) * 86_400),
                warn: std::time::Duration::from_secs(
                    u64::from(file.extensions.password_warn_days.unwrap_or(14)) * 86_400,
                ),
            }),
            None => None,
        };
        Ok(Settings {
            serve,
            log_format: args.log_format.or(file.log.format).unwrap_or_default(),
            api,
            database: file.store.url.clone(),
        })
    }
}

/// The TLS files from the flags over the file; a certificate needs its key.
fn tls_files(sip: &SipSection, args: &ServeArgs) -> Result<Option<TlsFiles>> {
    let cert = args.tls_cert.clone().or_else(|| sip.tls_cert.clone());
    let key = args.tls_key.clone().or_else(|| sip.tls_key.clone());
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        _ => Err(Error::Config(
            "a TLS certificate needs its key and a key its certificate".into(),
        )),
    }
}

/// The `[media]` section over the defaults; `None` when anchoring is off.
/// `[siem]`, checked; the data directory is filled in by the caller.
fn siem_options(s: &SiemSection) -> Result<crate::server::SiemOptions> {
    let (key, url) = match (&s.syslog, &s.https) {
        (Some(url), None) => ("siem.syslog", url),
        (None, Some(url)) => ("siem.https", url),
        _ => {
            return Err(Error::Config(
                "siem: set exactly one of `syslog` and `https`".into(),
            ));
        }
    };
    let target =
        crate::server::SiemTarget::parse(url).map_err(|e| Error::Config(format!("{key}: {e}")))?;
    match (&target, key) {
        (crate::server::SiemTarget::Https { .. }, "siem.https") => {}
        (crate::server::SiemTarget::Https { .. }, _) | (_, "siem.https") => {
            return Err(Error::Config(format!(
                "{key}: {url} belongs in {}",
                if key == "siem.https" {
                    "siem.syslog"
                } else {
                    "siem.https"
                }
            )));
        }
        _ => {}
    }
    let encrypted = matches!(
        target,
        crate::server::SiemTarget::Tls { .. } | crate::server::SiemTarget::Https { .. }
    );
    if encrypted && s.ca.is_none() {
        return Err(Error::Config(
            "siem: a tls:// or https:// collector needs `ca`, the CA certificates it is checked \
             against"
                .into(),
        ));
    }
    let token = match &s.token_file {
        None => None,
        Some(_) if key != "siem.https" => {
            return Err(Error::Config(
                "siem.token_file is for an https collector".into(),
            ));
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::File {
                path: path.clone(),
                source,
            })?;
            let token = text.trim().to_string();
            if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
                return Err(Error::Config(format!(
                    "siem.token_file: {} holds no usable token",
                    path.display()
                )));
            }
            Some(token)
        }
    };
    let facility = s.facility.unwrap_or(10);
    if facility > 23 {
        return Err(Error::Config("siem.facility is 0 to 23".into()));
    }
    Ok(crate::server::SiemOptions {
        target,
        ca: s.ca.clone(),
        facility,
        token,
        data_dir: PathBuf::new(),
    })
}

/// `[backup]`, checked; the data directory is filled in by the caller.
fn backup_schedule(b: &BackupSection) -> Result<crate::backup::Schedule> {
    crate::backup::Seal::recipients(&b.recipients)
        .map_err(|e| Error::Config(format!("backup: {e}")))?;
    let every_hours = b.every_hours.unwrap_or(24);
    let keep = b.keep.unwrap_or(7);
    if every_hours == 0 || keep == 0 {
        return Err(Error::Config(
            "backup: every_hours and keep must be at least 1".into(),
        ));
    }
    Ok(crate::backup::Schedule {
        data_dir: PathBuf::new(),
        dir: b.dir.clone(),
        every: std::time::Duration::from_secs(every_hours * 3600),
        keep,
        recipients: b.recipients.clone(),
    })
}

fn media_options(m: &MediaSection) -> Result<Option<MediaOptions>> {
    if m.enabled == Some(false) {
        return Ok(None);
    }
    let d = MediaOptions::default();
    let opts = MediaOptions {
        bind_ip: m.bind_ip,
        advertise_ip: m.advertise_ip,
        port_min: m.port_min.unwrap_or(d.port_min),
        port_max: m.port_max.unwrap_or(d.port_max),
        idle_timeout: match m.idle_timeout_secs {
            Some(secs) => positive_secs("media.idle_timeout_secs", secs)?,
            None => d.idle_timeout,
        },
        sessions: pbx_guard::SessionCaps {
            total: m.max_sessions.unwrap_or(d.sessions.total),
            per_tenant: m.max_sessions_per_tenant.unwrap_or(d.sessions.per_tenant),
        },
    };
    if opts.port_min == 0 || opts.port_max <= opts.port_min {
        return Err(Error::Config(format!(
            "media: need 0 < port_min < port_max, got {} / {}",
            opts.port_min, opts.port_max
        )));
    }
    if opts.advertise_ip.is_some_and(|ip| ip.is_unspecified()) {
        return Err(Error::Config(
            "media.advertise_ip must be a concrete address".into(),
        ));
    }
    Ok(Some(opts))
}

/// `[subscriptions]` over the core's defaults, checked.
fn subscription_config(s: &SubscriptionsSection) -> Result<SubscriptionConfig> {
    let d = SubscriptionConfig::default();
    let c = SubscriptionConfig {
        min_expires: s.min_expires.unwrap_or(d.min_expires),
        max_expires: s.max_expires.unwrap_or(d.max_expires),
        default_expires: s.default_expires.unwrap_or(d.default_expires),
        max_per_extension: s.max_per_extension.unwrap_or(d.max_per_extension),
        max_per_tenant: s.max_per_tenant.unwrap_or(d.max_per_tenant),
        max_total: s.max_total.unwrap_or(d.max_total),
    };
    if c.min_expires == 0
        || !(c.min_expires <= c.default_expires && c.default_expires <= c.max_expires)
    {
        return Err(Error::Config(format!(
            "subscriptions: need 1 <= min_expires <= default_expires <= max_expires, got {} / {} / {}",
            c.min_expires, c.default_expires, c.max_expires
        )));
    }
    if c.max_per_extension == 0 || c.max_per_tenant == 0 || c.max_total == 0 {
        return Err(Error::Config(
            "subscriptions: max_per_extension, max_per_tenant and max_total must be at least 1"
                .into(),
        ));
    }
    Ok(c)
}

/// Maps the file's protocol settings onto the SIP core's configuration.
fn core_config(file: &FileConfig) -> Result<CoreConfig> {
    let mut core = CoreConfig::default();
    let defaults = RegistrarConfig::default();
    let r = &file.registrar;
    core.registrar = RegistrarConfig {
        min_expires: r.min_expires.unwrap_or(defaults.min_expires),
        max_expires: r.max_expires.unwrap_or(defaults.max_expires),
        default_expires: r.default_expires.unwrap_or(defaults.default_expires),
        max_contacts: r.max_contacts.unwrap_or(defaults.max_contacts),
        node: defaults.node,
    };
    let reg = &core.registrar;
    if reg.min_expires == 0 {
        return Err(Error::Config(
            "registrar.min_expires must be at least 1".into(),
        ));
    }
    if !(reg.min_expires <= reg.default_expires && reg.default_expires <= reg.max_expires) {
        return Err(Error::Config(format!(
            "registrar: need min_expires <= default_expires <= max_expires, got {} / {} / {}",
            reg.min_expires, reg.default_expires, reg.max_expires
        )));
    }
    if reg.max_contacts == 0 {
        return Err(Error::Config(
            "registrar.max_contacts must be at least 1".into(),
        ));
    }
    core.subscriptions = subscription_config(&file.subscriptions)?;

    if let Some(names) = &file.auth.algorithms {
        let algorithms = names
            .iter()
            .map(|name| {
                DigestAlgorithm::parse(name).map_err(|_| {
                    Error::Config(format!(
                        "auth.algorithms: unknown algorithm `{name}` (use \"MD5\" or \"SHA-256\")"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        core.digest_algorithms = DigestAlgorithms::new(algorithms)
            .map_err(|e| Error::Config(format!("auth.algorithms: {e}")))?;
    }
    if let Some(secs) = file.auth.nonce_lifetime_secs {
        core.nonce_lifetime = positive_secs("auth.nonce_lifetime_secs", secs)?;
    }
    if let Some(secs) = file.calls.ring_timeout_secs {
        core.ring_timeout = positive_secs("calls.ring_timeout_secs", secs)?;
    }
    if let Some(secs) = file.calls.max_duration_secs {
        core.max_call_duration = positive_secs("calls.max_duration_secs", secs)?;
    }
    if let Some(names) = &file.calls.plugin_headers {
        if names.len() > pbx_core::MAX_EXPOSED_HEADERS {
            return Err(Error::Config(format!(
                "calls.plugin_headers lists {} names; at most {}",
                names.len(),
                pbx_core::MAX_EXPOSED_HEADERS
            )));
        }
        let token = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
        };
        if let Some(bad) = names.iter().find(|n| !token(n)) {
            return Err(Error::Config(format!(
                "calls.plugin_headers: {bad:?} is not a header name"
            )));
        }
        // Credentials never reach a plugin, whatever the list says.
        let secret = ["authorization", "proxy-authorization"];
        if let Some(bad) = names
            .iter()
            .find(|n| secret.contains(&n.to_ascii_lowercase().as_str()))
        {
            return Err(Error::Config(format!(
                "calls.plugin_headers: {bad} carries credentials and cannot be exposed"
            )));
        }
        core.exposed_headers = names.clone();
    }
    if let Some(ua) = &file.user_agent {
        let ua = ua.trim();
        if ua.chars().any(|c| c.is_control()) {
            return Err(Error::Config(
                "user_agent must not contain control characters".into(),
            ));
        }
        core.user_agent = (!ua.is_empty()).then(|| ua.to_owned());
    }
    Ok(core)
}

/// Maps `[fraud]` onto the host's call-level fraud controls.
fn fraud_options(section: &FraudSection) -> Result<crate::server::FraudConfig> {
    let mut fraud = crate::server::FraudConfig::default();
    if let Some(country) = &section.home_country {
        fraud.classifier.home_country = country.clone();
    }
    if let Some(p) = &section.premium_prefixes {
        fraud.classifier.premium_prefixes = p.clone();
    }
    if let Some(p) = &section.high_risk_prefixes {
        fraud.classifier.high_risk_prefixes = p.clone();
    }
    if let Some(url) = &section.webhook_url {
        let secret = std::env::var("PBX_WEBHOOK_SECRET")
            .ok()
            .or_else(|| section.webhook_secret.clone())
            .ok_or_else(|| {
                Error::Config("fraud.webhook_url needs a secret (PBX_WEBHOOK_SECRET)".into())
            })?;
        fraud.webhook = Some(
            crate::server::Webhook::new(url, &secret)
                .map_err(|e| Error::Config(format!("fraud.webhook_url: {e}")))?,
        );
    }
    pbx_guard::Classifier::new(&fraud.classifier)
        .map_err(|e| Error::Config(format!("fraud: {e}")))?;
    Ok(fraud)
}

/// Maps `[guard]` onto the server's abuse-defense options.
fn guard_options(section: &GuardSection) -> Result<GuardOptions> {
    let mut guard = GuardOptions::default();
    if let Some(enabled) = section.enabled {
        guard.enabled = enabled;
    }
    if let Some(n) = section.max_failures {
        if n == 0 {
            return Err(Error::Config(
                "guard.max_failures must be at least 1".into(),
            ));
        }
        guard.bans.max_failures = n;
    }
    if let Some(secs) = section.window_secs {
        guard.bans.window = positive_secs("guard.window_secs", secs)?;
    }
    if let Some(secs) = section.ban_secs {
        guard.bans.base_ban = positive_secs("guard.ban_secs", secs)?;
        guard.bans.max_ban = guard.bans.max_ban.max(guard.bans.base_ban);
    }
    if let Some(n) = section.messages_per_second {
        if n == 0 {
            return Err(Error::Config(
                "guard.messages_per_second must be at least 1".into(),
            ));
        }
        guard.rate.per_second = n;
    }
    if let Some(n) = section.burst {
        if n == 0 {
            return Err(Error::Config("guard.burst must be at least 1".into()));
        }
        guard.rate.burst = n;
    }
    if let Some(n) = section.authenticated_messages_per_second {
        if n == 0 {
            return Err(Error::Config(
                "guard.authenticated_messages_per_second must be at least 1".into(),
            ));
        }
        guard.rate.authenticated_per_second = n;
    }
    if let Some(n) = section.authenticated_burst {
        if n == 0 {
            return Err(Error::Config(
                "guard.authenticated_burst must be at least 1".into(),
            ));
        }
        guard.rate.authenticated_burst = n;
    }
    if let Some(list) = &section.trusted {
        let nets = list
            .iter()
            .map(|n| {
                pbx_guard::acl::parse_net(n)
                    .map_err(|e| Error::Config(format!("guard.trusted: `{n}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        guard.set_trusted(nets);
    }
    if let Some(list) = &section.proxies {
        guard.proxies = list
            .iter()
            .map(|n| {
                pbx_guard::acl::parse_net(n)
                    .map_err(|e| Error::Config(format!("guard.proxies: `{n}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
    }
    Ok(guard)
}

fn positive_secs(key: &str, secs: u64) -> Result<Duration> {
    if secs == 0 {
        return Err(Error::Config(format!("{key} must be at least 1")));
    }
    Ok(Duration::from_secs(secs))
}

/// An advertised address is an IP address or a plausible host name.
fn check_host(host: &str) -> Result<()> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "sip.advertise: `{host}` is neither an IP address nor a host name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
user_agent = "acme-pbx"

[sip]
udp = ["127.0.0.1:5070", "[::1]:5070"]
tcp = ["127.0.0.1:5071"]
advertise = "pbx.example.net"

[registrar]
min_expires = 30
max_expires = 600
default_expires = 300
max_contacts = 3

[subscriptions]
min_expires = 120
max_expires = 1800
default_expires = 900
max_per_extension = 4
max_per_tenant = 50
max_total = 500

[auth]
algorithms = ["MD5"]
nonce_lifetime_secs = 120

[calls]
ring_timeout_secs = 20
max_duration_secs = 3600

[log]
format = "json"
"#;

    #[test]
    fn full_file_maps_onto_core_config() {
        let file = FileConfig::parse(FULL).unwrap();
        let s = Settings::resolve(file, &ServeArgs::default()).unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.serve.udp.len(), 2);
        assert_eq!(s.serve.tcp, vec!["127.0.0.1:5071".parse().unwrap()]);
        assert_eq!(s.serve.advertise.as_deref(), Some("pbx.example.net"));
        let core = &s.serve.core;
        assert_eq!(core.registrar.min_expires, 30);
        assert_eq!(core.registrar.max_expires, 600);
        assert_eq!(core.registrar.default_expires, 300);
        assert_eq!(core.registrar.max_contacts, 3);
        let subs = &core.subscriptions;
        assert_eq!(
            (subs.min_expires, subs.max_expires, subs.default_expires),
            (120, 1800, 900)
        );
        assert_eq!(
            (subs.max_per_extension, subs.max_per_tenant, subs.max_total),
            (4, 50, 500)
        );
        assert_eq!(core.digest_algorithms.as_slice(), [DigestAlgorithm::Md5]);
        assert_eq!(core.nonce_lifetime, Duration::from_secs(120));
        assert_eq!(core.ring_timeout, Duration::from_secs(20));
        assert_eq!(core.max_call_duration, Duration::from_secs(3600));
        assert_eq!(core.user_agent.as_deref(), Some("acme-pbx"));
    }

    #[test]
    fn media_section_sets_the_host_media_session_caps() {
        let file =
            FileConfig::parse("[media]\nmax_sessions = 40\nmax_sessions_per_tenant = 4").unwrap();
        let s = Settings::resolve(file, &ServeArgs::default()).unwrap();
        let media = s.serve.media.expect("media on");
        assert_eq!(
            media.sessions,
            pbx_guard::SessionCaps {
                total: 40,
                per_tenant: 4
            }
        );
        let file = FileConfig::parse("[media]\nidle_timeout_secs = 30").unwrap();
        let s = Settings::resolve(file, &ServeArgs::default()).unwrap();
        assert_eq!(
            s.serve.media.expect("media on").sessions,
            pbx_guard::SessionCaps::default()
        );
    }

    #[test]
    fn unknown_keys_are_rejected_everywhere() {
        for text in [
            "colour = 1",
            "[sip]\nupd = [\"127.0.0.1:5060\"]",
            "[registrar]\nmax_expire = 5",
            "[subscriptions]\nmax = 5",
            "[nonsense]\n",
            "[log]\nlevel = \"debug\"",
        ] {
            let err = FileConfig::parse(text).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{text}: {err}");
        }
        let err = FileConfig::parse("[sip]\nupd = []")
            .unwrap_err()
            .to_string();
        assert!(err.contains("upd"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        for text in [
            "[sip]\nudp = [\"not-an-address\"]",
            "[auth]\nalgorithms = [\"SHA-512\"]",
            "[auth]\nalgorithms = []",
            "[auth]\nalgorithms = [\"MD5\", \"md5\"]",
            "[registrar]\nmin_expires = 100\nmax_expires = 50",
            "[registrar]\nmax_contacts = 0",
            "[subscriptions]\nmin_expires = 100\nmax_expires = 50",
            "[subscriptions]\nmax_per_tenant = 0",
            "[calls]\nring_timeout_secs = 0",
            "[registrar]\nmin_expires = -1",
            "[log]\nformat = \"xml\"",
            "[sip]\nadvertise = \"bad host!\"",
        ] {
            let res =
                FileConfig::parse(text).and_then(|f| Settings::resolve(f, &ServeArgs::default()));
            assert!(res.is_err(), "{text} accepted");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig::parse(FULL).unwrap();
        let args = ServeArgs {
            sip_udp: vec!["0.0.0.0:6000".parse().unwrap()],
            advertise: Some("192.0.2.7".into()),
            log_format: Some(LogFormat::Text),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(file, &args).unwrap();
        assert_eq!(s.serve.udp, vec!["0.0.0.0:6000".parse().unwrap()]);
        // Not overridden: kept from the file.
        assert_eq!(s.serve.tcp, vec!["127.0.0.1:5071".parse().unwrap()]);
        assert_eq!(s.serve.advertise.as_deref(), Some("192.0.2.7"));
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn defaults_listen_on_loopback_5060() {
        let s = Settings::resolve(FileConfig::default(), &ServeArgs::default()).unwrap();
        let addr: SocketAddr = DEFAULT_SIP_ADDR.parse().unwrap();
        assert_eq!(s.serve.udp, vec![addr]);
        assert_eq!(s.serve.tcp, vec![addr]);
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.serve.core.registrar, RegistrarConfig::default());
        assert!(s.serve.core.user_agent.is_none());
    }

    #[test]
    fn tcp_only_flag_does_not_add_default_udp() {
        let args = ServeArgs {
            sip_tcp: vec!["127.0.0.1:5099".parse().unwrap()],
            ..ServeArgs::default()
        };
        let s = Settings::resolve(FileConfig::default(), &args).unwrap();
        assert!(s.serve.udp.is_empty());
        assert_eq!(s.serve.tcp.len(), 1);
    }

    #[test]
    fn api_section_and_flag() {
        let file =
            FileConfig::parse("[api]\nlisten = \"127.0.0.1:9443\"\nplain_http = true\n").unwrap();
        let s = Settings::resolve(file.clone(), &ServeArgs::default()).unwrap();
        let api = s.api.expect("api");
        assert_eq!(api.listen, "127.0.0.1:9443".parse().unwrap());
        assert!(api.plain_http);
        let args = ServeArgs {
            api: Some("[::1]:7443".parse().unwrap()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(file, &args).unwrap();
        assert_eq!(s.api.unwrap().listen, "[::1]:7443".parse().unwrap());
        // The flag alone serves TLS with the defaults.
        let s = Settings::resolve(FileConfig::default(), &args).unwrap();
        assert!(!s.api.unwrap().plain_http);
        assert!(
            Settings::resolve(FileConfig::default(), &ServeArgs::default())
                .unwrap()
                .api
                .is_none()
        );
        for text in [
            "[api]\nlisen = \"127.0.0.1:1\"",
            "[api]\nlisten = \"0.0.0.0:8443\"\nplain_http = true",
        ] {
            let res =
                FileConfig::parse(text).and_then(|f| Settings::resolve(f, &ServeArgs::default()));
            assert!(res.is_err(), "{text} accepted");
        }
    }

    #[test]
    fn demo_serves_the_api_on_loopback_over_plain_http() {
        let s = Settings::load_demo(&ServeArgs::default()).unwrap();
        let api = s.api.unwrap();
        assert_eq!(api.listen, DEMO_API_ADDR.parse().unwrap());
        assert!(api.plain_http);
    }

    #[test]
    fn guard_section_maps_onto_the_options() {
        let s = Settings::resolve(FileConfig::default(), &ServeArgs::default()).unwrap();
        assert_eq!(s.serve.guard, GuardOptions::default());
        let text = "[guard]\nmax_failures = 3\nwindow_secs = 60\nban_secs = 120\n\
            messages_per_second = 5\nburst = 9\nauthenticated_messages_per_second = 700\n\
            authenticated_burst = 1400\ntrusted = [\"10.0.0.0/8\", \"192.0.2.1\"]\n\
            proxies = [\"203.0.113.1\"]\n";
        let s = Settings::resolve(FileConfig::parse(text).unwrap(), &ServeArgs::default()).unwrap();
        let g = &s.serve.guard;
        assert!(g.enabled);
        assert_eq!(g.bans.max_failures, 3);
        assert_eq!(g.bans.window, Duration::from_secs(60));
        assert_eq!(g.bans.base_ban, Duration::from_secs(120));
        assert_eq!((g.rate.per_second, g.rate.burst), (5, 9));
        assert_eq!(
            (g.rate.authenticated_per_second, g.rate.authenticated_burst),
            (700, 1400)
        );
        assert_eq!(g.trusted().len(), 2);
        assert_eq!(g.scanner.exempt, g.trusted());
        assert_eq!(
            g.proxies,
            vec!["203.0.113.1/32".parse::<ipnet::IpNet>().unwrap()]
        );
        let none = FileConfig::parse("[guard]\ntrusted = []\nenabled = false").unwrap();
        let s = Settings::resolve(none, &ServeArgs::default()).unwrap();
        assert!(s.serve.guard.trusted().is_empty());
        assert!(!s.serve.guard.enabled);
        for text in [
            "[guard]\nmax_failures = 0",
            "[guard]\ntrusted = [\"not-a-net\"]",
            "[guard]\nproxies = [\"front.example\"]",
            "[guard]\nban_secs = 0",
            "[guard]\nauthenticated_burst = 0",
            "[guard]\nbanned = 1",
        ] {
            let res =
                FileConfig::parse(text).and_then(|f| Settings::resolve(f, &ServeArgs::default()));
            assert!(res.is_err(), "{text} accepted");
        }
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = FileConfig::load(Path::new("/nonexistent/pbx.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pbx.toml"), "{err}");
    }

    #[test]
    fn siem_takes_syslog_or_https_with_a_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "abc123\n").unwrap();
        let section = |syslog: Option<&str>, https: Option<&str>, token_file: bool| SiemSection {
            syslog: syslog.map(str::to_string),
            https: https.map(str::to_string),
            token_file: token_file.then(|| token.clone()),
            ca: Some(PathBuf::from("/etc/ca.pem")),
            facility: None,
        };
        let opts = siem_options(&section(None, Some("https://siem.example/in"), true)).unwrap();
        assert_eq!(opts.token.as_deref(), Some("abc123"));
        assert!(matches!(
            opts.target,
            crate::server::SiemTarget::Https { .. }
        ));
        assert!(siem_options(&section(Some("udp://x:514"), None, false)).is_ok());
        for (bad, why) in [
            (section(None, None, false), "exactly one"),
            (
                section(Some("udp://x:514"), Some("https://x/"), false),
                "exactly one",
            ),
            (
                section(Some("https://x/"), None, false),
                "belongs in siem.https",
            ),
            (
                section(None, Some("tls://x:6514"), false),
                "belongs in siem.syslog",
            ),
            (
                section(Some("udp://x:514"), None, true),
                "token_file is for",
            ),
        ] {
            let err = siem_options(&bad).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let mut no_ca = section(None, Some("https://x/"), false);
        no_ca.ca = None;
        assert!(
            siem_options(&no_ca)
                .unwrap_err()
                .to_string()
                .contains("needs `ca`")
        );
    }
}
