//! `pbx:plugin/config`: a policy's read-only configuration, bound by the host
//! to (policy, tenant). Only the `policy` world imports it.
//!
//! The owner decides what a policy reads: for a provider policy the provider's
//! values ([`LayeredConfig`]: a tenant's override wins over the provider-wide
//! value), for a tenant's own policy that tenant's values. Nothing here writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bindings::config::Host;
use crate::runtime::HostState;

/// Keys and values of one scope, sorted by key.
pub type ConfigMap = BTreeMap<String, String>;

/// What one policy reads for one tenant.
pub trait PolicyConfig: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &str) -> Option<String>;
    /// Every key and value in effect, sorted by key.
    fn list(&self) -> Vec<(String, String)>;
}

/// No configuration: every key is unset (dial plans, and policies nobody
/// configured).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyConfig;

impl PolicyConfig for EmptyConfig {
    fn get(&self, _key: &str) -> Option<String> {
        None
    }

    fn list(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A base scope with an override scope on top: a key set in `over` wins.
/// Both maps are shared, so binding one per call costs two reference counts.
#[derive(Debug, Clone, Default)]
pub struct LayeredConfig {
    base: Option<Arc<ConfigMap>>,
    over: Option<Arc<ConfigMap>>,
}

impl LayeredConfig {
    /// `over` wins over `base`; either may be missing.
    pub fn new(base: Option<Arc<ConfigMap>>, over: Option<Arc<ConfigMap>>) -> Self {
        Self { base, over }
    }
}

impl PolicyConfig for LayeredConfig {
    fn get(&self, key: &str) -> Option<String> {
        self.over
            .as_ref()
            .and_then(|m| m.get(key))
            .or_else(|| self.base.as_ref().and_then(|m| m.get(key)))
            .cloned()
    }

    fn list(&self) -> Vec<(String, String)> {
        let mut merged: BTreeMap<&String, &String> = BTreeMap::new();
        for map in [&self.base, &self.over].into_iter().flatten() {
            merged.extend(map.iter());
        }
        merged
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.caps.config.get(&key)
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.caps.config.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Arc<ConfigMap> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn the_override_wins_and_lists_merge_sorted() {
        let c = LayeredConfig::new(
            Some(map(&[("a", "1"), ("b", "2")])),
            Some(map(&[("b", "20"), ("c", "30")])),
        );
        assert_eq!(c.get("a").as_deref(), Some("1"));
        assert_eq!(c.get("b").as_deref(), Some("20"));
        assert_eq!(c.get("c").as_deref(), Some("30"));
        assert_eq!(c.get("d"), None);
        let listed: Vec<(String, String)> = c.list();
        assert_eq!(
            listed,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "20".into()),
                ("c".into(), "30".into())
            ]
        );
    }

    #[test]
    fn missing_scopes_read_as_unset() {
        assert_eq!(LayeredConfig::default().get("a"), None);
        assert!(LayeredConfig::default().list().is_empty());
        let only_base = LayeredConfig::new(Some(map(&[("a", "1")])), None);
        assert_eq!(only_base.get("a").as_deref(), Some("1"));
        assert_eq!(EmptyConfig.get("a"), None);
    }
}
