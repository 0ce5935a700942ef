//! Call pickup: a phone dials [`PICKUP_CODE`] and takes over a call ringing
//! another extension of a ring group it shares.
//!
//! Calls live in the shard their Call-ID hashes to, so the ringing call and
//! the picker's INVITE usually meet in different shards. Three pieces of
//! shared state join them:
//! - the [`Board`] of extensions being rung, by tenant: which shard and call
//!   rings each (kept by the ringing call's shard, a hint checked again by
//!   that shard before it acts);
//! - the picker's INVITE, once authenticated, is handed to the ringing call's
//!   shard with the identity it proved ([`Handoff`]), and its Call-ID is
//!   pinned there, so that its retransmissions, ACK and BYE follow it
//!   ([`crate::Shared::shard_for`]);
//! - ring groups are the tenant's, read through [`PickupGroups`], which the
//!   host provides.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use model::TenantId;
use parking_lot::Mutex;
use transaction::Key;

use crate::call::{Leg, Retransmit, State, token};
use crate::media;
use crate::msg::{Msg, NameAddr};
use crate::shard::{ALLOW, ReqCtx};
use crate::{Error, Inbound, Output, Peer, Shard};

/// What a phone dials to pick up a call ringing in one of its ring groups.
pub const PICKUP_CODE: &str = "*8";

/// Most extensions listed as ringing per tenant (bounded by its calls).
const MAX_RINGING_PER_TENANT: usize = 4096;
/// Most pinned Call-IDs per tenant, and in all.
const MAX_PINS_PER_TENANT: usize = 256;
const MAX_PINS: usize = 16_384;

/// The tenant's ring groups, as the host keeps them.
pub trait PickupGroups: Send + Sync {
    /// The extensions that share a ring group with `extension` (itself
    /// excluded).
    fn mates(&self, tenant: TenantId, extension: &str) -> Vec<String>;
}

/// A picker's INVITE handed to the shard of the call it picks up, with the
/// identity its digest proved. Only the core makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub(crate) tenant: TenantId,
    pub(crate) extension: String,
}

/// One extension being rung by one call.
#[derive(Debug, Clone)]
pub(crate) struct Ringing {
    pub(crate) extension: String,
    pub(crate) shard: usize,
    pub(crate) call: u64,
}

/// A Call-ID pinned to a shard.
#[derive(Debug, Clone, Copy)]
struct Pin {
    shard: usize,
    tenant: TenantId,
    since_ms: i64,
}

/// Who rings where, and which Call-IDs follow a handed-over INVITE.
#[derive(Default)]
pub(crate) struct Board {
    /// Per tenant, in the order calls started ringing them (oldest first).
    ringing: Mutex<HashMap<TenantId, Vec<Ringing>>>,
    pins: Mutex<HashMap<Box<[u8]>, Pin>>,
    /// How many pins there are, read without the lock on every message.
    pin_count: AtomicUsize,
    groups: std::sync::OnceLock<std::sync::Arc<dyn PickupGroups>>,
}

impl Board {
    pub(crate) fn set_groups(&self, groups: std::sync::Arc<dyn PickupGroups>) -> bool {
        self.groups.set(groups).is_ok()
    }

    /// The extensions `extension` may pick up from.
    pub(crate) fn mates(&self, tenant: TenantId, extension: &str) -> Vec<String> {
        self.groups
            .get()
            .map(|g| g.mates(tenant, extension))
            .unwrap_or_default()
    }

    /// Call `call` of `shard` now rings `extensions` (replacing what it rang).
    pub(crate) fn set_ringing(
        &self,
        tenant: TenantId,
        shard: usize,
        call: u64,
        extensions: &[String],
    ) {
        let mut all = self.ringing.lock();
        let list = all.entry(tenant).or_default();
        list.retain(|r| !(r.shard == shard && r.call == call));
        for extension in extensions {
            if list.len() >= MAX_RINGING_PER_TENANT {
                break;
            }
            list.push(Ringing {
                extension: extension.clone(),
                shard,
                call,
            });
        }
        if list.is_empty() {
            all.remove(&tenant);
        }
    }

    /// Call `call` of `shard` rings nobody any more.
    pub(crate) fn clear_ringing(&self, tenant: TenantId, shard: usize, call: u64) {
        let mut all = self.ringing.lock();
        if let Some(list) = all.get_mut(&tenant) {
            list.retain(|r| !(r.shard == shard && r.call == call));
            if list.is_empty() {
                all.remove(&tenant);
            }
        }
    }

    /// The calls ringing one of `mates`, oldest first, optionally only those
    /// of `shard`.
    pub(crate) fn ringing_among(
        &self,
        tenant: TenantId,
        mates: &[String],
        shard: Option<usize>,
    ) -> Vec<Ringing> {
        let all = self.ringing.lock();
        all.get(&tenant)
            .map(|list| {
                list.iter()
                    .filter(|r| mates.contains(&r.extension))
                    .filter(|r| shard.is_none_or(|s| s == r.shard))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pins `call_id` to `shard`; `false` when the tenant or the host has
    /// too many pins already.
    pub(crate) fn pin(&self, call_id: &str, shard: usize, tenant: TenantId, now_ms: i64) -> bool {
        let mut pins = self.pins.lock();
        if pins.len() >= MAX_PINS
            || pins.values().filter(|p| p.tenant == tenant).count() >= MAX_PINS_PER_TENANT
        {
            return false;
        }
        pins.insert(
            call_id.as_bytes().into(),
            Pin {
                shard,
                tenant,
                since_ms: now_ms,
            },
        );
        self.pin_count.store(pins.len(), Ordering::Release);
        true
    }

    /// Whether any Call-ID is pinned (one atomic load).
    pub(crate) fn any_pins(&self) -> bool {
        self.pin_count.load(Ordering::Acquire) > 0
    }

    /// The shard `call_id` is pinned to.
    pub(crate) fn pinned(&self, call_id: &[u8]) -> Option<usize> {
        if self.pin_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.pins.lock().get(call_id).map(|p| p.shard)
    }

    /// Drops the pins of `shard` older than `max_age_ms` whose Call-ID
    /// `in_use` no longer names a dialog.
    pub(crate) fn sweep_pins(
        &self,
        shard: usize,
        now_ms: i64,
        max_age_ms: i64,
        in_use: impl Fn(&str) -> bool,
    ) {
        if self.pin_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut pins = self.pins.lock();
        pins.retain(|id, p| {
            p.shard != shard
                || now_ms - p.since_ms < max_age_ms
                || std::str::from_utf8(id).is_ok_and(&in_use)
        });
        self.pin_count.store(pins.len(), Ordering::Release);
    }
}

impl Shard {
    /// The shard other than this one that the message's Call-ID is pinned to.
    pub(crate) fn pinned_elsewhere(&self, bytes: &[u8]) -> Option<usize> {
        if !self.shared.pickup.any_pins() {
            return None;
        }
        let call_id = sip::peek_call_id(bytes)?;
        let shard = self.shared.pickup.pinned(call_id)? % self.shared.shards();
        (shard != self.index).then_some(shard)
    }

    /// An authenticated phone of `tenant` dialled [`PICKUP_CODE`]: picks up
    /// here, or hands the INVITE to the shard of the call it picks up.
    #[allow(clippy::too_many_arguments, reason = "one request and its origin")]
    pub(crate) fn on_pickup_code(
        &mut self,
        now: Instant,
        msg: Msg,
        bytes: &Bytes,
        (peer, local): (Peer, SocketAddr),
        key: Key,
        tenant: TenantId,
        extension: String,
    ) {
        let mates = self.shared.pickup.mates(tenant, &extension);
        let ringing = self.shared.pickup.ringing_among(tenant, &mates, None);
        let handoff = Handoff { tenant, extension };
        let Some(elsewhere) = ringing.first().map(|r| r.shard) else {
            self.refuse(&msg, peer, local, &Error::NothingToPickUp, &[]);
            return;
        };
        if ringing.iter().any(|r| r.shard == self.index) || elsewhere >= self.shared.shards() {
            self.pick_up(now, msg, peer, local, key, handoff);
            return;
        }
        let now_ms = self.shared.unix_ms(now);
        if !self
            .shared
            .pickup
            .pin(msg.call_id(), elsewhere, tenant, now_ms)
        {
            self.refuse(&msg, peer, local, &Error::ServiceUnavailable, &[]);
            return;
        }
        tracing::debug!(to = elsewhere, "pickup handed to the ringing call's shard");
        let mut inbound = Inbound::new(peer, local, bytes.clone());
        inbound.handoff = Some(handoff);
        self.out.push_back(Output::Forward {
            shard: elsewhere,
            inbound,
        });
    }

    /// Picks up, for the phone whose INVITE `msg` is (its identity proven as
    /// `handoff`), the oldest call of this shard ringing one of its group
    /// mates: the ringing phones are cancelled, the caller is answered (if
    /// the host had not answered it already) and the two are connected
    /// through the call's media.
    pub(crate) fn pick_up(
        &mut self,
        now: Instant,
        msg: Msg,
        peer: Peer,
        local: SocketAddr,
        key: Key,
        handoff: Handoff,
    ) {
        let Handoff { tenant, extension } = handoff;
        if self.dialogs.contains_key(msg.call_id()) {
            self.refuse(&msg, peer, local, &Error::LoopDetected, &[]);
            return;
        }
        let mates = self.shared.pickup.mates(tenant, &extension);
        let found = self
            .shared
            .pickup
            .ringing_among(tenant, &mates, Some(self.index))
            .into_iter()
            .find_map(|r| {
                let call = self.calls.get(&r.call)?;
                let rings = call.tenant == tenant
                    && call.state == State::Ringing
                    && !call.cancelled
                    && call.forks[call.step_start..].iter().any(|f| {
                        f.final_status.is_none() && f.extension.as_deref() == Some(&r.extension)
                    });
                rings.then_some((r.call, r.extension))
            });
        let Some((id, rung)) = found else {
            self.refuse(&msg, peer, local, &Error::NothingToPickUp, &[]);
            return;
        };
        let ctx = ReqCtx::new(&msg, peer.addr);
        let trying = ctx
            .response(100, "Trying", None, self.user_agent())
            .finish(None);
        self.respond_new_server(now, key.clone(), true, peer, local, None, 100, trying);

        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let picker_offer = msg
            .content()
            .filter(|(ct, body)| media::is_sdp(ct) && !body.is_empty());
        let caller_offer = call
            .caller_offer
            .as_ref()
            .filter(|(ct, body)| media::is_sdp(ct) && !body.is_empty());
        let caller = match (&call.host_answer, caller_offer) {
            (Some(_), _) => Some(None),
            (None, Some((_, sdp))) => Some(Some((&sdp[..], call.a.peer.transport.is_secure()))),
            (None, None) => None,
        };
        let answers = match (call.media.as_ref(), caller, picker_offer) {
            (Some(handle), Some(caller), Some((_, offer))) => handle
                .answer_pickup(caller, offer, peer.transport.is_secure(), call.media_policy)
                .map_err(|r| r.error()),
            _ => Err(Error::NoOfferToAnswer),
        };
        let (to_caller, to_picker) = match answers {
            Ok(answers) => answers,
            Err(error) => {
                tracing::info!(call = id, %error, "pickup refused");
                let bytes = ctx.refusal(&error, self.user_agent()).finish(None);
                self.respond(now, &key, error.status(), bytes);
                return;
            }
        };

        tracing::info!(call = id, picker = %extension, rang = %rung, "call picked up");
        self.shared.pickup.clear_ringing(tenant, self.index, id);
        self.cancel_forks(now, id, None);
        let now_ms = self.shared.unix_ms(now);
        let (t1, max) = (self.shared.config.t1, self.shared.config.max_call_duration);
        let from = msg.from().ok();
        let picker_leg = Leg {
            call_id: msg.call_id().to_string(),
            local_tag: token(8),
            remote_tag: from.as_ref().and_then(|f| f.tag().map(str::to_string)),
            local_uri: msg.to().map(|t| t.addr.to_string()).unwrap_or_default(),
            remote_uri: from.map(|f| f.addr.to_string()).unwrap_or_default(),
            remote_target: msg
                .header("Contact")
                .map(|c| NameAddr::parse(c).uri.to_string())
                .unwrap_or_default(),
            // As the UAS of the picker's dialog: its Record-Route in order.
            route_set: msg
                .headers_named("Record-Route")
                .map(str::to_string)
                .collect(),
            peer,
            local: Some(local),
            cseq: 0,
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.state = State::Answered;
        let answered_now = call.host_answer.take().is_none();
        if answered_now {
            call.answered_ms = Some(now_ms);
            call.max_deadline = Some(now + max);
        } else {
            // Answered by the host before it rang: the call keeps its answer
            // time and its duration limit.
            call.app = None;
        }
        call.answered_by = Some(extension);
        call.tags.push(format!("picked-up-from:{rung}"));
        let old_b = std::mem::replace(&mut call.b, picker_leg.clone());
        call.other_dialogs.push(old_b.call_id);
        self.dialogs.insert(picker_leg.call_id.clone(), id);
        if let Some(server) = self.servers.get_mut(&key) {
            server.call = Some(id);
        }
        if answered_now {
            self.announce_answered(id);
        }

        if let Some(sdp) = to_caller {
            let ok = self.answer_a(now, id, 200, "OK", Some(("application/sdp", &sdp)));
            if let (Some(ok), Some(call)) = (ok, self.calls.get_mut(&id)) {
                call.ok_retransmit = Some(Box::new(Retransmit::new(ok, now, t1)));
            }
        }
        let mut w = ctx.response(200, "OK", Some(&picker_leg.local_tag), self.user_agent());
        w.header("Contact", self.contact(peer.transport, Some(local)))
            .header("Allow", ALLOW);
        let ok = w.finish(Some(("application/sdp", &to_picker)));
        self.respond(now, &key, 200, ok.clone());
        if let Some(call) = self.calls.get_mut(&id) {
            call.picker_ok = Some(Box::new(Retransmit::new(ok, now, t1)));
            // As for any answered call: the tenant's call recording (and its
            // notice) starts here.
            if let Some(media) = call.media.as_ref() {
                media.connected(&call.caller, &call.callee);
            }
        }
        self.schedule_call(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringing_is_listed_per_tenant_and_call_oldest_first() {
        let board = Board::default();
        let (t1, t2) = (TenantId(1), TenantId(2));
        board.set_ringing(t1, 0, 7, &["1001".into(), "1002".into()]);
        board.set_ringing(t1, 1, 9, &["1002".into()]);
        board.set_ringing(t2, 1, 3, &["1002".into()]);
        let mates = vec!["1002".to_string()];
        let found = board.ringing_among(t1, &mates, None);
        assert_eq!(
            found.iter().map(|r| (r.shard, r.call)).collect::<Vec<_>>(),
            vec![(0, 7), (1, 9)]
        );
        assert_eq!(board.ringing_among(t1, &mates, Some(1)).len(), 1);
        // A new step replaces what the call rang; clearing forgets it.
        board.set_ringing(t1, 0, 7, &["1003".into()]);
        assert_eq!(board.ringing_among(t1, &mates, None).len(), 1);
        board.clear_ringing(t1, 1, 9);
        assert!(board.ringing_among(t1, &mates, None).is_empty());
        assert_eq!(board.ringing_among(t2, &mates, None).len(), 1);
    }

    #[test]
    fn pins_are_bounded_per_tenant_and_swept_when_unused() {
        let board = Board::default();
        let t = TenantId(1);
        assert_eq!(board.pinned(b"a"), None);
        assert!(board.pin("a", 1, t, 0));
        assert_eq!(board.pinned(b"a"), Some(1));
        for i in 1..MAX_PINS_PER_TENANT {
            assert!(board.pin(&format!("c{i}"), 1, t, 0));
        }
        assert!(
            !board.pin("one-more", 1, t, 0),
            "the tenant's share is full"
        );
        assert!(
            board.pin("other", 0, TenantId(2), 0),
            "another tenant still pins"
        );
        // Young pins and pins of dialogs in use stay; the rest go.
        board.sweep_pins(1, 10, 100, |_| false);
        assert_eq!(board.pinned(b"a"), Some(1));
        board.sweep_pins(1, 1_000, 100, |id| id == "a");
        assert_eq!(board.pinned(b"a"), Some(1));
        assert_eq!(board.pinned(b"c1"), None);
        assert_eq!(board.pinned(b"other"), Some(0), "another shard's pin");
    }
}
