//! Call handlers (`pbx:plugin@0.2.0`, world `call-handler`): the records of
//! one step and the check every step passes before the host acts on it.
//!
//! A step is refused whole when any action names something that is not the
//! tenant's, when the state is over [`MAX_STATE_BYTES`], or when its actions
//! are not one run of instant actions ending in at most one action that dials
//! or ends the call.

use crate::World;
use crate::bindings::call_handler::pbx::plugin0_2_0::call_types;
use crate::error::InvalidDecision;
use crate::types::{Decision, Directory, MAX_RING_SECS, Reject, clip, dialable};

pub use call_types::{
    Action, Call as HandlerCall, DialOut, DialResult, Event, Gather, Prompt, Recording, RingGroup,
    Step, Tone, TransferResult, TransferTarget,
};

/// Most bytes of state a handler may keep for one call.
pub const MAX_STATE_BYTES: usize = 4096;
/// Most actions in one step.
pub const MAX_ACTIONS_PER_STEP: usize = 8;
/// Longest call-record tag, in bytes.
pub const MAX_TAG_BYTES: usize = 64;
/// Most prompts one `play` or `gather` names.
pub const MAX_PROMPTS: usize = 8;
/// Longest prompt name, in bytes.
pub const MAX_PROMPT_NAME: usize = 64;
/// Longest silence prompt, in milliseconds.
pub const MAX_SILENCE_MS: u32 = 30_000;
/// Most digits a `gather` reads or a `digits` prompt plays.
pub const MAX_DIGITS: usize = 32;
/// Longest wait a `gather` allows, in milliseconds.
pub const MAX_GATHER_MS: u32 = 60_000;
/// Longest recording, in seconds.
pub const MAX_RECORDING_SECS: u32 = 300;

impl Action {
    /// Whether the action dials or ends the call (it must come last; its
    /// outcome is the next event).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Action::Ring(_)
                | Action::RingGroup(_)
                | Action::DialOut(_)
                | Action::Reject(_)
                | Action::Finish
                | Action::HangUp
                | Action::Transfer(_)
                | Action::Play(_)
                | Action::Gather(_)
                | Action::Record(_)
                | Action::Voicemail(_)
                | Action::VoicemailMenu(_)
        )
    }
}

/// A key of the telephone keypad (RFC 4733 events 0-15).
pub fn is_key(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// A prompt's name: 1 to 64 of letters, digits and `-_.`.
pub fn prompt_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PROMPT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn validate_prompts(prompts: &[Prompt]) -> Result<(), InvalidDecision> {
    if prompts.len() > MAX_PROMPTS {
        return Err(InvalidDecision::BadMedia("too many prompts"));
    }
    for prompt in prompts {
        match prompt {
            Prompt::File(name) if !prompt_name(name) => {
                return Err(InvalidDecision::BadMedia("prompt name"));
            }
            Prompt::Digits(d) if d.len() > MAX_DIGITS || !d.chars().all(is_key) => {
                return Err(InvalidDecision::BadMedia("digits to play"));
            }
            Prompt::SilenceMs(ms) if *ms > MAX_SILENCE_MS => {
                return Err(InvalidDecision::BadMedia("silence length"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn validate_media(action: &Action, directory: &Directory) -> Result<(), InvalidDecision> {
    let mailbox = |m: &str| {
        if directory.extension(m).is_none() {
            return Err(InvalidDecision::UnknownExtension(clip(m)));
        }
        Ok(())
    };
    match action {
        Action::Play(prompts) => validate_prompts(prompts),
        Action::Gather(g) => {
            validate_prompts(&g.prompts)?;
            if g.max_digits == 0 || usize::from(g.max_digits) > MAX_DIGITS {
                return Err(InvalidDecision::BadMedia("max digits"));
            }
            if g.terminator.is_some_and(|c| !is_key(c)) {
                return Err(InvalidDecision::BadMedia("terminator"));
            }
            if g.timeout_ms > MAX_GATHER_MS || g.inter_digit_ms > MAX_GATHER_MS {
                return Err(InvalidDecision::BadMedia("gather timeout"));
            }
            Ok(())
        }
        Action::Record(r) => {
            mailbox(&r.mailbox)?;
            if r.max_secs == 0 || r.max_secs > MAX_RECORDING_SECS {
                return Err(InvalidDecision::BadMedia("recording length"));
            }
            if r.silence_secs > r.max_secs {
                return Err(InvalidDecision::BadMedia("silence length"));
            }
            if r.finish_key.is_some_and(|c| !is_key(c)) {
                return Err(InvalidDecision::BadMedia("finish key"));
            }
            Ok(())
        }
        Action::Voicemail(m) | Action::VoicemailMenu(m) => mailbox(m),
        _ => Ok(()),
    }
}

/// Which world a tenant's dial plan is: a call handler (`pbx:plugin@0.2.0`,
/// its component exports `handle`) or a 0.1 dial plan (anything else; loading
/// then checks it for real). One pass over the component's top level.
pub fn dial_plan_world(wasm: &[u8]) -> World {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            break;
        };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentExportSection(exports)
                if depth == 0
                    && exports
                        .clone()
                        .into_iter()
                        .flatten()
                        .any(|export| export.name.name == "handle") =>
            {
                return World::CallHandler;
            }
            _ => {}
        }
    }
    World::Dialplan
}

/// A tag is letters, digits and `-_.:/` (so it is safe in any export).
fn tag_text(tag: &str) -> bool {
    tag.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
}

/// Checks a step against the tenant's directory.
pub fn validate_step(step: &Step, directory: &Directory) -> Result<(), InvalidDecision> {
    if step.state.len() > MAX_STATE_BYTES {
        return Err(InvalidDecision::StateTooLarge(step.state.len()));
    }
    if step.actions.len() > MAX_ACTIONS_PER_STEP {
        return Err(InvalidDecision::TooManyActions(step.actions.len()));
    }
    if let Some(last_final) = step.actions.iter().position(Action::is_final)
        && last_final + 1 != step.actions.len()
    {
        return Err(InvalidDecision::ActionAfterEnd);
    }
    for action in &step.actions {
        validate_action(action, directory)?;
    }
    Ok(())
}

fn validate_action(action: &Action, directory: &Directory) -> Result<(), InvalidDecision> {
    let timeout = |secs: u32| {
        if secs > MAX_RING_SECS {
            Err(InvalidDecision::BadTimeout(secs))
        } else {
            Ok(())
        }
    };
    match action {
        Action::Ring(ring) => Decision::Ring(ring.clone()).validate(directory),
        Action::RingGroup(group) => {
            timeout(group.timeout_secs)?;
            Decision::RingGroup(group.name.clone()).validate(directory)
        }
        Action::DialOut(out) => {
            timeout(out.timeout_secs)?;
            if !directory.has_trunk(&out.trunk) {
                return Err(InvalidDecision::UnknownTrunk(clip(&out.trunk)));
            }
            if !dialable(&out.number) {
                return Err(InvalidDecision::BadNumber(clip(&out.number)));
            }
            Ok(())
        }
        Action::Reject(Reject { status, reason }) => Decision::Reject(Reject {
            status: *status,
            reason: reason.clone(),
        })
        .validate(directory),
        Action::Transfer(TransferTarget::Extension(ext)) => {
            if directory.extension(ext).is_none() {
                return Err(InvalidDecision::UnknownExtension(clip(ext)));
            }
            Ok(())
        }
        Action::Transfer(TransferTarget::Number(number)) | Action::SetCallerId(number) => {
            if !dialable(number) {
                return Err(InvalidDecision::BadNumber(clip(number)));
            }
            Ok(())
        }
        Action::Tag(tag) => {
            if tag.is_empty() || tag.len() > MAX_TAG_BYTES || !tag_text(tag) {
                return Err(InvalidDecision::BadTag);
            }
            Ok(())
        }
        Action::Finish | Action::Answer | Action::HangUp => Ok(()),
        Action::Play(_)
        | Action::Gather(_)
        | Action::Record(_)
        | Action::Voicemail(_)
        | Action::VoicemailMenu(_) => validate_media(action, directory),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Ring, RingStrategy, RingTarget};

    fn dir() -> Directory {
        Directory::new()
            .with_extension("100", "Alice", true)
            .with_group("sales", &["100"])
            .with_trunk("carrier")
    }

    fn step(actions: Vec<Action>) -> Step {
        Step {
            actions,
            state: Vec::new(),
        }
    }

    fn ring(ext: &str) -> Action {
        Action::Ring(Ring {
            targets: vec![RingTarget {
                extension: ext.into(),
                timeout_secs: 20,
            }],
            strategy: RingStrategy::Simultaneous,
        })
    }

    #[test]
    fn a_dial_plans_world_is_read_from_its_exports() {
        use crate::shipped::{self, examples};
        assert_eq!(dial_plan_world(examples::OFFICE_HOURS), World::CallHandler);
        assert_eq!(
            dial_plan_world(shipped::DEFAULT_DIALPLAN),
            World::CallHandler
        );
        assert_eq!(dial_plan_world(examples::COUNTER), World::Dialplan);
        assert_eq!(dial_plan_world(b"not wasm"), World::Dialplan);
    }

    #[test]
    fn a_step_names_only_the_tenants_own_things() {
        let d = dir();
        assert_eq!(validate_step(&step(vec![ring("100")]), &d), Ok(()));
        assert_eq!(
            validate_step(&step(vec![ring("999")]), &d),
            Err(InvalidDecision::UnknownExtension("999".into()))
        );
        let out = |trunk: &str, number: &str| {
            step(vec![Action::DialOut(DialOut {
                trunk: trunk.into(),
                number: number.into(),
                timeout_secs: 30,
            })])
        };
        assert_eq!(validate_step(&out("carrier", "+15551234567"), &d), Ok(()));
        assert_eq!(
            validate_step(&out("theirs", "+15551234567"), &d),
            Err(InvalidDecision::UnknownTrunk("theirs".into()))
        );
        assert_eq!(
            validate_step(&out("carrier", "sip:evil@x"), &d),
            Err(InvalidDecision::BadNumber("sip:evil@x".into()))
        );
        let group = |name: &str| {
            step(vec![Action::RingGroup(RingGroup {
                name: name.into(),
                timeout_secs: 0,
            })])
        };
        assert_eq!(validate_step(&group("sales"), &d), Ok(()));
        assert_eq!(
            validate_step(&group("support"), &d),
            Err(InvalidDecision::UnknownGroup("support".into()))
        );
        assert_eq!(
            validate_step(
                &step(vec![Action::Transfer(TransferTarget::Extension(
                    "7".into()
                ))]),
                &d
            ),
            Err(InvalidDecision::UnknownExtension("7".into()))
        );
    }

    #[test]
    fn a_step_is_bounded_and_ends_with_its_one_final_action() {
        let d = dir();
        let tagged = step(vec![Action::Tag("vip".into()), ring("100")]);
        assert_eq!(validate_step(&tagged, &d), Ok(()));
        assert_eq!(
            validate_step(&step(vec![ring("100"), Action::Tag("late".into())]), &d),
            Err(InvalidDecision::ActionAfterEnd)
        );
        assert_eq!(
            validate_step(&step(vec![Action::Finish, ring("100")]), &d),
            Err(InvalidDecision::ActionAfterEnd)
        );
        assert_eq!(
            validate_step(&step(vec![Action::Tag("x".into()); 9]), &d),
            Err(InvalidDecision::TooManyActions(9))
        );
        assert_eq!(
            validate_step(&step(vec![Action::Tag("a\r\nb".into())]), &d),
            Err(InvalidDecision::BadTag)
        );
        assert_eq!(
            validate_step(&step(vec![Action::Tag("a;b".into())]), &d),
            Err(InvalidDecision::BadTag)
        );
        assert_eq!(
            validate_step(&step(vec![Action::Tag("after-hours:v1".into())]), &d),
            Ok(())
        );
        let big = Step {
            actions: vec![Action::Finish],
            state: vec![0; MAX_STATE_BYTES + 1],
        };
        assert_eq!(
            validate_step(&big, &d),
            Err(InvalidDecision::StateTooLarge(MAX_STATE_BYTES + 1))
        );
    }

    fn gather(max_digits: u8, prompts: Vec<Prompt>) -> Action {
        Action::Gather(Gather {
            prompts,
            max_digits,
            terminator: Some('#'),
            timeout_ms: 5000,
            inter_digit_ms: 3000,
            barge_in: true,
        })
    }

    #[test]
    fn media_actions_are_bounded_and_name_only_the_tenants_mailboxes() {
        let d = dir();
        let menu = vec![
            Prompt::File("main-menu".into()),
            Prompt::Tone(Tone::Beep),
            Prompt::Digits("12#".into()),
            Prompt::SilenceMs(500),
        ];
        assert_eq!(
            validate_step(&step(vec![gather(1, menu.clone())]), &d),
            Ok(())
        );
        assert_eq!(
            validate_step(&step(vec![Action::Play(menu), ring("100")]), &d),
            Err(InvalidDecision::ActionAfterEnd),
            "a play ends its step"
        );
        let bad = [
            (
                Action::Play(vec![Prompt::File("../etc/passwd".into())]),
                "prompt name",
            ),
            (
                Action::Play(vec![Prompt::File(String::new())]),
                "prompt name",
            ),
            (
                Action::Play(vec![Prompt::Digits("12x".into())]),
                "digits to play",
            ),
            (
                Action::Play(vec![Prompt::SilenceMs(30_001)]),
                "silence length",
            ),
            (
                Action::Play(vec![Prompt::Tone(Tone::Beep); 9]),
                "too many prompts",
            ),
            (gather(0, vec![]), "max digits"),
            (gather(33, vec![]), "max digits"),
        ];
        for (action, why) in bad {
            assert_eq!(
                validate_step(&step(vec![action]), &d),
                Err(InvalidDecision::BadMedia(why))
            );
        }
        let record = |mailbox: &str, max_secs: u32, key: char| {
            Action::Record(Recording {
                mailbox: mailbox.into(),
                max_secs,
                beep: true,
                finish_key: Some(key),
                silence_secs: 5,
            })
        };
        assert_eq!(
            validate_step(&step(vec![record("100", 60, '#')]), &d),
            Ok(())
        );
        assert_eq!(
            validate_step(&step(vec![record("999", 60, '#')]), &d),
            Err(InvalidDecision::UnknownExtension("999".into()))
        );
        assert_eq!(
            validate_step(&step(vec![record("100", 301, '#')]), &d),
            Err(InvalidDecision::BadMedia("recording length"))
        );
        assert_eq!(
            validate_step(&step(vec![record("100", 60, 'x')]), &d),
            Err(InvalidDecision::BadMedia("finish key"))
        );
        assert_eq!(
            validate_step(&step(vec![Action::Voicemail("100".into())]), &d),
            Ok(())
        );
        assert_eq!(
            validate_step(&step(vec![Action::Voicemail("200".into())]), &d),
            Err(InvalidDecision::UnknownExtension("200".into()))
        );
    }
}
