//! The tenant directory as the SIP path reads it: domain → tenant, and
//! (tenant, extension) → credentials. Built from a [`store::Directory`] snapshot and
//! swapped whole when provisioning changes.

use std::collections::HashMap;

use store::{Directory, MediaEncryption, TenantId, TenantStatus};

#[derive(Debug, Clone)]
pub(crate) struct TenantEntry {
    pub(crate) id: TenantId,
    pub(crate) realm: String,
    pub(crate) active: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) ha1_md5: String,
    pub(crate) ha1_sha256: String,
    pub(crate) enabled: bool,
}

/// An immutable, indexed directory snapshot.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_domain: HashMap<String, TenantEntry>,
    /// Per tenant, its extensions by number (nested so a lookup by `&str` needs no
    /// allocated key).
    extensions: HashMap<TenantId, HashMap<String, Credentials>>,
    media: HashMap<TenantId, MediaEncryption>,
}

impl Index {
    pub(crate) fn build(dir: &Directory) -> Index {
        let mut by_domain = HashMap::new();
        let mut media = HashMap::new();
        for t in &dir.tenants {
            media.insert(t.id, t.media_encryption);
            let entry = TenantEntry {
                id: t.id,
                realm: t.realm.clone(),
                active: t.status == TenantStatus::Active,
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
                },
            );
        }
        Index {
            by_domain,
            extensions,
            media,
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Extension, Tenant};

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
                    media_encryption: store::MediaEncryption::Required,
                },
                Tenant {
                    id: TenantId(2),
                    name: "b".into(),
                    status: TenantStatus::Suspended,
                    realm: "b.example".into(),
                    domains: vec!["b.example".into()],
                    media_encryption: store::MediaEncryption::default(),
                },
            ],
            extensions: vec![
                Extension {
                    tenant: TenantId(1),
                    number: "1000".into(),
                    ha1_md5: "m1".into(),
                    ha1_sha256: "s1".into(),
                    enabled: true,
                },
                Extension {
                    tenant: TenantId(2),
                    number: "1000".into(),
                    ha1_md5: "m2".into(),
                    ha1_sha256: "s2".into(),
                    enabled: true,
                },
            ],
        };
        let idx = Index::build(&dir);
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
    }
}
