//! CIDR allow-lists for tenants and extensions.
//!
//! The same concept as `pbx-store`'s `acl.rs` at another layer: this one enforces
//! the network ACLs, that one stores them.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::{Error, Result};

/// An allow-list of networks. An ACL without entries restricts nothing (the
/// usual meaning of "no ACL configured"); use [`Acl::deny_all`] to refuse every
/// address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    nets: Vec<IpNet>,
    deny_all: bool,
}

impl Acl {
    /// An ACL that allows every address.
    pub fn allow_all() -> Acl {
        Acl::default()
    }

    /// An ACL that allows no address.
    pub fn deny_all() -> Acl {
        Acl {
            nets: Vec::new(),
            deny_all: true,
        }
    }

    /// Builds an ACL from networks already parsed.
    pub fn from_nets(nets: Vec<IpNet>) -> Acl {
        Acl {
            nets: nets.into_iter().map(|n| n.trunc()).collect(),
            deny_all: false,
        }
    }

    /// Parses entries such as `10.0.0.0/8`, `192.0.2.7` (one host) or
    /// `2001:db8::/32`. Surrounding white space is ignored; the first bad entry
    /// is the error.
    pub fn parse<I, S>(entries: I) -> Result<Acl>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = entries
            .into_iter()
            .map(|e| parse_net(e.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Acl::from_nets(nets))
    }

    /// Whether `ip` may use what this ACL guards. IPv4-mapped IPv6 addresses
    /// match IPv4 networks.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.deny_all {
            return false;
        }
        if self.nets.is_empty() {
            return true;
        }
        contains_any(&self.nets, ip)
    }

    /// The networks of this ACL.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// Parses one ACL entry: a CIDR network or a bare address (a host network).
pub fn parse_net(input: &str) -> Result<IpNet> {
    let s = input.trim();
    let bad = |reason: &str| Error::BadNetwork {
        input: input.chars().take(64).collect(),
        reason: reason.into(),
    };
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.contains('/') {
        return s
            .parse::<IpNet>()
            .map(|n| n.trunc())
            .map_err(|_| bad("not a CIDR network"));
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| bad("not an IP address"))
}

/// Whether any of `nets` contains `ip` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn contains_any(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// A tenant's ACL plus per-extension ACLs; a source must pass both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantAcls {
    /// Applies to every extension of the tenant.
    pub tenant: Acl,
    extensions: HashMap<String, Acl>,
}

impl TenantAcls {
    /// Tenant-wide ACL with no extension ACLs yet.
    pub fn new(tenant: Acl) -> TenantAcls {
        TenantAcls {
            tenant,
            extensions: HashMap::new(),
        }
    }

    /// Sets (replaces) the ACL of one extension.
    pub fn set_extension(&mut self, extension: &str, acl: Acl) {
        self.extensions.insert(extension.to_owned(), acl);
    }

    /// Removes an extension's ACL, returning it.
    pub fn remove_extension(&mut self, extension: &str) -> Option<Acl> {
        self.extensions.remove(extension)
    }

    /// Whether `ip` may act as `extension` of this tenant.
    pub fn allows(&self, extension: &str, ip: IpAddr) -> bool {
        self.tenant.allows(ip) && self.extensions.get(extension).is_none_or(|a| a.allows(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn parses_networks_and_hosts() {
        let acl = Acl::parse([" 10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "172.16.5.9/16"])
            .expect("acl");
        assert!(acl.allows(ip("10.200.1.1")));
        assert!(acl.allows(ip("192.0.2.7")));
        assert!(!acl.allows(ip("192.0.2.8")));
        assert!(acl.allows(ip("2001:db8:1::5")));
        assert!(!acl.allows(ip("2001:db9::1")));
        // host bits are cleared
        assert!(acl.allows(ip("172.16.200.1")));
        assert!(!acl.allows(ip("11.0.0.1")));
    }

    #[test]
    fn mapped_ipv6_matches_ipv4_networks() {
        let acl = Acl::parse(["10.0.0.0/8"]).expect("acl");
        assert!(acl.allows(ip("::ffff:10.1.2.3")));
        assert!(!acl.allows(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn bad_entries_are_errors() {
        for bad in [
            "",
            "  ",
            "10.0.0.0/33",
            "10.0.0",
            "host.example",
            "::1/129",
            "1.2.3.4/x",
        ] {
            let err = Acl::parse([bad]).expect_err(bad);
            assert!(matches!(err, Error::BadNetwork { .. }), "{bad}: {err}");
        }
        assert!(Acl::parse(["10.0.0.0/8", "nope"]).is_err());
    }

    #[test]
    fn empty_allows_all_and_deny_all_denies() {
        assert!(Acl::allow_all().allows(ip("203.0.113.1")));
        assert!(
            Acl::parse(Vec::<String>::new())
                .expect("empty")
                .allows(ip("::1"))
        );
        assert!(!Acl::deny_all().allows(ip("127.0.0.1")));
    }

    #[test]
    fn tenant_and_extension_acls_both_apply() {
        let mut acls = TenantAcls::new(Acl::parse(["10.0.0.0/8"]).expect("acl"));
        acls.set_extension("100", Acl::parse(["10.1.0.0/16"]).expect("acl"));
        assert!(acls.allows("100", ip("10.1.2.3")));
        assert!(!acls.allows("100", ip("10.2.2.3")));
        assert!(acls.allows("101", ip("10.2.2.3")));
        assert!(!acls.allows("101", ip("192.168.0.1")));
        assert!(acls.remove_extension("100").is_some());
        assert!(acls.allows("100", ip("10.2.2.3")));
    }
}
