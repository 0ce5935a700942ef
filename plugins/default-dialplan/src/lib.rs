//! The dial plan every tenant runs until it uploads its own: a call handler
//! (`pbx:plugin@0.2.0`) that follows each extension's forwarding and
//! do-not-disturb, which the host keeps (`pbx:plugin/features`, set by the
//! tenant's admins or with the feature codes below).
//!
//! # Where a call goes
//!
//! In this order, for the dialled number with surrounding spaces removed, on a
//! call from one of the tenant's extensions:
//! 1. a feature code (`*…`, below);
//! 2. one of the tenant's extensions: that extension, as its forwarding says
//!    (below); it rings for its `no_answer_secs` (20 s unless the tenant set
//!    another time), then goes on to its no-answer forward or voicemail;
//! 3. the name of one of the tenant's ring groups (`directory.groups()`): ring
//!    that group (for the host's ring time), then its failover (below);
//! 4. a number the tenant mapped to a group in storage: the key
//!    `group:<dialled>` holds the group's name as UTF-8 (for example
//!    `group:600` → `sales`); ring that group if it exists, as in 3;
//! 5. an outside number: `9` (the outside-line access code) followed by a
//!    number goes out without the `9`; a number that already starts with `0`
//!    (national form) or `+` (E.164) goes out unchanged. A number is digits,
//!    optionally after one leading `+`. It goes out the tenant's default trunk,
//!    the first of `directory.trunks()`; without a trunk the call gets
//!    `403 No Outbound Route`;
//! 6. anything else: `404 Not Found`.
//!
//! A call from outside (through one of the tenant's trunks, to one of its
//! numbers: the call has no calling extension) goes where the storage key
//! `did:<dialled>` says: an extension (as in 2, forwarding included) or a group
//! (as in 3), for example `did:+15550001` → `1001`; without one, or when it
//! names neither, the call gets `404 Not Found`. Such a call goes back out a
//! trunk only through a forward or failover the tenant set.
//!
//! # Forwarding and do-not-disturb
//!
//! An extension's settings (`features.forwarding`) are followed when it is
//! called, in this order:
//! - `always`: the call goes to that target; the extension does not ring;
//! - `dnd` (do not disturb): the extension does not ring; the call goes to its
//!   `busy` target, else gets `486 Busy Here`;
//! - otherwise it rings. Busy (486/600): its `busy` target. Nobody answered in
//!   time, or no phone of it is registered: its `no_answer` target. Without the
//!   target, a call that rang out unanswered goes to the extension's
//!   **voicemail** (action `voicemail`: its greeting, a beep, a message of up
//!   to two minutes, message-waiting indication to its phones), and the host
//!   hangs up once the message is recorded; busy and nothing registered keep
//!   their outcome (486, 480), as does any other outcome. (The host keeps the
//!   attempt's failure for the caller when it cannot answer: no media
//!   anchored, no SDP offer.)
//!
//! A target is one of the tenant's extensions (whose own forwarding is then
//! followed), one of its groups, or else a number (digits after an optional
//! `+`) dialled as written out the first trunk (`403 No Outbound Route`
//! without one). A target that is none of these is ignored (the plugin log
//! says so): an `always` to it rings the extension itself.
//!
//! When a ring group does not answer (busy, no answer, nobody registered,
//! refused), the storage key `failover:<group>` names where the call goes
//! next: another group, an extension or a number out the first trunk (as a
//! forward target). Without one the call ends with the group's outcome.
//!
//! Within one step a chain of unconditional forwards is followed only as far
//! as needed to find something to ring. A chain that comes back to an
//! extension or group already in it (1001 → 1002 → 1001, within a step or
//! across steps) ends the call with `482 Loop Detected`, as does one longer
//! than 10 extensions and groups. The host also caps a call at 8 steps.
//!
//! # Feature codes
//!
//! Dialled from one of the tenant's extensions, for that extension:
//!
//! | dialled | does |
//! | --- | --- |
//! | `*72<target>` | forward every call to `<target>` (unconditional forwarding on) |
//! | `*73` | unconditional forwarding off |
//! | `*78` | do-not-disturb on |
//! | `*79` | do-not-disturb off |
//! | `*97` | the extension's voicemail: its PIN, then its messages (action `voicemail-menu`) |
//!
//! (`*8`, call pickup of a call ringing in one of the extension's ring groups,
//! is the host's: the dial plan never sees it.)
//!
//! The change is saved before the phone hears the confirmation: the host
//! answers and hangs up at once (actions `answer`, `hang-up`). Any other `*`
//! code, or a target the host refuses (not letters and digits, the extension
//! itself), gets `404 Not Found`; a change the host could not save right now
//! gets `503 Feature Unavailable`.
//!
//! # State
//!
//! Kept between steps as text: the first line says what the last dialling
//! action rang (`x:<extension>`, `g:<group>`, or `out` for a trunk), the next
//! lines are the extensions (`x:`) and groups (`g:`) the call has been through.
//! At most 10 of them, so the state stays well under the host's 4 KiB. (The
//! SDK's `Machine` helper suits a one-word state; this one carries the chain,
//! so it is decoded by hand.)

use pbx_sdk::{directory, log, storage};
use pbx_sdk_call_handler::features::{self, ForwardingError, ForwardingSettings as Forwarding};
use pbx_sdk_call_handler::{
    Action, Call, CallHandler, DialOut, DialResult, Event, Reject, Ring, RingGroup, RingStrategy,
    RingTarget, Step,
};

/// How long an extension rings when the host has no settings for it (the
/// host's default `no_answer_secs`).
const RING_SECS: u32 = 20;
/// The outside-line access code, stripped before the number goes to the trunk.
const OUTSIDE_LINE: char = '9';
/// Storage key prefix mapping a dialled number to a ring group's name.
const GROUP_KEY_PREFIX: &str = "group:";
/// Storage key prefix mapping an inbound number to an extension or group.
const DID_KEY_PREFIX: &str = "did:";
/// Storage key prefix naming where a group's unanswered calls go.
const FAILOVER_KEY_PREFIX: &str = "failover:";
/// Most extensions and groups one call goes through.
const MAX_CHAIN: usize = 10;

/// What the call has been through, and what rang last.
#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    /// What the last dialling action rang: `x:<ext>`, `g:<group>` or `out`.
    rang: String,
    /// The extensions (`x:`) and groups (`g:`) the call went through, in order.
    chain: Vec<String>,
}

impl State {
    fn decode(bytes: &[u8]) -> State {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return State::default();
        };
        let mut lines = text.split('\n');
        State {
            rang: lines.next().unwrap_or_default().to_string(),
            chain: lines
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut text = self.rang.clone();
        for entry in &self.chain {
            text.push('\n');
            text.push_str(entry);
        }
        text.into_bytes()
    }

    /// Adds `entry` to the chain; `Err` with the step that ends the call when
    /// it is there already (a loop) or the chain is full.
    fn enter(&mut self, entry: String) -> Result<(), Step> {
        if self.chain.contains(&entry) || self.chain.len() >= MAX_CHAIN || entry.contains('\n') {
            return Err(reject(482, "Loop Detected"));
        }
        self.chain.push(entry);
        Ok(())
    }
}

fn reject(status: u16, reason: &str) -> Step {
    Step::new(
        vec![Action::Reject(Reject {
            status,
            reason: reason.to_string(),
        })],
        Vec::new(),
    )
}

/// Digits, optionally after one leading `+`.
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The number to send out a trunk, if `dialled` is an outside number.
fn outside_number(dialled: &str) -> Option<&str> {
    let number = if dialled.starts_with('0') || dialled.starts_with('+') {
        dialled
    } else {
        dialled.strip_prefix(OUTSIDE_LINE)?
    };
    is_number(number).then_some(number)
}

/// The storage value under `prefix` + `name`, trimmed, as text.
fn stored(prefix: &str, name: &str) -> Option<String> {
    let mut key = String::with_capacity(prefix.len() + name.len());
    key.push_str(prefix);
    key.push_str(name);
    let value = String::from_utf8(storage::get(&key)?).ok()?;
    Some(value.trim().to_string())
}

/// The group `dialled` names, directly or through a storage mapping.
fn group_for(dialled: &str) -> Option<String> {
    if directory::group_members(dialled).is_some() {
        return Some(dialled.to_owned());
    }
    let name = stored(GROUP_KEY_PREFIX, dialled)?;
    directory::group_members(&name).map(|_| name)
}

/// Dials `number` out the tenant's first trunk (`403` without one).
fn out_trunk(number: &str, mut state: State) -> Step {
    let Some(trunk) = directory::first_trunk() else {
        return reject(403, "No Outbound Route");
    };
    state.rang = "out".into();
    Step::new(
        vec![Action::DialOut(DialOut {
            trunk,
            number: number.to_string(),
            timeout_secs: 0,
        })],
        state.encode(),
    )
}

/// Rings `group` (for the host's ring time); its failover comes after.
fn ring_group(group: &str, mut state: State) -> Step {
    let entry = format!("g:{group}");
    if let Err(end) = state.enter(entry.clone()) {
        return end;
    }
    state.rang = entry;
    Step::new(
        vec![Action::RingGroup(RingGroup {
            name: group.to_string(),
            timeout_secs: 0,
        })],
        state.encode(),
    )
}

/// The settings of the tenant's extension `number` (the host answers the
/// defaults for one that set nothing, and `none` only for a number that is
/// not one of the tenant's extensions: nothing forwarded then either).
fn forwarding_of(number: &str) -> Forwarding {
    features::forwarding(number).unwrap_or(Forwarding {
        always: None,
        busy: None,
        no_answer: None,
        no_answer_secs: RING_SECS,
        dnd: false,
    })
}

/// A call to the tenant's extension `number`, as its forwarding says.
fn to_extension(number: &str, mut state: State) -> Step {
    if let Err(end) = state.enter(format!("x:{number}")) {
        return end;
    }
    let settings = forwarding_of(number);
    if let Some(target) = &settings.always {
        match to_target(target, state) {
            Ok(step) => return step,
            Err(back) => state = back,
        }
    }
    if settings.dnd {
        return match settings.busy.as_deref().map(|t| to_target(t, state)) {
            Some(Ok(step)) => step,
            _ => reject(486, "Busy Here"),
        };
    }
    // The extension's ring time: before its no-answer forward, or its
    // voicemail.
    let secs = settings.no_answer_secs;
    state.rang = format!("x:{number}");
    Step::new(
        vec![Action::Ring(Ring {
            targets: vec![RingTarget {
                extension: number.to_string(),
                timeout_secs: secs,
            }],
            strategy: RingStrategy::Simultaneous,
        })],
        state.encode(),
    )
}

/// A forward or failover to `target`: an extension, a group or a number.
/// `Err` gives the state back when the target is none of these.
fn to_target(target: &str, state: State) -> Result<Step, State> {
    let target = target.trim();
    if directory::is_extension(target) {
        Ok(to_extension(target, state))
    } else if directory::group_members(target).is_some() {
        Ok(ring_group(target, state))
    } else if is_number(target) {
        Ok(out_trunk(target, state))
    } else {
        log::warn(&format!("forward target {target:?} is no extension, group or number; ignored"));
        Err(state)
    }
}

/// Where `target` sends the call next, or the end of the call.
fn next_or_finish(target: Option<String>, state: State) -> Step {
    target
        .and_then(|t| to_target(&t, state).ok())
        .unwrap_or_else(Step::finish)
}

/// The next step after a dial attempt ended.
fn after_dial(result: &DialResult, state: State) -> Step {
    if let Some(number) = state.rang.strip_prefix("x:") {
        let settings = forwarding_of(number);
        let (target, rang_out) = match result {
            DialResult::Busy => (settings.busy, false),
            DialResult::NoAnswer => (settings.no_answer, true),
            DialResult::Unavailable => (settings.no_answer, false),
            _ => (None, false),
        };
        if target.is_none() && rang_out {
            let mailbox = number.to_string();
            return Step::new(vec![Action::Voicemail(mailbox)], state.encode());
        }
        return next_or_finish(target, state);
    }
    if let Some(group) = state.rang.strip_prefix("g:") {
        let unanswered = matches!(
            result,
            DialResult::Busy
                | DialResult::NoAnswer
                | DialResult::Unavailable
                | DialResult::Rejected(_)
        );
        let failover = unanswered
            .then(|| stored(FAILOVER_KEY_PREFIX, group))
            .flatten();
        return next_or_finish(failover, state);
    }
    Step::finish()
}

/// A feature code dialled by the tenant's extension `me`.
fn feature_code(me: &str, code: &str) -> Step {
    let mut settings = forwarding_of(me);
    match code {
        "73" => settings.always = None,
        "78" => settings.dnd = true,
        "79" => settings.dnd = false,
        // The caller's own mailbox menu (the host asks for its PIN).
        "97" => return Step::new(vec![Action::VoicemailMenu(me.to_string())], Vec::new()),
        _ => match code.strip_prefix("72") {
            Some(target) if !target.is_empty() => settings.always = Some(target.to_string()),
            _ => return reject(404, "Not Found"),
        },
    }
    match features::set_forwarding(me, &settings) {
        Ok(()) => Step::new(vec![Action::Answer, Action::HangUp], Vec::new()),
        Err(ForwardingError::Unavailable) => reject(503, "Feature Unavailable"),
        Err(ForwardingError::Invalid(why)) => {
            log::info(&format!("feature code *{code} of {me} refused: {why}"));
            reject(404, "Not Found")
        }
        Err(ForwardingError::UnknownExtension) => reject(404, "Not Found"),
    }
}

/// Where an inbound number goes, from the `did:` mapping in storage.
fn inbound(dialled: &str) -> Step {
    let Some(target) = stored(DID_KEY_PREFIX, dialled) else {
        return reject(404, "Not Found");
    };
    if directory::is_extension(&target) {
        return to_extension(&target, State::default());
    }
    if directory::group_members(&target).is_some() {
        return ring_group(&target, State::default());
    }
    reject(404, "Not Found")
}

/// The first step of a call.
fn started(call: &Call) -> Step {
    let dialled = call.dialled.trim();
    if dialled.is_empty() {
        return reject(404, "Not Found");
    }
    let Some(me) = call.caller_extension.as_deref() else {
        return inbound(dialled);
    };
    if let Some(code) = dialled.strip_prefix('*') {
        return feature_code(me, code);
    }
    if directory::is_extension(dialled) {
        return to_extension(dialled, State::default());
    }
    if let Some(group) = group_for(dialled) {
        return ring_group(&group, State::default());
    }
    if let Some(number) = outside_number(dialled) {
        return out_trunk(number, State::default());
    }
    reject(404, "Not Found")
}

struct DefaultDialPlan;

impl CallHandler for DefaultDialPlan {
    fn handle(call: &Call, state: &[u8], event: &Event) -> Step {
        match event {
            Event::CallStarted => started(call),
            Event::DialEnded(result) => after_dial(result, State::decode(state)),
            // The message is recorded (or could not be), or the caller is
            // done with the mailbox menu: goodbye.
            Event::RecordingFinished(_) | Event::PromptFinished => {
                Step::new(vec![Action::HangUp], Vec::new())
            }
            _ => Step::finish(),
        }
    }
}

pbx_sdk_call_handler::export_call_handler!(DefaultDialPlan);

