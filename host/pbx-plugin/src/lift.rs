//! A dial plan's decision, lifted out of the guest lazily so that the host
//! bounds what it copies before copying it.
//!
//! Lifting `decision` eagerly copies every string of every ring target; a
//! guest can point 100,000 targets at one 10 MiB string in its own 16 MiB
//! and make the host copy a terabyte. Here the list and strings stay in
//! guest memory ([`WasmList`], [`WasmStr`]) until their counts and lengths
//! are checked: more than [`MAX_RING_TARGETS`] targets or a string over
//! [`MAX_NAME_LEN`] is an invalid decision, and nothing larger than those
//! bounds is ever copied.

use wasmtime::Store;
use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};

use crate::error::InvalidDecision;
use crate::runtime::HostState;
use crate::types::{
    Decision, MAX_RING_TARGETS, MAX_TEXT_LEN, Reject, Ring, RingStrategy, RingTarget, TrunkRoute,
};

/// Longest extension, group or trunk name a decision may carry, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 128;

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct RawRingTarget {
    extension: WasmStr,
    #[component(name = "timeout-secs")]
    timeout_secs: u32,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct RawRing {
    targets: WasmList<RawRingTarget>,
    strategy: RingStrategy,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct RawTrunkRoute {
    trunk: WasmStr,
    number: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct RawReject {
    status: u16,
    reason: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum RawDecision {
    #[component(name = "ring")]
    Ring(RawRing),
    #[component(name = "ring-group")]
    RingGroup(WasmStr),
    #[component(name = "trunk")]
    Trunk(RawTrunkRoute),
    #[component(name = "reject")]
    Reject(RawReject),
}

/// Why a lazily lifted value could not become a decision.
pub(crate) enum LiftError {
    /// Over a bound: an invalid decision.
    Invalid(InvalidDecision),
    /// The guest's memory did not hold what it pointed at.
    Wasm(wasmtime::Error),
}

impl From<InvalidDecision> for LiftError {
    fn from(e: InvalidDecision) -> Self {
        LiftError::Invalid(e)
    }
}

impl From<wasmtime::Error> for LiftError {
    fn from(e: wasmtime::Error) -> Self {
        LiftError::Wasm(e)
    }
}

/// Copies `s` if it is at most `max` bytes; `over` otherwise (with a short
/// prefix of it for the message).
fn text(
    store: &Store<HostState>,
    s: &WasmStr,
    max: usize,
    over: impl FnOnce(String) -> InvalidDecision,
) -> Result<String, LiftError> {
    // UTF-8 strings borrow guest memory here: no copy until the check passed.
    let borrowed = s.to_str(store)?;
    if borrowed.len() > max {
        let mut end = 64.min(borrowed.len());
        while !borrowed.is_char_boundary(end) {
            end -= 1;
        }
        return Err(over(borrowed[..end].escape_debug().to_string()).into());
    }
    Ok(borrowed.into_owned())
}

impl RawDecision {
    /// The decision, with every count and length checked before copying.
    pub(crate) fn into_decision(self, store: &mut Store<HostState>) -> Result<Decision, LiftError> {
        Ok(match self {
            RawDecision::Ring(ring) => {
                let count = ring.targets.len();
                if count > MAX_RING_TARGETS {
                    return Err(InvalidDecision::TooManyTargets(count).into());
                }
                let raw: Vec<RawRingTarget> =
                    ring.targets.iter(&mut *store)?.collect::<Result<_, _>>()?;
                let mut targets = Vec::with_capacity(raw.len());
                for t in raw {
                    targets.push(RingTarget {
                        extension: text(
                            store,
                            &t.extension,
                            MAX_NAME_LEN,
                            InvalidDecision::UnknownExtension,
                        )?,
                        timeout_secs: t.timeout_secs,
                    });
                }
                Decision::Ring(Ring {
                    targets,
                    strategy: ring.strategy,
                })
            }
            RawDecision::RingGroup(name) => Decision::RingGroup(text(
                store,
                &name,
                MAX_NAME_LEN,
                InvalidDecision::UnknownGroup,
            )?),
            RawDecision::Trunk(route) => Decision::Trunk(TrunkRoute {
                trunk: text(
                    store,
                    &route.trunk,
                    MAX_NAME_LEN,
                    InvalidDecision::UnknownTrunk,
                )?,
                number: text(
                    store,
                    &route.number,
                    MAX_TEXT_LEN,
                    InvalidDecision::BadNumber,
                )?,
            }),
            RawDecision::Reject(reject) => Decision::Reject(Reject {
                status: reject.status,
                reason: text(store, &reject.reason, MAX_TEXT_LEN, |_| {
                    InvalidDecision::BadReason
                })?,
            }),
        })
    }
}
