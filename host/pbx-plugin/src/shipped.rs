//! Plugins built from `plugins/` by this crate's build script and embedded as
//! bytes: the shipped defaults, and (for tests) hostile examples.
//!
//! The shipped set is one dial plan and two provider policies:
//! - [`DEFAULT_DIALPLAN`] (world `dialplan`) for tenants without their own;
//! - [`RESTRICTIONS`] and [`DEFAULT_POLICY`] (world `policy`), listed in
//!   [`POLICIES`], run for every tenant's calls; any deny wins.

include!(concat!(env!("OUT_DIR"), "/shipped_defaults.rs"));

/// The shipped provider policies with their names: destination-class
/// restrictions first, then the fraud limits.
pub const POLICIES: &[(&str, &[u8])] = &[
    ("restrictions", RESTRICTIONS),
    ("default-policy", DEFAULT_POLICY),
];

/// Hostile and instrumented plugins that tests and benchmarks load.
#[cfg(any(test, feature = "test-plugins"))]
pub mod examples {
    include!(concat!(env!("OUT_DIR"), "/shipped_examples.rs"));
}
