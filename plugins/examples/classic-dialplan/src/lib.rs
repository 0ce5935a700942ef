//! Example: a dial plan written for `pbx:plugin@0.1.0` (world `dialplan`,
//! one decision per call). It is the host's shipped default dial plan as it
//! was before call handlers (0.2.0); it is kept to show, and test, that a 0.1
//! plan keeps routing unchanged: asked once when the call starts, and the call
//! ends with the outcome of what it decided (no forward after a busy or an
//! unanswered attempt).
//!
//! In this order, for the dialled number with surrounding spaces removed:
//! 1. one of the tenant's extensions: ring it for 30 s;
//! 2. the name of one of the tenant's ring groups (`directory.groups()`): ring
//!    that group;
//! 3. a number the tenant mapped to a group in storage: the key
//!    `group:<dialled>` holds the group's name as UTF-8 (for example
//!    `group:600` → `sales`); ring that group if it exists;
//! 4. an outside number: `9` (the outside-line access code) followed by a
//!    number goes out without the `9`; a number that already starts with `0`
//!    (national form) or `+` (E.164) goes out unchanged. A number is digits,
//!    optionally after one leading `+`. It goes out the tenant's default trunk,
//!    the first of `directory.trunks()`; without a trunk the call gets
//!    `403 No Outbound Route`;
//! 5. anything else: `404 Not Found`.
//!
//! A call from outside (through one of the tenant's trunks, to one of its
//! numbers: the call has no calling extension) never goes back out a trunk: the
//! storage key `did:<dialled>` names the extension or group that answers that
//! number (for example `did:+15550001` → `1001`); without one the call gets
//! `404 Not Found`.

use pbx_sdk::{Call, Decision, DialPlan, directory, storage};

/// How long an extension rings before the call gives up.
const RING_SECS: u32 = 30;
/// The outside-line access code, stripped before the number goes to the trunk.
const OUTSIDE_LINE: char = '9';
/// Storage key prefix mapping a dialled number to a ring group's name.
const GROUP_KEY_PREFIX: &str = "group:";
/// Storage key prefix mapping an inbound number to an extension or group.
const DID_KEY_PREFIX: &str = "did:";

struct ClassicDialPlan;

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

/// The group `dialled` names, directly or through a storage mapping.
fn group_for(dialled: &str) -> Option<String> {
    if directory::group_members(dialled).is_some() {
        return Some(dialled.to_owned());
    }
    let mut key = String::with_capacity(GROUP_KEY_PREFIX.len() + dialled.len());
    key.push_str(GROUP_KEY_PREFIX);
    key.push_str(dialled);
    let name = String::from_utf8(storage::get(&key)?).ok()?;
    let name = name.trim();
    directory::group_members(name).map(|_| name.to_owned())
}

/// Where an inbound number goes, from the `did:` mapping in storage.
fn inbound(dialled: &str) -> Decision {
    let mut key = String::with_capacity(DID_KEY_PREFIX.len() + dialled.len());
    key.push_str(DID_KEY_PREFIX);
    key.push_str(dialled);
    let target = storage::get(&key).and_then(|v| String::from_utf8(v).ok());
    let Some(target) = target else {
        return Decision::reject(404, "Not Found");
    };
    let target = target.trim();
    if let Some(ext) = directory::extension(target) {
        return Decision::ring(&ext.number, RING_SECS);
    }
    if directory::group_members(target).is_some() {
        return Decision::group(target);
    }
    Decision::reject(404, "Not Found")
}

impl DialPlan for ClassicDialPlan {
    fn route(call: &Call) -> Decision {
        let dialled = call.dialled.trim();
        if dialled.is_empty() {
            return Decision::reject(404, "Not Found");
        }
        if call.caller_extension.is_none() {
            return inbound(dialled);
        }
        if let Some(ext) = directory::extension(dialled) {
            return Decision::ring(&ext.number, RING_SECS);
        }
        if let Some(group) = group_for(dialled) {
            return Decision::group(&group);
        }
        if let Some(number) = outside_number(dialled) {
            return match directory::first_trunk() {
                Some(trunk) => Decision::trunk(&trunk, number),
                None => Decision::reject(403, "No Outbound Route"),
            };
        }
        Decision::reject(404, "Not Found")
    }
}

pbx_sdk::export_dialplan!(ClassicDialPlan);
