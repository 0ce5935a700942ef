//! Capabilities: what the host binds for one tenant before a plugin runs.
//!
//! Each capability is one module with its host impl of the matching WIT
//! interface. Nothing here carries a tenant id into the guest: the
//! [`TenantCaps::tenant`] id only identifies the tenant to the host (for
//! quarantine bookkeeping).

use std::sync::Arc;

use model::TenantId;

pub mod alerts;
pub mod call_info;
pub mod clock;
pub mod directory;
pub mod features;
pub mod log;
pub mod policy_config;
pub mod storage;
pub mod usage;

pub use alerts::{Alert, AlertSink, MemoryAlerts};
pub use call_info::{CallInfo, CallerDevice};
pub use clock::{ClockError, TenantClock};
pub use features::{Features, FeaturesError, MemoryFeatures};
pub use log::{LogLine, PluginLog};
pub use policy_config::{ConfigMap, EmptyConfig, LayeredConfig, PolicyConfig};
pub use storage::{MemoryStorage, Storage, StorageError};
pub use usage::{FixedUsage, Usage};

use crate::types::Directory;

/// Everything the host binds for one tenant. Cheap to clone (all shared).
#[derive(Clone)]
pub struct TenantCaps {
    /// The tenant, on the host side (never visible to plugins).
    pub tenant: TenantId,
    /// The tenant's directory.
    pub directory: Arc<Directory>,
    /// The tenant's key-value store.
    pub storage: Arc<dyn Storage>,
    /// The tenant's live counters.
    pub usage: Arc<dyn Usage>,
    /// Where the tenant's alerts go.
    pub alerts: Arc<dyn AlertSink>,
    /// The tenant's bounded plugin log.
    pub log: Arc<PluginLog>,
    /// The configuration the running policy reads (`pbx:plugin/config`):
    /// bound per policy by the host, [`EmptyConfig`] for dial plans.
    pub config: Arc<dyn PolicyConfig>,
    /// The tenant's clock (`pbx:plugin/clock`, call handlers only).
    pub clock: Arc<TenantClock>,
    /// What the host knows of the call (`pbx:plugin/call-info`, call
    /// handlers only).
    pub call_info: Arc<CallInfo>,
    /// The tenant's extensions' forwarding and do-not-disturb
    /// (`pbx:plugin/features`, call handlers only).
    pub features: Arc<dyn Features>,
}

impl TenantCaps {
    /// The same capabilities with `config` bound for one policy.
    pub fn with_config(&self, config: Arc<dyn PolicyConfig>) -> Self {
        Self {
            config,
            ..self.clone()
        }
    }
}

impl std::fmt::Debug for TenantCaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCaps")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// `pbx:plugin/types` has no functions; its (empty) host trait still needs an impl.
impl crate::bindings::types::Host for crate::runtime::HostState {}
