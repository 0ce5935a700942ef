//! How this process checks uploaded plugins (CLI and API alike): one
//! [`UploadCheck`] with the configuration the program set.

use std::sync::OnceLock;

use pbx_plugin::{RuntimeConfig, UploadCheck, UploadError, World};

/// Set once by the program ([`crate::run`]).
static CONFIGURED: OnceLock<UploadCheck> = OnceLock::new();
/// Used until then: in-process compiles after the compile limits.
static DEFAULT: OnceLock<UploadCheck> = OnceLock::new();

/// Compile uploads (CLI and API) with `config` (the `pbx` program sets a
/// compile sandbox and cache; without this call, uploads compile in-process
/// after the compile limits, as in-process tests do). The first call wins.
pub fn compile_uploads_with(config: RuntimeConfig) {
    let _ = CONFIGURED.set(UploadCheck::new(config));
}

/// Checks a component the way the server will load it (for `world`); `what`
/// names it in the error. Compiling takes a while: call it off the async path.
pub(crate) fn check(world: World, wasm: &[u8], what: &str) -> Result<(), UploadError> {
    CONFIGURED
        .get()
        .unwrap_or_else(|| DEFAULT.get_or_init(|| UploadCheck::new(RuntimeConfig::default())))
        .check(world, wasm, what)
}
