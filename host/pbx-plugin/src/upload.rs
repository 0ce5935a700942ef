//! Checking an uploaded component the way a server will load it, before it is
//! stored: one [`UploadCheck`] per process compiles every upload on one
//! runtime (started on the first upload), rather than starting a runtime, its
//! instance pool and its epoch ticker for each.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::{PluginRuntime, RuntimeConfig, ValidationError, World};

/// Why an upload was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The runtime that checks uploads could not be started.
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(#[from] crate::Error),
    /// The component is refused as a plugin of that world.
    #[error("{what} refused as a {world} plugin: {error}")]
    Refused {
        what: String,
        world: World,
        error: ValidationError,
    },
}

/// Checks uploads on a shared runtime built from one configuration.
pub struct UploadCheck {
    config: RuntimeConfig,
    runtime: Mutex<Option<Arc<PluginRuntime>>>,
}

impl UploadCheck {
    /// Uploads will compile with `config` (a compile sandbox and cache, or
    /// in-process after the compile limits).
    pub fn new(config: RuntimeConfig) -> UploadCheck {
        UploadCheck {
            config,
            runtime: Mutex::new(None),
        }
    }

    /// Checks that `wasm` loads as a plugin of `world`; `what` names it in the
    /// error. Compiling takes a while: call it off the async path.
    pub fn check(&self, world: World, wasm: &[u8], what: &str) -> Result<(), UploadError> {
        self.runtime()?
            .load(world, wasm)
            .map(drop)
            .map_err(|error| UploadError::Refused {
                what: what.to_string(),
                world,
                error,
            })
    }

    /// The shared runtime; a failed start is retried on the next upload.
    fn runtime(&self) -> Result<Arc<PluginRuntime>, UploadError> {
        let mut slot = self.runtime.lock();
        if let Some(runtime) = &*slot {
            return Ok(runtime.clone());
        }
        let runtime = Arc::new(PluginRuntime::new(self.config.clone())?);
        *slot = Some(runtime.clone());
        Ok(runtime)
    }
}
