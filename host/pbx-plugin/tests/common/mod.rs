//! Shared by the tests of the JavaScript examples (`plugins/examples/js-*`,
//! built by their `build.sh` with componentize-js, outside the cargo build):
//! the built component, a runtime and one tenant's capabilities.
//!
//! Without the built file a test prints a notice and passes, unless
//! `PBX_REQUIRE_JS_PLUGIN=1` is set (as in CI), when a missing file fails it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pbx_plugin::{
    Directory, FixedUsage, MemoryAlerts, MemoryStorage, PluginLog, PluginRuntime, RuntimeConfig,
    TenantCaps,
};

/// `plugins/examples/<example>/dist/<file>`, or `None` (with a notice) when it
/// is absent and not required.
pub(crate) fn js_component(example: &str, file: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/examples")
        .join(example)
        .join("dist")
        .join(file);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            let required = std::env::var("PBX_REQUIRE_JS_PLUGIN").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "PBX_REQUIRE_JS_PLUGIN=1 but {} cannot be read ({e}); run \
                 plugins/examples/{example}/build.sh first",
                path.display()
            );
            eprintln!(
                "skipping the {example} test: {} not found ({e}); \
                 build it with plugins/examples/{example}/build.sh",
                path.display()
            );
            None
        }
    }
}

/// The default runtime, with a deadline generous for a loaded test machine:
/// the first instance maps a multi-megabyte engine snapshot.
pub(crate) fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig {
        deadline: Duration::from_secs(2),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

/// Tenant 1's capabilities: `directory`, empty storage, UTC, `log`.
pub(crate) fn caps(directory: Directory, log: &Arc<PluginLog>) -> TenantCaps {
    TenantCaps {
        tenant: model::TenantId(1),
        directory: Arc::new(directory),
        storage: Arc::new(MemoryStorage::new(4096)),
        usage: Arc::new(FixedUsage::default()),
        alerts: Arc::new(MemoryAlerts::default()),
        log: Arc::clone(log),
        config: Arc::new(pbx_plugin::EmptyConfig),
        clock: Arc::new(pbx_plugin::TenantClock::utc()),
        call_info: Arc::new(pbx_plugin::CallInfo::default()),
        features: Arc::new(pbx_plugin::MemoryFeatures::default()),
    }
}
