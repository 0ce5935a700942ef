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
//!
//! [registrar]
//! min_expires = 60
//! max_expires = 7200
//! default_expires = 3600
//! max_contacts = 5
//!
//! [auth]
//! algorithms = ["SHA-256", "MD5"]  # offered in this order
//! nonce_lifetime_secs = 300
//!
//! [calls]
//! ring_timeout_secs = 60
//! max_duration_secs = 14400
//!
//! [log]
//! format = "text"                  # or "json"
//! ```
//!
//! Command-line flags override the file: `--sip-udp`/`--sip-tcp` replace the
//! file's lists, `--advertise` and `--log-format` its values. With no listener named
//! anywhere the server listens on 127.0.0.1:5060 over UDP and TCP.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pbx_core::{CoreConfig, DigestAlgorithm, RegistrarConfig};
use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::logging::LogFormat;
use crate::server::ServeOptions;
use crate::{Error, Result};

/// The default SIP listener (UDP and TCP) when none is configured.
pub const DEFAULT_SIP_ADDR: &str = "127.0.0.1:5060";

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Sent as `Server`/`User-Agent`; nothing is sent when absent.
    pub user_agent: Option<String>,
    #[serde(default)]
    pub sip: SipSection,
    #[serde(default)]
    pub registrar: RegistrarSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub calls: CallsSection,
    #[serde(default)]
    pub log: LogSection,
}

/// `[sip]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    #[serde(default)]
    pub udp: Vec<SocketAddr>,
    #[serde(default)]
    pub tcp: Vec<SocketAddr>,
    pub advertise: Option<String>,
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
    /// 127.0.0.1:5060.
    pub fn load_demo(args: &ServeArgs) -> Result<Settings> {
        Settings::load(args)
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
        if udp.is_empty() && tcp.is_empty() {
            let default: SocketAddr = DEFAULT_SIP_ADDR
                .parse()
                .map_err(|_| Error::Config("bad built-in default address".into()))?;
            udp.push(default);
            tcp.push(default);
        }
        for list in [&mut udp, &mut tcp] {
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

        let core = core_config(&file)?;
        let mut serve = ServeOptions::new(udp, tcp, core);
        serve.advertise = advertise;
        Ok(Settings {
            serve,
            log_format: args.log_format.or(file.log.format).unwrap_or_default(),
        })
    }
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

    if let Some(names) = &file.auth.algorithms {
        let mut algorithms = Vec::with_capacity(names.len());
        for name in names {
            let alg = match name.to_ascii_uppercase().as_str() {
                "SHA-256" => DigestAlgorithm::Sha256,
                "MD5" => DigestAlgorithm::Md5,
                _ => {
                    return Err(Error::Config(format!(
                        "auth.algorithms: unknown algorithm `{name}` (use \"SHA-256\" or \"MD5\")"
                    )));
                }
            };
            if algorithms.contains(&alg) {
                return Err(Error::Config(format!(
                    "auth.algorithms: `{name}` listed twice"
                )));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err(Error::Config("auth.algorithms must not be empty".into()));
        }
        core.digest_algorithms = algorithms;
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
        assert_eq!(core.digest_algorithms, vec![DigestAlgorithm::Md5]);
        assert_eq!(core.nonce_lifetime, Duration::from_secs(120));
        assert_eq!(core.ring_timeout, Duration::from_secs(20));
        assert_eq!(core.max_call_duration, Duration::from_secs(3600));
        assert_eq!(core.user_agent.as_deref(), Some("acme-pbx"));
    }

    #[test]
    fn unknown_keys_are_rejected_everywhere() {
        for text in [
            "colour = 1",
            "[sip]\nupd = [\"127.0.0.1:5060\"]",
            "[registrar]\nmax_expire = 5",
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
    fn missing_file_is_a_clear_error() {
        let err = FileConfig::load(Path::new("/nonexistent/pbx.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pbx.toml"), "{err}");
    }
}
