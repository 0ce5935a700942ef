//! `pbx:plugin/features` (0.2): the tenant's extensions' call forwarding and
//! do-not-disturb, which the host keeps (`pbx-model`'s `Forwarding`).
//!
//! Only the tenant's own extensions (its directory) can be named; settings are
//! checked with `Forwarding::validate`, the check the API and the CLI use,
//! before the host's [`Features`] sees them. Reads come from memory; a write
//! waits for its commit at most until the invocation's wall-clock cap.

use std::collections::HashMap;
use std::time::Instant;

use model::Forwarding;
use parking_lot::Mutex;

use crate::bindings::call_handler::pbx::plugin0_2_0::features as wit;
use crate::runtime::HostState;

/// Why the host did not save settings (they were valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeaturesError {
    /// The tenant's share of writes is full, or the commit did not come in
    /// time; nothing changed (or the change is not acknowledged).
    #[error("forwarding settings unavailable")]
    Unavailable,
}

/// One tenant's extensions' forwarding, as the host keeps it. The host
/// implements this over its store; [`MemoryFeatures`] is an in-memory version.
pub trait Features: Send + Sync {
    /// The settings of the tenant's extension `extension` (the defaults when
    /// it set nothing).
    fn forwarding(&self, extension: &str) -> Forwarding;
    /// Saves `settings` (already checked) for the tenant's extension
    /// `extension`. `until` is when the invocation's wall-clock cap runs out:
    /// a write not durable by then fails with [`FeaturesError::Unavailable`].
    fn set_forwarding(
        &self,
        extension: &str,
        settings: &Forwarding,
        until: Instant,
    ) -> Result<(), FeaturesError>;
}

/// In-memory settings (tests, benches; a tenant with no store behind it).
#[derive(Debug, Default)]
pub struct MemoryFeatures {
    settings: Mutex<HashMap<String, Forwarding>>,
}

impl Features for MemoryFeatures {
    fn forwarding(&self, extension: &str) -> Forwarding {
        self.settings
            .lock()
            .get(extension)
            .cloned()
            .unwrap_or_default()
    }

    fn set_forwarding(
        &self,
        extension: &str,
        settings: &Forwarding,
        _until: Instant,
    ) -> Result<(), FeaturesError> {
        let mut map = self.settings.lock();
        if settings.is_default() {
            map.remove(extension);
        } else {
            map.insert(extension.to_string(), settings.clone());
        }
        Ok(())
    }
}

impl From<Forwarding> for wit::ForwardingSettings {
    fn from(f: Forwarding) -> wit::ForwardingSettings {
        wit::ForwardingSettings {
            always: f.always,
            busy: f.busy,
            no_answer: f.no_answer,
            no_answer_secs: f.no_answer_secs,
            dnd: f.dnd,
        }
    }
}

impl From<wit::ForwardingSettings> for Forwarding {
    fn from(f: wit::ForwardingSettings) -> Forwarding {
        Forwarding {
            always: f.always,
            busy: f.busy,
            no_answer: f.no_answer,
            no_answer_secs: f.no_answer_secs,
            dnd: f.dnd,
        }
    }
}

impl wit::Host for HostState {
    fn forwarding(&mut self, extension: String) -> Option<wit::ForwardingSettings> {
        self.caps.directory.extension(&extension)?;
        Some(self.caps.features.forwarding(&extension).into())
    }

    fn set_forwarding(
        &mut self,
        extension: String,
        settings: wit::ForwardingSettings,
    ) -> Result<(), wit::ForwardingError> {
        if self.caps.directory.extension(&extension).is_none() {
            return Err(wit::ForwardingError::UnknownExtension);
        }
        let settings = Forwarding::from(settings);
        settings
            .validate(&extension)
            .map_err(|e| wit::ForwardingError::Invalid(e.to_string()))?;
        let until = self.wall_deadline();
        self.caps
            .features
            .set_forwarding(&extension, &settings, until)
            .map_err(|FeaturesError::Unavailable| wit::ForwardingError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_features_keep_only_what_differs_from_the_defaults() {
        let f = MemoryFeatures::default();
        assert_eq!(f.forwarding("100"), Forwarding::default());
        let dnd = Forwarding {
            dnd: true,
            ..Forwarding::default()
        };
        f.set_forwarding("100", &dnd, Instant::now()).unwrap();
        assert_eq!(f.forwarding("100"), dnd);
        assert_eq!(f.forwarding("101"), Forwarding::default());
        f.set_forwarding("100", &Forwarding::default(), Instant::now())
            .unwrap();
        assert!(f.settings.lock().is_empty());
    }

    #[test]
    fn the_wit_record_is_the_models() {
        let f = Forwarding {
            always: Some("1002".into()),
            busy: None,
            no_answer: Some("+15550100".into()),
            no_answer_secs: 7,
            dnd: true,
        };
        assert_eq!(
            Forwarding::from(wit::ForwardingSettings::from(f.clone())),
            f
        );
    }
}
