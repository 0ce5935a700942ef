//! Call limits: what a tenant may do at once, and the defaults.
//!
//! # Which limit applies where
//! A new call that a dial plan sends somewhere passes two independent layers,
//! in this order; either may refuse it (403):
//!
//! 1. **The host's built-in limits** (`pbx-guard`'s `Usage`, applied by the
//!    server's fraud controls to every call that will be placed). Their
//!    defaults are the constants below; a provider overrides them per tenant
//!    with [`TenantLimits`] (`PUT /api/v1/tenants/{tenant}/limits`, `pbx
//!    tenant limits NAME`), stored by `pbx-store`; a field left `None` keeps
//!    the default. The guard's `Limits::default` and `Limits::overridden_by`
//!    are the one place these are applied.
//!
//!    | limit | default | counted over |
//!    | --- | --- | --- |
//!    | concurrent calls of the tenant | [`DEFAULT_MAX_CONCURRENT_TENANT`] (100) | calls in progress |
//!    | concurrent calls of one extension | [`DEFAULT_MAX_CONCURRENT_EXTENSION`] (4) | calls in progress |
//!    | new calls per second of the tenant | [`DEFAULT_MAX_CALLS_PER_SECOND`] (10) | the last second |
//!    | spend per UTC day | [`DEFAULT_DAILY_CAP_CENTS`] (10,000 cents) | finished calls |
//!
//! 2. **The shipped `default-policy` plugin** (`plugins/default-policy`), run
//!    for every tenant after the dial plan, with its own, tighter concurrent
//!    limit [`SHIPPED_POLICY_MAX_CONCURRENT`] (10), which the provider changes
//!    with `pbx policy config set default-policy max-concurrent-calls N`
//!    (provider-wide or `--tenant T`). The plugin cannot link this crate, so it
//!    carries the same number itself; a test in `pbx-plugin` checks that they
//!    agree.
//!
//! With the shipped defaults a tenant therefore has at most 10 calls at once;
//! raising the policy's value lets a tenant up to its built-in cap (100 unless
//! overridden), which bounds what any policy configuration allows.
//!
//! The same concept as `pbx-store`'s `limits.rs` at another layer: this one defines
//! the limits and their defaults, that one stores a tenant's own.

use serde::{Deserialize, Serialize};

/// Calls of one tenant in progress at once (the host's built-in cap).
pub const DEFAULT_MAX_CONCURRENT_TENANT: u32 = 100;
/// Calls of one extension in progress at once.
pub const DEFAULT_MAX_CONCURRENT_EXTENSION: u32 = 4;
/// New calls per second of one tenant.
pub const DEFAULT_MAX_CALLS_PER_SECOND: u32 = 10;
/// Spend per UTC day of one tenant, cents.
pub const DEFAULT_DAILY_CAP_CENTS: u64 = 10_000;
/// The shipped `default-policy` plugin's `max-concurrent-calls` when the
/// provider has not configured it.
pub const SHIPPED_POLICY_MAX_CONCURRENT: u32 = 10;

/// A tenant's own values of the host's built-in limits; `None` leaves the
/// default in force (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    pub max_concurrent: Option<u32>,
    pub max_concurrent_extension: Option<u32>,
    pub max_calls_per_second: Option<u32>,
    pub daily_cap_cents: Option<u64>,
}
