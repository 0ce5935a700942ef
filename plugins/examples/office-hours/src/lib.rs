//! Worked example of a call handler (`pbx:plugin@0.2.0`): business hours, a
//! hunt group and a forward to a mobile number.
//!
//! - A call to one of the tenant's extensions rings it for 20 s. Busy, no
//!   answer or nobody registered: the `sales` hunt group rings for 20 s; still
//!   nobody: the on-call mobile, out the tenant's first trunk. Then the call
//!   ends with the outcome of that last attempt.
//! - A call to any other number (the company's number) in business hours
//!   (Monday to Friday, 09:00 to 17:00 in the tenant's time zone, not on one of
//!   its holidays; storage keys `hours.open`, `hours.close` and
//!   `hours.weekends` = `1` change that) rings the `sales` group, then the
//!   mobile.
//! - Out of hours it goes straight to the mobile, and the call record is
//!   tagged `after-hours`.
//!
//! The mobile number is the tenant's storage key `forward.mobile`; without it
//! (or without a trunk) the call ends after the group. Each attempt rings for
//! `ring.secs` seconds (storage; 20 when unset). Every leg is checked by
//! the host: the group and the trunk must be the tenant's, and the provider's
//! policies see the forward to the mobile like any other call out a trunk.
//!
//! The state carried between steps is the name of the attempt that rang.

use pbx_sdk::{directory, storage};
use pbx_sdk_call_handler::clock::{self, Weekday};
use pbx_sdk_call_handler::{
    Action, Call, CallHandler, DialOut, Event, Ring, RingGroup, RingStrategy, RingTarget, Step,
};

/// The hunt group that takes the company's calls.
const GROUP: &str = "sales";
/// How long each attempt rings unless `ring.secs` says otherwise, in seconds.
const RING_SECS: u32 = 20;

fn ring_secs() -> u32 {
    storage::get_u64("ring.secs")
        .and_then(|s| u32::try_from(s).ok())
        .filter(|s| (1..=600).contains(s))
        .unwrap_or(RING_SECS)
}

struct OfficeHours;

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

fn ring_extension(number: &str) -> Step {
    Step::new(
        vec![Action::Ring(Ring {
            targets: vec![RingTarget {
                extension: number.into(),
                timeout_secs: ring_secs(),
            }],
            strategy: RingStrategy::Simultaneous,
        })],
        "extension",
    )
}

fn ring_group() -> Step {
    if directory::group_members(GROUP).is_none() {
        return to_mobile(Vec::new());
    }
    Step::new(
        vec![Action::RingGroup(RingGroup {
            name: GROUP.into(),
            timeout_secs: ring_secs(),
        })],
        "group",
    )
}

/// The mobile, after `first` (instant actions such as tags); the call ends
/// when there is no mobile number or no trunk.
fn to_mobile(mut first: Vec<Action>) -> Step {
    let mobile = storage::get("forward.mobile").and_then(|v| String::from_utf8(v).ok());
    match (mobile, directory::first_trunk()) {
        (Some(number), Some(trunk)) => {
            first.push(Action::DialOut(DialOut {
                trunk,
                number: number.trim().to_string(),
                timeout_secs: 30,
            }));
            Step::new(first, "mobile")
        }
        _ => {
            first.push(Action::Finish);
            Step::new(first, "")
        }
    }
}

impl CallHandler for OfficeHours {
    fn handle(call: &Call, state: &[u8], event: &Event) -> Step {
        match (event, state) {
            (Event::CallStarted, _) if directory::is_extension(&call.dialled) => {
                ring_extension(&call.dialled)
            }
            (Event::CallStarted, _) if in_business_hours() => ring_group(),
            (Event::CallStarted, _) => to_mobile(vec![Action::Tag("after-hours".into())]),
            (Event::DialEnded(_), b"extension") => ring_group(),
            (Event::DialEnded(_), b"group") => to_mobile(Vec::new()),
            _ => Step::finish(),
        }
    }
}

pbx_sdk_call_handler::export_call_handler!(OfficeHours);
