//! The tenant directory as the SIP path reads it: domain → tenant, and
//! (tenant, extension) → credentials. Built from a [`model::Directory`] snapshot and
//! swapped whole when provisioning changes.
//!
//! The same concept as `pbx-plugin`'s `caps/directory.rs` at another layer: this
//! one is the SIP path's directory, that one the read-only view a plugin gets.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use model::{DigestAlgorithms, Directory, MediaEncryption, TenantId, TenantStatus};

/// A tenant's own networks and its extensions' networks, while building.
type NetLists<'a> = (Vec<IpNet>, HashMap<&'a str, Vec<IpNet>>);

#[derive(Debug, Clone)]
pub(crate) struct TenantEntry {
    pub(crate) id: TenantId,
    pub(crate) realm: String,
    pub(crate) active: bool,
    /// Digest algorithms offered to its phones; `None`: the configured default.
    pub(crate) digest: Option<DigestAlgorithms>,
}

#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) ha1_md5: String,
    pub(crate) ha1_sha256: String,
    pub(crate) enabled: bool,
    /// Digest algorithms offered to this phone; `None`: its tenant's.
    pub(crate) digest: Option<DigestAlgorithms>,
}

/// An immutable, indexed directory snapshot.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_domain: HashMap<String, TenantEntry>,
    /// Each tenant's realm (its first domain).
    realms: HashMap<TenantId, String>,
    /// Per tenant, its extensions by number (nested so a lookup by `&str` needs no
    /// allocated key).
    extensions: HashMap<TenantId, HashMap<String, Credentials>>,
    media: HashMap<TenantId, MediaEncryption>,
    /// Networks per tenant that has any (unparsable entries are skipped).
    acls: HashMap<TenantId, pbx_guard::TenantAcls>,
}

impl Index {
    pub(crate) fn build(dir: &Directory) -> Index {
        let mut by_domain = HashMap::new();
        let mut media = HashMap::new();
        let mut realms = HashMap::new();
        for t in &dir.tenants {
            media.insert(t.id, t.media_encryption);
            realms.insert(t.id, t.realm.clone());
            let entry = TenantEntry {
                id: t.id,
                realm: t.realm.clone(),
                active: t.status == TenantStatus::Active,
                digest: t.digest.clone(),
            };
            for d in &t.domains {
                by_domain.insert(d.to_ascii_lowercase(), entry.clone());
            }
        }
        let mut extensions: HashMap<TenantId, HashMap<String, Credentials>> = HashMap::new();
        for e in &dir.extensions {
            extensions.entry(e.tenant).or_default().insert(
                e.number.clone(),
                Credentials {
                    ha1_md5: e.ha1_md5.clone(),
                    ha1_sha256: e.ha1_sha256.clone(),
                    enabled: e.enabled,
                    digest: e.digest.clone(),
                },
            );
        }
        let mut nets: HashMap<TenantId, NetLists<'_>> = HashMap::new();
        for a in &dir.acls {
            let Ok(net) = a.cidr.parse::<IpNet>() else {
                tracing::warn!(tenant = %a.tenant, cidr = %a.cidr, "unusable network entry skipped");
                continue;
            };
            let entry = nets.entry(a.tenant).or_default();
            match &a.extension {
                None => entry.0.push(net),
                Some(ext) => entry.1.entry(ext.as_str()).or_default().push(net),
            }
        }
        let acls = nets
            .into_iter()
            .map(|(tenant, (own, per_ext))| {
                let mut acls = pbx_guard::TenantAcls::new(pbx_guard::Acl::from_nets(own));
                for (ext, list) in per_ext {
                    acls.set_extension(ext, pbx_guard::Acl::from_nets(list));
                }
                (tenant, acls)
            })
            .collect();
        Index {
            by_domain,
            realms,
            extensions,
            media,
            acls,
        }
    }

    /// Whether the extension may be used from `ip`: inside the tenant's networks
    /// and, if the extension has its own, inside those too; an empty list allows
    /// any address.
    pub(crate) fn network_allowed(&self, tenant: TenantId, extension: &str, ip: IpAddr) -> bool {
        self.acls
            .get(&tenant)
            .is_none_or(|acls| acls.allows(extension, ip))
    }

    /// The tenant's realm, the domain its phones register in.
    pub(crate) fn realm(&self, tenant: TenantId) -> Option<&str> {
        self.realms.get(&tenant).map(String::as_str)
    }

    /// The tenant owning `domain` (case-insensitive).
    pub(crate) fn tenant_for_domain(&self, domain: &str) -> Option<&TenantEntry> {
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_domain.get(&domain.to_ascii_lowercase())
        } else {
            self.by_domain.get(domain)
        }
    }

    /// The tenant's media encryption policy (the default for an unknown tenant).
    pub(crate) fn media_encryption(&self, tenant: TenantId) -> MediaEncryption {
        self.media.get(&tenant).copied().unwrap_or_default()
    }

    pub(crate) fn extension(&self, tenant: TenantId, number: &str) -> Option<&Credentials> {
        self.extensions.get(&tenant)?.get(number)
    }

    /// The digest algorithms offered to `user` of `tenant`: the extension's
    /// own choice, else its tenant's, else `default`. An unknown user (or
    /// tenant) gets what an extension without a choice of its own gets.
    pub(crate) fn digest_algorithms<'a>(
        &'a self,
        tenant: Option<&'a TenantEntry>,
        user: &str,
        default: &'a DigestAlgorithms,
    ) -> &'a DigestAlgorithms {
        let Some(t) = tenant else { return default };
        self.extension(t.id, user)
            .and_then(|e| e.digest.as_ref())
            .or(t.digest.as_ref())
            .unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Extension, Tenant};

    #[test]
    fn same_number_in_two_tenants_is_two_extensions() {
        let dir = Directory {
            tenants: vec![
                Tenant {
                    id: TenantId(1),
                    name: "a".into(),
                    status: TenantStatus::Active,
                    realm: "a.example".into(),
                    domains: vec!["a.example".into(), "alt.a.example".into()],
                    media_encryption: model::MediaEncryption::Required,
                    digest: Some(DigestAlgorithms::parse("SHA-256,MD5").unwrap()),
                },
                Tenant {
                    id: TenantId(2),
                    name: "b".into(),
                    status: TenantStatus::Suspended,
                    realm: "b.example".into(),
                    domains: vec!["b.example".into()],
                    media_encryption: model::MediaEncryption::default(),
                    digest: None,
                },
            ],
            extensions: vec![
                Extension {
                    tenant: TenantId(1),
                    number: "1000".into(),
                    ha1_md5: "m1".into(),
                    ha1_sha256: "s1".into(),
                    enabled: true,
                    digest: Some(DigestAlgorithms::parse("SHA-256").unwrap()),
                },
                Extension {
                    tenant: TenantId(2),
                    number: "1000".into(),
                    ha1_md5: "m2".into(),
                    ha1_sha256: "s2".into(),
                    enabled: true,
                    digest: None,
                },
            ],
            acls: vec![
                model::NetworkAcl {
                    tenant: TenantId(1),
                    extension: None,
                    cidr: "10.0.0.0/8".into(),
                },
                model::NetworkAcl {
                    tenant: TenantId(1),
                    extension: Some("1000".into()),
                    cidr: "10.9.0.0/16".into(),
                },
                model::NetworkAcl {
                    tenant: TenantId(1),
                    extension: None,
                    cidr: "garbage".into(),
                },
            ],
        };
        let idx = Index::build(&dir);
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // 1000 has its own list, which narrows the tenant's.
        assert!(idx.network_allowed(TenantId(1), "1000", ip("10.9.1.1")));
        assert!(!idx.network_allowed(TenantId(1), "1000", ip("10.1.1.1")));
        // Other extensions of tenant 1 follow the tenant list.
        assert!(idx.network_allowed(TenantId(1), "1001", ip("10.1.1.1")));
        assert!(!idx.network_allowed(TenantId(1), "1001", ip("192.0.2.7")));
        // Tenant 2 has no list: any address.
        assert!(idx.network_allowed(TenantId(2), "1000", ip("203.0.113.9")));
        assert_eq!(
            idx.tenant_for_domain("ALT.a.example").unwrap().id,
            TenantId(1)
        );
        assert!(!idx.tenant_for_domain("b.example").unwrap().active);
        assert!(idx.tenant_for_domain("c.example").is_none());
        assert_eq!(idx.extension(TenantId(1), "1000").unwrap().ha1_md5, "m1");
        assert_eq!(idx.extension(TenantId(2), "1000").unwrap().ha1_md5, "m2");
        assert!(idx.extension(TenantId(1), "1001").is_none());
        assert_eq!(idx.media_encryption(TenantId(1)), MediaEncryption::Required);
        assert_eq!(idx.media_encryption(TenantId(2)), MediaEncryption::Optional);
        assert_eq!(idx.media_encryption(TenantId(9)), MediaEncryption::Optional);
        // Digest algorithms: the extension's, else the tenant's, else the default.
        let md5 = DigestAlgorithms::md5();
        let offered = |domain: &str, user: &str| {
            idx.digest_algorithms(idx.tenant_for_domain(domain), user, &md5)
                .to_string()
        };
        assert_eq!(offered("a.example", "1000"), "SHA-256");
        assert_eq!(offered("a.example", "1001"), "SHA-256,MD5");
        assert_eq!(offered("b.example", "1000"), "MD5");
        assert_eq!(offered("c.example", "1000"), "MD5");
    }
}
