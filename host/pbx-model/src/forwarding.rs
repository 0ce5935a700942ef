//! An extension's call forwarding and do-not-disturb, kept by the host and read
//! (and set, for feature codes) by call handlers through
//! `pbx:plugin/features`. Checked once here, so the API, the CLI, the store and
//! the plugin capability refuse exactly the same settings.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long an extension rings before its no-answer forward, unless set.
pub const DEFAULT_NO_ANSWER_SECS: u32 = 20;
/// Shortest no-answer ring time, in seconds.
pub const MIN_NO_ANSWER_SECS: u32 = 1;
/// Longest no-answer ring time, in seconds.
pub const MAX_NO_ANSWER_SECS: u32 = 300;
/// Longest forward target, in bytes.
pub const MAX_TARGET_LEN: usize = 32;

/// Where an extension's calls go instead of (or after) ringing it.
///
/// A target is one of the tenant's extensions, one of its ring groups, or a
/// number: 1 to [`MAX_TARGET_LEN`] ASCII letters and digits, optionally after
/// one leading `+` (so never a SIP URI). Which of the three it is, is decided
/// when a call follows it, against the tenant's directory at that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"always": null, "busy": "1001", "no_answer": "+15550100", "no_answer_secs": 20, "dnd": false})))]
#[serde(default, deny_unknown_fields)]
pub struct Forwarding {
    /// Every call goes here; the extension does not ring.
    pub always: Option<String>,
    /// Where a call goes when the extension is busy (or in do-not-disturb).
    pub busy: Option<String>,
    /// Where a call goes when nobody answers within `no_answer_secs` (or no
    /// phone of the extension is registered).
    pub no_answer: Option<String>,
    /// How long the extension rings before `no_answer`, in seconds
    /// ([`MIN_NO_ANSWER_SECS`] to [`MAX_NO_ANSWER_SECS`]).
    pub no_answer_secs: u32,
    /// Do not disturb: the extension is not rung; its calls take the busy
    /// forward, else get 486 Busy Here.
    pub dnd: bool,
}

impl Default for Forwarding {
    /// Nothing forwarded, not in do-not-disturb: an extension that set nothing.
    fn default() -> Forwarding {
        Forwarding {
            always: None,
            busy: None,
            no_answer: None,
            no_answer_secs: DEFAULT_NO_ANSWER_SECS,
            dnd: false,
        }
    }
}

/// Why forwarding settings are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardingError {
    /// A target that is empty, too long or holds something other than letters,
    /// digits and a leading `+`; which forward, and the target (cut).
    BadTarget(&'static str, String),
    /// A forward to the extension itself.
    ToItself(&'static str),
    /// `no_answer_secs` out of bounds.
    BadNoAnswerSecs(u32),
}

impl std::fmt::Display for ForwardingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardingError::BadTarget(which, target) => write!(
                f,
                "{which} forward {target:?}: a target is an extension, a group or a number \
                 (1 to {MAX_TARGET_LEN} letters and digits, optionally after one leading +)"
            ),
            ForwardingError::ToItself(which) => {
                write!(f, "{which} forward: an extension cannot forward to itself")
            }
            ForwardingError::BadNoAnswerSecs(secs) => write!(
                f,
                "no_answer_secs {secs}: between {MIN_NO_ANSWER_SECS} and {MAX_NO_ANSWER_SECS}"
            ),
        }
    }
}

impl std::error::Error for ForwardingError {}

/// Whether `target` may be a forward target (see [`Forwarding`]).
pub fn valid_target(target: &str) -> bool {
    let rest = target.strip_prefix('+').unwrap_or(target);
    !rest.is_empty()
        && target.len() <= MAX_TARGET_LEN
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Forwarding {
    /// Checks the settings of `extension`: every target well-formed and not the
    /// extension itself, the no-answer time in bounds.
    pub fn validate(&self, extension: &str) -> Result<(), ForwardingError> {
        for (which, target) in self.targets() {
            if !valid_target(target) {
                return Err(ForwardingError::BadTarget(
                    which,
                    target.chars().take(MAX_TARGET_LEN + 1).collect(),
                ));
            }
            if target == extension {
                return Err(ForwardingError::ToItself(which));
            }
        }
        if !(MIN_NO_ANSWER_SECS..=MAX_NO_ANSWER_SECS).contains(&self.no_answer_secs) {
            return Err(ForwardingError::BadNoAnswerSecs(self.no_answer_secs));
        }
        Ok(())
    }

    /// The targets that are set, with which forward each is.
    pub fn targets(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("always", &self.always),
            ("busy", &self.busy),
            ("no_answer", &self.no_answer),
        ]
        .into_iter()
        .filter_map(|(which, t)| t.as_deref().map(|t| (which, t)))
    }

    /// Whether these are the settings of an extension that set nothing.
    pub fn is_default(&self) -> bool {
        *self == Forwarding::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn always(target: &str) -> Forwarding {
        Forwarding {
            always: Some(target.into()),
            ..Forwarding::default()
        }
    }

    #[test]
    fn targets_are_extensions_groups_or_numbers_never_uris() {
        for good in ["1002", "sales", "+12125550100", "0442079460018", "Support2"] {
            assert_eq!(always(good).validate("1001"), Ok(()), "{good}");
        }
        for bad in [
            "",
            "+",
            "sip:evil@example.com",
            "1002@example.com",
            "10 02",
            "1+2",
            "++1",
            "a-b",
            "1002;transport=tcp",
            "<sip:1>",
            "é",
            "*72",
        ] {
            assert!(
                matches!(
                    always(bad).validate("1001"),
                    Err(ForwardingError::BadTarget("always", _))
                ),
                "{bad:?}"
            );
        }
        let long = "1".repeat(MAX_TARGET_LEN + 1);
        assert!(matches!(
            always(&long).validate("1001"),
            Err(ForwardingError::BadTarget(..))
        ));
        assert_eq!(always(&"1".repeat(MAX_TARGET_LEN)).validate("1001"), Ok(()));
    }

    #[test]
    fn every_forward_is_checked_and_none_may_point_at_itself() {
        let busy = Forwarding {
            busy: Some("sip:x".into()),
            ..Forwarding::default()
        };
        assert!(matches!(
            busy.validate("1001"),
            Err(ForwardingError::BadTarget("busy", _))
        ));
        let no_answer = Forwarding {
            no_answer: Some("1001".into()),
            ..Forwarding::default()
        };
        assert_eq!(
            no_answer.validate("1001"),
            Err(ForwardingError::ToItself("no_answer"))
        );
        assert_eq!(no_answer.validate("1002"), Ok(()));
    }

    #[test]
    fn the_no_answer_time_is_bounded() {
        let secs = |no_answer_secs| Forwarding {
            no_answer_secs,
            ..Forwarding::default()
        };
        assert_eq!(
            secs(0).validate("1"),
            Err(ForwardingError::BadNoAnswerSecs(0))
        );
        assert_eq!(
            secs(MAX_NO_ANSWER_SECS + 1).validate("1"),
            Err(ForwardingError::BadNoAnswerSecs(MAX_NO_ANSWER_SECS + 1))
        );
        assert_eq!(secs(MIN_NO_ANSWER_SECS).validate("1"), Ok(()));
        assert_eq!(secs(MAX_NO_ANSWER_SECS).validate("1"), Ok(()));
        assert!(Forwarding::default().is_default());
        assert_eq!(Forwarding::default().validate("1"), Ok(()));
    }

    #[test]
    fn json_fills_defaults_and_refuses_unknown_fields() {
        let f: Forwarding = serde_json::from_str(r#"{"busy":"1002","dnd":true}"#).unwrap();
        assert_eq!(f.busy.as_deref(), Some("1002"));
        assert!(f.dnd);
        assert_eq!(f.no_answer_secs, DEFAULT_NO_ANSWER_SECS);
        assert!(serde_json::from_str::<Forwarding>(r#"{"forward":"1002"}"#).is_err());
    }
}
