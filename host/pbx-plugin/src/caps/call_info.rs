//! `pbx:plugin/call-info` (0.2): the caller's registered device and the
//! headers of the caller's INVITE that the provider chose to expose. A
//! header the provider did not list is `none`, whether or not the INVITE had
//! it.

use crate::bindings::call_handler::pbx::plugin0_2_0::call_info::{Device, Host};
use crate::runtime::HostState;

/// Most headers a provider may expose to plugins.
pub const MAX_EXPOSED_HEADERS: usize = 16;
/// Longest header value a plugin is given, in bytes (longer values are cut
/// at a character boundary).
pub const MAX_HEADER_VALUE: usize = 1024;

/// What the host knows of one call beyond its numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// The caller's device, when the caller is a registered extension.
    pub caller_device: Option<CallerDevice>,
    /// The exposed headers present on the caller's INVITE: (lower-case
    /// name, value), at most [`MAX_EXPOSED_HEADERS`].
    pub headers: Vec<(String, String)>,
}

pub use model::CallerDevice;

impl CallInfo {
    /// The exposed header `name` (any case), if the INVITE had it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Keeps only the headers in `exposed` (provider's list, any case), cut to
    /// [`MAX_HEADER_VALUE`] bytes.
    pub fn exposing<'a>(
        exposed: &[String],
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(String, String)> {
        headers
            .into_iter()
            .filter(|(n, _)| {
                exposed
                    .iter()
                    .take(MAX_EXPOSED_HEADERS)
                    .any(|e| e.eq_ignore_ascii_case(n))
            })
            .take(MAX_EXPOSED_HEADERS)
            .map(|(n, v)| {
                let mut end = v.len().min(MAX_HEADER_VALUE);
                while !v.is_char_boundary(end) {
                    end -= 1;
                }
                (n.to_ascii_lowercase(), v[..end].to_string())
            })
            .collect()
    }
}

impl Host for HostState {
    fn caller_device(&mut self) -> Option<Device> {
        self.caps.call_info.caller_device.as_ref().map(|d| Device {
            contact: d.contact.clone(),
            user_agent: d.user_agent.clone(),
            transport: d.transport.as_str().to_string(),
        })
    }

    fn header(&mut self, name: String) -> Option<String> {
        self.caps.call_info.header(&name).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exposed_headers_are_kept_and_long_values_cut() {
        let long = "é".repeat(MAX_HEADER_VALUE);
        let kept = CallInfo::exposing(
            &["X-Account".into(), "user-agent".into()],
            [
                ("X-ACCOUNT", "42"),
                ("Authorization", "Digest secret"),
                ("User-Agent", long.as_str()),
            ],
        );
        let info = CallInfo {
            caller_device: None,
            headers: kept,
        };
        assert_eq!(info.header("x-account"), Some("42"));
        assert_eq!(info.header("Authorization"), None);
        let ua = info.header("User-Agent").unwrap();
        assert!(ua.len() <= MAX_HEADER_VALUE && ua.chars().all(|c| c == 'é'));
    }
}
