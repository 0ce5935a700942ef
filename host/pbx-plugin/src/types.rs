//! The records exchanged with plugins, and the check that a decision only names
//! the calling tenant's own things.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::InvalidDecision;

pub use crate::bindings::directory::ExtensionInfo;
pub use crate::bindings::types::{
    Action, Call, Cdr, Decision, DestinationClass, Reject, Ring, RingStrategy, RingTarget,
    Severity, TrunkRoute, Verdict,
};

/// The severity a plugin names (the WIT enum) is the model's [`model::Severity`]
/// once it reaches the host.
impl From<Severity> for model::Severity {
    fn from(severity: Severity) -> model::Severity {
        match severity {
            Severity::Info => model::Severity::Info,
            Severity::Warning => model::Severity::Warning,
            Severity::Critical => model::Severity::Critical,
        }
    }
}

/// Most targets one ring decision may name.
pub const MAX_RING_TARGETS: usize = 32;
/// Longest ring timeout a decision may ask for, in seconds.
pub const MAX_RING_SECS: u32 = 600;
/// Longest reject reason or dialled trunk number, in bytes.
pub const MAX_TEXT_LEN: usize = 128;

/// One tenant's directory as the host shows it to that tenant's plugins: its
/// extensions (with registration state), ring groups and trunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    extensions: BTreeMap<String, ExtensionInfo>,
    groups: BTreeMap<String, Vec<String>>,
    trunks: Vec<String>,
    trunk_set: BTreeSet<String>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) an extension.
    pub fn with_extension(mut self, number: &str, display_name: &str, registered: bool) -> Self {
        self.extensions.insert(
            number.to_owned(),
            ExtensionInfo {
                number: number.to_owned(),
                display_name: display_name.to_owned(),
                registered,
            },
        );
        self
    }

    /// Add (or replace) a ring group and its member extensions.
    pub fn with_group(mut self, name: &str, members: &[&str]) -> Self {
        self.groups.insert(
            name.to_owned(),
            members.iter().map(|m| (*m).to_owned()).collect(),
        );
        self
    }

    /// Add a trunk; trunks keep the order they were added in (preference order).
    pub fn with_trunk(mut self, name: &str) -> Self {
        if self.trunk_set.insert(name.to_owned()) {
            self.trunks.push(name.to_owned());
        }
        self
    }

    /// One extension by number.
    pub fn extension(&self, number: &str) -> Option<&ExtensionInfo> {
        self.extensions.get(number)
    }

    /// All extensions, ordered by number.
    pub fn extensions(&self) -> impl Iterator<Item = &ExtensionInfo> {
        self.extensions.values()
    }

    /// A ring group's members.
    pub fn group_members(&self, name: &str) -> Option<&[String]> {
        self.groups.get(name).map(Vec::as_slice)
    }

    /// Ring group names, ordered.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// Trunk names in preference order.
    pub fn trunks(&self) -> &[String] {
        &self.trunks
    }

    /// Whether the tenant has a trunk by that name.
    pub fn has_trunk(&self, name: &str) -> bool {
        self.trunk_set.contains(name)
    }
}

/// Text that will end up in a SIP message: bounded, printable, no line breaks.
pub(crate) fn safe_text(text: &str) -> bool {
    text.len() <= MAX_TEXT_LEN && !text.chars().any(char::is_control)
}

/// A dialable number: digits, `+` (leading only), `*` and `#`.
pub(crate) fn dialable(number: &str) -> bool {
    !number.is_empty()
        && number.len() <= MAX_TEXT_LEN
        && number
            .char_indices()
            .all(|(i, c)| c.is_ascii_digit() || c == '*' || c == '#' || (c == '+' && i == 0))
}

impl Decision {
    /// Check that this decision names only things in `directory` (the calling
    /// tenant's) and is well formed: at least one and at most
    /// [`MAX_RING_TARGETS`] ring targets with timeouts of 1..=[`MAX_RING_SECS`]
    /// seconds, a dialable trunk number, a 4xx–6xx reject status and a short
    /// reason without control characters.
    pub fn validate(&self, directory: &Directory) -> Result<(), InvalidDecision> {
        match self {
            Decision::Ring(ring) => {
                if ring.targets.is_empty() {
                    return Err(InvalidDecision::NoTargets);
                }
                if ring.targets.len() > MAX_RING_TARGETS {
                    return Err(InvalidDecision::TooManyTargets(ring.targets.len()));
                }
                for target in &ring.targets {
                    if directory.extension(&target.extension).is_none() {
                        return Err(InvalidDecision::UnknownExtension(clip(&target.extension)));
                    }
                    if !(1..=MAX_RING_SECS).contains(&target.timeout_secs) {
                        return Err(InvalidDecision::BadTimeout(target.timeout_secs));
                    }
                }
                Ok(())
            }
            Decision::RingGroup(name) => match directory.group_members(name) {
                Some(_) => Ok(()),
                None => Err(InvalidDecision::UnknownGroup(clip(name))),
            },
            Decision::Trunk(route) => {
                if !directory.has_trunk(&route.trunk) {
                    return Err(InvalidDecision::UnknownTrunk(clip(&route.trunk)));
                }
                if !dialable(&route.number) {
                    return Err(InvalidDecision::BadNumber(clip(&route.number)));
                }
                Ok(())
            }
            Decision::Reject(reject) => {
                if !(400..=699).contains(&reject.status) {
                    return Err(InvalidDecision::BadStatus(reject.status));
                }
                if !safe_text(&reject.reason) {
                    return Err(InvalidDecision::BadReason);
                }
                Ok(())
            }
        }
    }
}

/// A guest-supplied name, shortened for error messages and logs.
pub(crate) fn clip(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory::new()
            .with_extension("100", "Alice", true)
            .with_extension("101", "Bob", false)
            .with_group("sales", &["100", "101"])
            .with_trunk("carrier-a")
    }

    fn ring(exts: &[&str]) -> Decision {
        Decision::Ring(Ring {
            targets: exts
                .iter()
                .map(|e| RingTarget {
                    extension: (*e).to_owned(),
                    timeout_secs: 20,
                })
                .collect(),
            strategy: RingStrategy::Sequential,
        })
    }

    #[test]
    fn own_things_are_valid() {
        let d = dir();
        assert_eq!(ring(&["100", "101"]).validate(&d), Ok(()));
        assert_eq!(Decision::RingGroup("sales".into()).validate(&d), Ok(()));
        let out = Decision::Trunk(TrunkRoute {
            trunk: "carrier-a".into(),
            number: "+4420123".into(),
        });
        assert_eq!(out.validate(&d), Ok(()));
        let reject = Decision::Reject(Reject {
            status: 486,
            reason: "Busy Here".into(),
        });
        assert_eq!(reject.validate(&d), Ok(()));
    }

    #[test]
    fn foreign_things_are_invalid() {
        let d = dir();
        assert_eq!(
            ring(&["100", "999"]).validate(&d),
            Err(InvalidDecision::UnknownExtension("999".into()))
        );
        assert_eq!(
            Decision::RingGroup("support".into()).validate(&d),
            Err(InvalidDecision::UnknownGroup("support".into()))
        );
        let out = Decision::Trunk(TrunkRoute {
            trunk: "carrier-b".into(),
            number: "123".into(),
        });
        assert_eq!(
            out.validate(&d),
            Err(InvalidDecision::UnknownTrunk("carrier-b".into()))
        );
    }

    #[test]
    fn malformed_decisions_are_invalid() {
        let d = dir();
        assert_eq!(ring(&[]).validate(&d), Err(InvalidDecision::NoTargets));
        let many: Vec<&str> = std::iter::repeat_n("100", MAX_RING_TARGETS + 1).collect();
        assert!(matches!(
            ring(&many).validate(&d),
            Err(InvalidDecision::TooManyTargets(_))
        ));
        let zero = Decision::Ring(Ring {
            targets: vec![RingTarget {
                extension: "100".into(),
                timeout_secs: 0,
            }],
            strategy: RingStrategy::Simultaneous,
        });
        assert_eq!(zero.validate(&d), Err(InvalidDecision::BadTimeout(0)));
        let injected = Decision::Reject(Reject {
            status: 403,
            reason: "x\r\nVia: evil".into(),
        });
        assert_eq!(injected.validate(&d), Err(InvalidDecision::BadReason));
        let ok_status = Decision::Reject(Reject {
            status: 200,
            reason: "OK".into(),
        });
        assert_eq!(ok_status.validate(&d), Err(InvalidDecision::BadStatus(200)));
        let bad_number = Decision::Trunk(TrunkRoute {
            trunk: "carrier-a".into(),
            number: "12;user=phone".into(),
        });
        assert!(matches!(
            bad_number.validate(&d),
            Err(InvalidDecision::BadNumber(_))
        ));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert!(clipped.chars().count() <= 32);
    }
}
