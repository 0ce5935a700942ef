//! Login anomalies, raised as alerts (and so forwarded to the SIEM):
//!
//! - `login.new_network`: a user logs in from a network never seen for that
//!   user (not on its first login ever). The network is the GeoIP database's
//!   (country and network) when the provider configured one (`[api]
//!   geoip_db`, MaxMind format), else the address's /24 (IPv4) or /48 (IPv6).
//! - `login.distributed_failures`: failed logins for one account from many
//!   addresses within a few minutes (a spread-out guessing attack that the
//!   per-address back-off does not slow); one alert per account and window.
//!
//! Memory is bounded: at most [`MAX_WATCHED`] accounts, each with at most
//! [`MAX_FAILURES_KEPT`] recent failures.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::Path;

use parking_lot::Mutex;

/// Failures within this window count together.
pub(crate) const WINDOW_MS: i64 = 10 * 60 * 1000;
/// Distinct addresses failing for one account within the window that raise
/// the alert.
pub(crate) const DISTINCT_SOURCES: usize = 5;
const MAX_FAILURES_KEPT: usize = 64;
const MAX_WATCHED: usize = 10_000;

/// Where a login came from, as anomalies compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Network {
    /// What is remembered per user: `XX/203.0.113.0/24` with GeoIP (country,
    /// the database's network), else `203.0.113.0/24`.
    pub(crate) key: String,
    pub(crate) country: Option<String>,
}

struct Failures {
    recent: VecDeque<(String, i64)>,
    alerted_at: Option<i64>,
}

/// The state of the watch.
pub(crate) struct LoginWatch {
    geo: Option<maxminddb::Reader<Vec<u8>>>,
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginWatch {
    /// Opens the GeoIP database when one is named.
    pub(crate) fn open(geoip: Option<&Path>) -> Result<LoginWatch, String> {
        let geo = geoip
            .map(|p| {
                maxminddb::Reader::open_readfile(p)
                    .map_err(|e| format!("geoip_db {}: {e}", p.display()))
            })
            .transpose()?;
        Ok(LoginWatch {
            geo,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The network `ip` belongs to.
    pub(crate) fn network(&self, ip: IpAddr) -> Network {
        let fallback = match ip {
            IpAddr::V4(v4) => ipnet::Ipv4Net::new(v4, 24).map(|n| n.trunc().to_string()),
            IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, 48).map(|n| n.trunc().to_string()),
        }
        .unwrap_or_else(|_| ip.to_string());
        let Some(reader) = &self.geo else {
            return Network {
                key: fallback,
                country: None,
            };
        };
        let found = reader.lookup(ip).ok().filter(|r| r.has_data());
        let country: Option<String> = found.as_ref().and_then(|r| {
            r.decode_path(&maxminddb::path!["country", "iso_code"])
                .ok()
                .flatten()
        });
        let network = found
            .as_ref()
            .and_then(|r| r.network().ok())
            .map(|n| n.to_string())
            .unwrap_or(fallback);
        Network {
            key: format!("{}/{network}", country.as_deref().unwrap_or("--")),
            country,
        }
    }

    /// Notes a failed login for `account` from `source` at `now_ms`; true
    /// when this failure makes the account's failures in the window come
    /// from [`DISTINCT_SOURCES`] addresses (once per window).
    pub(crate) fn failed(&self, account: &str, source: &str, now_ms: i64) -> bool {
        let mut all = self.failures.lock();
        if !all.contains_key(account) && all.len() >= MAX_WATCHED {
            // Forget accounts with nothing recent first, then any.
            all.retain(|_, f| f.recent.back().is_some_and(|(_, t)| now_ms - t < WINDOW_MS));
            if all.len() >= MAX_WATCHED {
                let Some(oldest) = all
                    .iter()
                    .min_by_key(|(_, f)| f.recent.back().map_or(i64::MIN, |(_, t)| *t))
                    .map(|(k, _)| k.clone())
                else {
                    return false;
                };
                all.remove(&oldest);
            }
        }
        let entry = all.entry(account.to_string()).or_insert_with(|| Failures {
            recent: VecDeque::new(),
            alerted_at: None,
        });
        while entry
            .recent
            .front()
            .is_some_and(|(_, t)| now_ms - t >= WINDOW_MS)
        {
            entry.recent.pop_front();
        }
        if entry.recent.len() >= MAX_FAILURES_KEPT {
            entry.recent.pop_front();
        }
        entry.recent.push_back((source.to_string(), now_ms));
        let mut sources: Vec<&str> = entry.recent.iter().map(|(s, _)| s.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        let quiet = entry.alerted_at.is_none_or(|t| now_ms - t >= WINDOW_MS);
        if sources.len() >= DISTINCT_SOURCES && quiet {
            entry.alerted_at = Some(now_ms);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_without_geoip_are_the_24_or_the_48() {
        let w = LoginWatch::open(None).unwrap();
        let n = |ip: &str| w.network(ip.parse().unwrap()).key;
        assert_eq!(n("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(n("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert!(LoginWatch::open(Some(Path::new("/nonexistent.mmdb"))).is_err());
    }

    #[test]
    fn failures_from_many_addresses_alert_once_per_window() {
        let w = LoginWatch::open(None).unwrap();
        // Many failures from one address are the back-off's business.
        for i in 0..20 {
            assert!(!w.failed("root", "198.51.100.1", i));
        }
        let alerts: Vec<bool> = (2..=8)
            .map(|i| w.failed("root", &format!("198.51.100.{i}"), 100 + i))
            .collect();
        assert_eq!(alerts, [false, false, false, true, false, false, false]);
        assert!(!w.failed("other", "198.51.100.9", 200), "per account");
        // A window later it can alert again.
        let later = 100 + WINDOW_MS + 1;
        let again: Vec<bool> = (10..15)
            .map(|i| w.failed("root", &format!("198.51.100.{i}"), later + i))
            .collect();
        assert_eq!(again.last(), Some(&true));
    }

    /// With a MaxMind-format database (written here in that format), a
    /// network is named by its country and the database's network; an
    /// address the database does not know falls back to its /24.
    #[test]
    fn networks_with_a_geoip_database_name_the_country() {
        use std::collections::BTreeMap;
        #[derive(serde::Serialize)]
        struct Country {
            iso_code: String,
        }
        let mut writer = mmdb_writer::Writer::new("GeoLite2-Country");
        for (net, code) in [("203.0.113.0/25", "NL"), ("2001:db8::/32", "JP")] {
            let record = BTreeMap::from([(
                "country".to_string(),
                Country {
                    iso_code: code.into(),
                },
            )]);
            writer
                .insert(net.parse::<ipnet::IpNet>().unwrap(), &record)
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("country.mmdb");
        std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
        let w = LoginWatch::open(Some(&path)).unwrap();
        let n = |ip: &str| w.network(ip.parse().unwrap());
        assert_eq!(n("203.0.113.77").key, "NL/203.0.113.0/25");
        assert_eq!(n("203.0.113.77").country.as_deref(), Some("NL"));
        assert_eq!(n("2001:db8:5::1").key, "JP/2001:db8::/32");
        assert_eq!(n("203.0.113.200").key, "--/203.0.113.0/24");
        assert_eq!(n("203.0.113.200").country, None);
        // A file that is not a database is refused at start-up.
        std::fs::write(&path, b"not a database").unwrap();
        assert!(LoginWatch::open(Some(&path)).is_err());
    }
}
