//! `pbx:plugin/directory`: a read-only view of the tenant's directory.
//!
//! The same concept as `pbx-core`'s `directory.rs` at another layer: that one is
//! the SIP path's directory, this one the read-only view a plugin gets.

use crate::bindings::directory::{ExtensionInfo, Host};
use crate::runtime::HostState;

impl Host for HostState {
    fn extension(&mut self, number: String) -> Option<ExtensionInfo> {
        self.caps.directory.extension(&number).cloned()
    }

    fn extensions(&mut self) -> Vec<ExtensionInfo> {
        self.caps.directory.extensions().cloned().collect()
    }

    fn group_members(&mut self, name: String) -> Option<Vec<String>> {
        self.caps
            .directory
            .group_members(&name)
            .map(<[String]>::to_vec)
    }

    fn groups(&mut self) -> Vec<String> {
        self.caps.directory.groups().map(str::to_owned).collect()
    }

    fn trunks(&mut self) -> Vec<String> {
        self.caps.directory.trunks().to_vec()
    }
}
