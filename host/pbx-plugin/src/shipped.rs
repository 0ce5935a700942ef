//! Plugins built from `plugins/` by this crate's build script and embedded as
//! bytes: the shipped defaults, and (for tests) hostile examples.

include!(concat!(env!("OUT_DIR"), "/shipped_defaults.rs"));

/// Hostile and instrumented plugins that tests and benchmarks load.
#[cfg(any(test, feature = "test-plugins"))]
pub mod examples {
    include!(concat!(env!("OUT_DIR"), "/shipped_examples.rs"));
}
