//! `pbx:plugin/usage`: the tenant's live call counters.
//!
//! The same concept as `pbx-guard`'s `usage.rs` at another layer: that one counts,
//! this one lets a plugin read the counts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::bindings::usage::Host;
use crate::runtime::HostState;
use crate::types::DestinationClass;

/// One tenant's counters, kept by the host's call path.
pub trait Usage: Send + Sync {
    /// Calls in progress now.
    fn concurrent_calls(&self) -> u32;
    /// Calls in progress now made by `extension`.
    fn concurrent_calls_by_extension(&self, extension: &str) -> u32;
    /// Calls started within `window`, optionally by one extension and/or to
    /// one destination class.
    fn calls_in_window(
        &self,
        window: Duration,
        extension: Option<&str>,
        class: Option<DestinationClass>,
    ) -> u32;
    /// Whether the provider approved `class` for this tenant.
    fn class_approved(&self, class: DestinationClass) -> bool;
}

/// Fixed counters, for tests and tools: every window sees the same numbers.
#[derive(Debug, Clone, Default)]
pub struct FixedUsage {
    /// Calls in progress.
    pub concurrent: u32,
    /// Calls in progress per extension.
    pub concurrent_by_extension: HashMap<String, u32>,
    /// Calls in any window.
    pub in_window: u32,
    /// Approved destination classes.
    pub approved: HashSet<DestinationClass>,
}

impl Usage for FixedUsage {
    fn concurrent_calls(&self) -> u32 {
        self.concurrent
    }

    fn concurrent_calls_by_extension(&self, extension: &str) -> u32 {
        self.concurrent_by_extension
            .get(extension)
            .copied()
            .unwrap_or(0)
    }

    fn calls_in_window(
        &self,
        _window: Duration,
        _extension: Option<&str>,
        _class: Option<DestinationClass>,
    ) -> u32 {
        self.in_window
    }

    fn class_approved(&self, class: DestinationClass) -> bool {
        self.approved.contains(&class)
    }
}

impl Host for HostState {
    fn concurrent_calls(&mut self) -> u32 {
        self.caps.usage.concurrent_calls()
    }

    fn concurrent_calls_by_extension(&mut self, extension: String) -> u32 {
        self.caps.usage.concurrent_calls_by_extension(&extension)
    }

    fn calls_in_window(
        &mut self,
        window_secs: u32,
        extension: Option<String>,
        class: Option<DestinationClass>,
    ) -> u32 {
        self.caps.usage.calls_in_window(
            Duration::from_secs(u64::from(window_secs)),
            extension.as_deref(),
            class,
        )
    }

    fn class_approved(&mut self, class: DestinationClass) -> bool {
        self.caps.usage.class_approved(class)
    }
}
