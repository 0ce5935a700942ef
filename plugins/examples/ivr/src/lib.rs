//! Worked example of media in a call handler (`pbx:plugin@0.2.0`): an auto
//! attendant for the company's number.
//!
//! - A call to one of the tenant's extensions rings it for 20 s; nobody
//!   answers: that extension's voicemail.
//! - A call to any other number (the company's number) in business hours
//!   (Monday to Friday, 09:00 to 17:00 in the tenant's time zone, not on one
//!   of its holidays; storage keys `hours.open`, `hours.close` and
//!   `hours.weekends` = `1` change that) is answered with the tenant's prompts `greeting` and `menu`
//!   and a menu of one key (a key stops the prompts):
//!   - the storage key `ivr.<key>` names where that key goes: one of the
//!     tenant's ring groups or extensions (`ivr.1` unset: the `sales`
//!     group);
//!   - no key within 5 s, or a key that goes nowhere: an error tone and the
//!     menu once more; then voicemail.
//!   The caller hears ringing while the destination rings (20 s); nobody
//!   answers: voicemail.
//! - Out of hours: voicemail at once, and the call record is tagged
//!   `after-hours`.
//!
//! Voicemail is the mailbox of the extension in the storage key
//! `ivr.mailbox` (else the first member of `sales`); the host plays the
//! tenant's prompt `greeting-<mailbox>` when it has one, a beep, records up
//! to two minutes, and lights the mailbox's phones. Without a mailbox the
//! call ends. The call is hung up once the message is recorded.
//!
//! When an answered call ends, its record is tagged `ended:caller` (the
//! caller hung up) or `ended:answered` (the other side did).
//!
//! The state carried between steps is a word: where the call is.

use pbx_sdk::{directory, storage};
use pbx_sdk_call_handler::clock::{self, Weekday};
use pbx_sdk_call_handler::{
    Action, Call, CallHandler, DialResult, Event, Gather, Machine, Prompt, Ring, RingGroup, RingStrategy,
    RingTarget, Step, Tone,
};

/// How long a destination rings, in seconds.
const RING_SECS: u32 = 20;
/// The group a caller pressing 1 reaches unless `ivr.1` says otherwise.
const DEFAULT_GROUP: &str = "sales";

/// An hour (0 to 24) from storage, or `default`.
fn hour(key: &str, default: u8) -> u8 {
    storage::get_u64(key)
        .and_then(|h| u8::try_from(h).ok())
        .filter(|h| *h <= 24)
        .unwrap_or(default)
}

fn in_business_hours() -> bool {
    let now = clock::now();
    let weekend = matches!(now.weekday, Weekday::Saturday | Weekday::Sunday);
    let open_weekends = storage::get_u64("hours.weekends") == Some(1);
    (open_weekends || !weekend)
        && (hour("hours.open", 9)..hour("hours.close", 17)).contains(&now.hour)
        && clock::holiday().is_none()
}

fn stored(key: &str) -> Option<String> {
    storage::get(key)
        .and_then(|v| String::from_utf8(v).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The menu, after `first` (an error tone on a second try).
fn menu(mut first: Vec<Prompt>) -> Action {
    first.extend([Prompt::File("greeting".into()), Prompt::File("menu".into())]);
    Action::Gather(Gather {
        prompts: first,
        max_digits: 1,
        terminator: None,
        timeout_ms: 5000,
        inter_digit_ms: 3000,
        barge_in: true,
    })
}

/// Where a key goes: a ring group or an extension of the tenant.
fn destination(key: &str) -> Option<Action> {
    let target = stored(&format!("ivr.{key}"))
        .or_else(|| (key == "1").then(|| DEFAULT_GROUP.to_string()))?;
    if directory::group_members(&target).is_some() {
        return Some(Action::RingGroup(RingGroup {
            name: target,
            timeout_secs: RING_SECS,
        }));
    }
    directory::is_extension(&target).then(|| ring(&target))
}

fn ring(extension: &str) -> Action {
    Action::Ring(Ring {
        targets: vec![RingTarget {
            extension: extension.into(),
            timeout_secs: RING_SECS,
        }],
        strategy: RingStrategy::Simultaneous,
    })
}

/// The company's mailbox.
fn mailbox() -> Option<String> {
    stored("ivr.mailbox").or_else(|| {
        directory::group_members(DEFAULT_GROUP).and_then(|members| members.into_iter().next())
    })
}

/// Voicemail, after `first`; the call ends when there is no mailbox.
fn voicemail(mut first: Vec<Action>) -> (Vec<Action>, &'static str) {
    match mailbox() {
        Some(m) => {
            first.push(Action::Voicemail(m));
            (first, "voicemail")
        }
        None => {
            first.push(Action::HangUp);
            (first, "")
        }
    }
}

struct Ivr;

impl CallHandler for Ivr {
    fn handle(call: &Call, state: &[u8], event: &Event) -> Step {
        // How an answered call ended goes into its record.
        match event {
            Event::CallerHungUp => return Step::new(vec![Action::Tag("ended:caller".into())], ""),
            Event::DialEnded(DialResult::AnsweredAndEnded) => {
                return Step::new(vec![Action::Tag("ended:answered".into())], "");
            }
            _ => {}
        }
        let machine = Machine::from(state);
        if let (Event::CallStarted, true) = (event, directory::is_extension(&call.dialled)) {
            return Step::new(vec![ring(&call.dialled)], "extension");
        }
        if let (Event::DialEnded(_), "extension") = (event, machine.at()) {
            return Step::new(vec![Action::Voicemail(call.dialled.clone())], "voicemail");
        }
        machine.then(|at| match (at, event) {
            ("", Event::CallStarted) if in_business_hours() => (vec![menu(vec![])], "menu"),
            ("", Event::CallStarted) => voicemail(vec![Action::Tag("after-hours".into())]),
            ("menu" | "retry", Event::DigitsGathered(keys)) => match destination(keys) {
                Some(dial) => (vec![Action::Tag(format!("ivr:{keys}")), dial], "ringing"),
                None if at == "menu" => (vec![menu(vec![Prompt::Tone(Tone::Error)])], "retry"),
                None => voicemail(Vec::new()),
            },
            ("ringing", Event::DialEnded(_)) => voicemail(Vec::new()),
            (_, Event::RecordingFinished(_)) => (vec![Action::HangUp], ""),
            _ => (vec![Action::HangUp], ""),
        })
    }
}

pbx_sdk_call_handler::export_call_handler!(Ivr);
