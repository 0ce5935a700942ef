//! Blind transfer by REFER (RFC 3515) from the phone that answered a call.
//!
//! The host carries the transfer out itself rather than relaying the REFER to
//! the other party: the phone that answered (an extension of the call's
//! tenant) sends REFER with a `Refer-To` naming the new target; the host
//! checks it (the transferor is that extension, `Referred-By` when present
//! names the same extension in one of the tenant's domains, RFC 3892), accepts
//! with 202, and asks for a routing decision for the target, exactly like a
//! new leg of the call: the dial plan, the destination check, every provider
//! and tenant policy and the admission see it, so toll fraud cannot hide
//! behind a transfer. The transferor hears how it went in NOTIFYs carrying a
//! `message/sipfrag` status line (100 Trying, then the target's final status
//! or the refusal).
//!
//! While the target rings the caller stays connected to the host (its media
//! anchored at the relay); when the target answers, its answer is passed
//! through the call's media, the transferor's leg is ended with BYE and the
//! target's leg takes its place. When the transfer fails the transferor's leg
//! is left as it was (if the transferor already hung up, the caller is hung up
//! too). Only the answering side (the callee) can transfer; a REFER from the
//! caller's side gets 501, and an attended transfer (`Replaces`) too.

use std::time::{Duration, Instant};

use crate::call::{ClientRole, Leg, Side, State, token};
use crate::msg::{Method, Msg, NameAddr, SipUri};
use crate::shard::ReqCtx;
use crate::{CallEvent, Error, MAX_CALL_STEPS, Output, Peer, RouteDecision, Routing, Shard};

/// A transfer in progress on an answered call.
#[derive(Debug, Clone)]
pub(crate) struct Transfer {
    /// The target's user part, as the REFER named it.
    pub(crate) target: String,
    /// Waiting for the routing decision (else its leg is ringing).
    pub(crate) deciding: bool,
    /// The first fork placed for the target (forks before it belong to the
    /// call's own attempts).
    pub(crate) first_fork: usize,
    /// The template of the target's leg (a new dialog of the host).
    pub(crate) leg: Leg,
    /// When the attempt gives up.
    pub(crate) deadline: Instant,
    /// The transferor hung up meanwhile (no more NOTIFYs; a failure then
    /// ends the call).
    pub(crate) transferor_gone: bool,
}

/// A dial attempt's own timeout within the host's ring timeout (zero: the
/// ring timeout).
pub(crate) fn bounded_ring(timeout: Duration, ring_timeout: Duration) -> Duration {
    if timeout.is_zero() {
        ring_timeout
    } else {
        timeout.min(ring_timeout)
    }
}

/// How long a transfer waits for its routing decision or its target.
fn give_up_after(ring_timeout: Duration, routing: Routing) -> Duration {
    match routing {
        Routing::External { timeout } => timeout.max(ring_timeout),
        Routing::Builtin => ring_timeout,
    }
}

impl Shard {
    /// A REFER in the dialog of answered call `id`, from `side`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the request and where it came from"
    )]
    pub(crate) fn on_refer(
        &mut self,
        now: Instant,
        id: u64,
        side: Side,
        msg: &Msg,
        ctx: &ReqCtx,
        (peer, local, key): (Peer, std::net::SocketAddr, transaction::Key),
    ) {
        let reply = |shard: &mut Shard, status: u16, reason: &str| {
            let bytes = ctx
                .response(status, reason, None, shard.user_agent())
                .finish(None);
            shard.respond_new_server(
                now,
                key.clone(),
                false,
                peer,
                local,
                Some(id),
                status,
                bytes,
            );
        };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let refer_to = msg
            .header("Refer-To")
            .map(NameAddr::parse)
            .map(|n| n.uri.to_string());
        if side == Side::A {
            return reply(self, 501, "Transfer By The Caller Not Supported");
        }
        let Some(transferor) = call.answered_by.clone() else {
            // A carrier's leg does not transfer the tenant's calls.
            return reply(self, 403, "Forbidden");
        };
        if call.transfer.is_some() {
            return reply(self, 491, "Request Pending");
        }
        let Some(refer_to) = refer_to else {
            return reply(self, 400, "Missing Refer-To");
        };
        if refer_to.contains('?') {
            // `?Replaces=...`: an attended transfer.
            return reply(self, 501, "Attended Transfer Not Supported");
        }
        let Some(target) = SipUri::parse(&refer_to)
            .and_then(|u| u.user.map(str::to_string))
            .filter(|u| !u.is_empty() && u.len() <= 64)
        else {
            return reply(self, 400, "Bad Refer-To");
        };
        if let Some(by) = msg.header("Referred-By") {
            let uri = NameAddr::parse(by).uri.to_string();
            let by = SipUri::parse(&uri);
            let index = self.shared.index();
            let same = by.is_some_and(|u| {
                u.user == Some(transferor.as_str())
                    && index
                        .tenant_for_domain(u.host)
                        .is_some_and(|t| t.id == call.tenant)
            });
            if !same {
                tracing::info!(
                    call = id,
                    "REFER refused: Referred-By is not the transferor"
                );
                return reply(self, 403, "Referred-By Mismatch");
            }
        }
        let steps_used = call.route.as_ref().map_or(1, |r| r.step);
        if steps_used >= MAX_CALL_STEPS {
            return reply(self, 482, "Loop Detected");
        }
        reply(self, 202, "Accepted");

        let ring_timeout = self.shared.config.ring_timeout;
        let routing = self.shared.config.routing;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let leg = Leg {
            call_id: format!("pbx{}-{}", self.index, token(12)),
            local_tag: token(8),
            remote_tag: None,
            local_uri: format!("<sip:{}@{}>", call.caller, call.domain),
            remote_uri: format!("<sip:{target}@{}>", call.domain),
            remote_target: String::new(),
            route_set: Vec::new(),
            peer: call.b.peer,
            local: None,
            cseq: 0,
        };
        call.transfer = Some(Box::new(Transfer {
            target: target.clone(),
            deciding: true,
            first_fork: call.forks.len(),
            leg,
            deadline: now + give_up_after(ring_timeout, routing),
            transferor_gone: false,
        }));
        tracing::info!(call = id, %transferor, %target, "blind transfer requested");
        self.notify_transfer(now, id, 100, "Trying", false);
        match routing {
            Routing::Builtin => {
                let tenant = call_tenant(self, id);
                let decision = match tenant {
                    Some(t) if self.shared.index().extension(t, &target).is_some() => {
                        RouteDecision::Ring(vec![crate::RingStep {
                            extensions: vec![target],
                            timeout: ring_timeout,
                        }])
                    }
                    _ => RouteDecision::reject(404, "Not Found"),
                };
                self.transfer_decided(now, id, decision);
            }
            Routing::External { .. } => {
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                let answer_by = call.transfer.as_ref().map(|t| t.deadline);
                let Some(request) = call.route.as_mut() else {
                    return;
                };
                request.step += 1;
                request.answer_by = answer_by;
                request.event = CallEvent::TransferRequested;
                request.dialled = target;
                request.caller = transferor.clone();
                request.caller_extension = Some(transferor);
                let request = request.clone();
                self.out.push_back(Output::Route(*request));
                self.schedule_call(id);
            }
        }
    }

    /// The routing decision for call `id`'s transfer target.
    pub(crate) fn transfer_decided(&mut self, now: Instant, id: u64, decision: RouteDecision) {
        let ring_timeout = self.shared.config.ring_timeout;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(transfer) = call.transfer.as_mut() else {
            return;
        };
        transfer.deciding = false;
        let tenant = call.tenant;
        let (extensions, timeout): (Vec<String>, Duration) = match decision {
            RouteDecision::Reject { status, reason } => {
                return self.transfer_failed(now, id, status, &reason);
            }
            RouteDecision::Finish | RouteDecision::Answer { .. } | RouteDecision::Media(_) => {
                let e = Error::TemporarilyUnavailable;
                return self.transfer_failed(now, id, e.status(), e.reason());
            }
            RouteDecision::Ring(steps) => {
                // The first step with a registered phone rings, for its
                // timeout; a transfer has no further steps.
                let now_ms = self.shared.unix_ms(now);
                let step = steps.into_iter().find(|s| {
                    s.extensions
                        .iter()
                        .any(|e| !self.shared.bindings.lookup(tenant, e, now_ms).is_empty())
                });
                match step {
                    Some(s) => (s.extensions, s.timeout),
                    None => {
                        let e = Error::TemporarilyUnavailable;
                        return self.transfer_failed(now, id, e.status(), e.reason());
                    }
                }
            }
            RouteDecision::Trunk {
                trunk,
                number,
                timeout,
                caller_id,
            } => {
                let trunks = self.shared.trunks();
                if caller_id
                    .as_deref()
                    .is_some_and(|c| !trunks.owns_number(tenant, c))
                {
                    let e = Error::CallerIdNotOwned;
                    return self.transfer_failed(now, id, e.status(), e.reason());
                }
                let Some(entry) = trunks.get(tenant, &trunk).cloned() else {
                    let e = Error::TrunkUnavailable;
                    return self.transfer_failed(now, id, e.status(), e.reason());
                };
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                let Some(transfer) = call.transfer.as_mut() else {
                    return;
                };
                let presented = caller_id.unwrap_or_else(|| call.caller.clone());
                Shard::aim_at_trunk(&mut transfer.leg, &entry, &number, &presented);
                transfer.leg.cseq = 1;
                transfer.deadline = now + bounded_ring(timeout, ring_timeout);
                transfer.first_fork = call.forks.len();
                let leg = transfer.leg.clone();
                let call_id = leg.call_id.clone();
                call.other_dialogs.push(call_id.clone());
                self.dialogs.insert(call_id, id);
                self.send_fork(now, id, &leg, None);
                self.schedule_call(id);
                return;
            }
        };
        let now_ms = self.shared.unix_ms(now);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(transfer) = call.transfer.as_mut() else {
            return;
        };
        transfer.deadline = now + bounded_ring(timeout, ring_timeout);
        transfer.first_fork = call.forks.len();
        transfer.leg.cseq = 1;
        let template = transfer.leg.clone();
        call.other_dialogs.push(template.call_id.clone());
        self.dialogs.insert(template.call_id.clone(), id);
        let index = self.shared.index();
        let domain = call_domain(self, id);
        for ext in extensions {
            if index.extension(tenant, &ext).is_none() {
                continue;
            }
            let bindings = self.shared.bindings.lookup(tenant, &ext, now_ms);
            self.fork_to_extension(now, id, &template, &domain, &ext, bindings);
        }
        self.schedule_call(id);
    }

    /// Whether call `id` has a transfer in progress.
    pub(crate) fn transferring(&self, id: u64) -> bool {
        self.calls.get(&id).is_some_and(|c| c.transfer.is_some())
    }

    /// Drops call `id`'s transfer (the call is ending): its forks are
    /// cancelled, and a transferor that already hung up is not sent a BYE.
    pub(crate) fn abandon_transfer(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(transfer) = call.transfer.take() else {
            return;
        };
        call.transferor_left |= transfer.transferor_gone;
        if !transfer.deciding {
            let n = call.forks.len();
            for f in transfer.first_fork..n {
                self.send_cancel(now, id, f);
            }
        }
    }

    /// Whether fork `i` of call `id` belongs to its transfer.
    pub(crate) fn is_transfer_fork(&self, id: u64, i: usize) -> bool {
        self.calls.get(&id).is_some_and(|c| {
            c.state == State::Answered
                && c.transfer
                    .as_ref()
                    .is_some_and(|t| !t.deciding && i >= t.first_fork)
        })
    }

    /// A response to one of the transfer's forks.
    pub(crate) fn on_transfer_response(&mut self, now: Instant, id: u64, i: usize, msg: &Msg) {
        let status = msg.status().unwrap_or(0);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(fork) = call.forks.get_mut(i) else {
            return;
        };
        if status < 200 {
            fork.provisional = true;
            if fork.cancel_pending {
                self.send_cancel(now, id, i);
            }
            return;
        }
        fork.final_status = Some(status);
        if status < 300 {
            return self.transfer_answered(now, id, i, msg);
        }
        let Some(transfer) = call.transfer.as_ref() else {
            return;
        };
        let all_failed = call.forks[transfer.first_fork..]
            .iter()
            .all(|f| f.final_status.is_some());
        if all_failed {
            self.transfer_failed(now, id, status, msg.reason());
        }
    }

    /// The target answered: it replaces the transferor.
    fn transfer_answered(&mut self, now: Instant, id: u64, i: usize, msg: &Msg) {
        let rewritten = self.fork_sdp(id, i, msg);
        if let Err(refusal) = &rewritten {
            tracing::info!(call = id, reason = %refusal.reason, "transfer target's SDP refused");
            self.drop_late_answer(now, id, i, msg);
            self.cancel_forks(now, id, Some(i));
            return self.transfer_failed(now, id, refusal.status, &refusal.reason);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(transfer) = call.transfer.take() else {
            return;
        };
        let fork = call.forks[i].clone();
        let old_b = std::mem::replace(
            &mut call.b,
            crate::call::answered_leg(&transfer.leg, &fork, msg),
        );
        call.answered_by = fork.extension.clone();
        call.other_dialogs.push(old_b.call_id.clone());
        let new_b = call.b.clone();
        // Acknowledge the target's 2xx (the offer was in our INVITE).
        let branch = transaction::new_branch();
        let (ack, _) = self.leg_request(&new_b, Method::Ack, new_b.cseq, &branch, None, None);
        if let Some(call) = self.calls.get_mut(&id) {
            call.b_ack = Some(ack.clone());
        }
        self.transmit(new_b.peer, new_b.local, ack);
        // Stop the other forks of the transfer (not the answered one).
        let first = transfer.first_fork;
        let n = self.calls.get(&id).map_or(0, |c| c.forks.len());
        for f in first..n {
            if f != i {
                self.send_cancel(now, id, f);
            }
        }
        tracing::info!(call = id, target = %transfer.target, "transfer completed");
        if !transfer.transferor_gone {
            self.send_notify(now, id, &old_b, 200, "OK", true);
            self.send_bye_on(now, &old_b);
        }
        self.schedule_call(id);
    }

    /// The transfer did not happen: the transferor hears why; the call goes
    /// on as it was, or ends if the transferor has hung up.
    pub(crate) fn transfer_failed(&mut self, now: Instant, id: u64, status: u16, reason: &str) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(transfer) = call.transfer.take() else {
            return;
        };
        tracing::info!(call = id, target = %transfer.target, status, "transfer failed");
        let status = crate::route::final_status(status);
        if transfer.transferor_gone {
            call.transferor_left = true;
            self.hang_up(now, id, "transfer failed after the transferor hung up");
            return;
        }
        let b = call.b.clone();
        self.send_notify(now, id, &b, status, reason, true);
        self.schedule_call(id);
    }

    /// The transfer's deadline passed: stop its forks and fail it.
    pub(crate) fn transfer_timeout(&mut self, now: Instant, id: u64) {
        let Some(transfer) = self.calls.get(&id).and_then(|c| c.transfer.clone()) else {
            return;
        };
        let n = self.calls.get(&id).map_or(0, |c| c.forks.len());
        if !transfer.deciding {
            for f in transfer.first_fork..n {
                self.send_cancel(now, id, f);
            }
        }
        let e = Error::RequestTimeout;
        self.transfer_failed(now, id, e.status(), e.reason());
    }

    /// A NOTIFY on the transfer's implicit subscription to the transferor's
    /// leg (RFC 3515 §2.4.4).
    fn notify_transfer(&mut self, now: Instant, id: u64, status: u16, reason: &str, last: bool) {
        let Some(b) = self.calls.get(&id).map(|c| c.b.clone()) else {
            return;
        };
        self.send_notify(now, id, &b, status, reason, last);
    }

    fn send_notify(
        &mut self,
        now: Instant,
        id: u64,
        leg: &Leg,
        status: u16,
        reason: &str,
        last: bool,
    ) {
        let mut leg = leg.clone();
        leg.cseq += 1;
        if let Some(call) = self.calls.get_mut(&id)
            && call.b.call_id == leg.call_id
        {
            call.b.cseq = leg.cseq;
        }
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let body = format!("SIP/2.0 {status} {reason}\r\n");
        let branch = transaction::new_branch();
        let extra = [("Event", "refer"), ("Subscription-State", state)];
        let bytes = self.leg_request_with(
            &leg,
            Method::Notify,
            leg.cseq,
            &branch,
            Some(("message/sipfrag;version=2.0", body.as_bytes())),
            &extra,
        );
        self.send_on_leg(now, &leg, branch, bytes, Some(id), ClientRole::Notify);
    }

    /// BYE on a leg that is no longer the call's (the transferor's, whose
    /// last request was the final NOTIFY).
    fn send_bye_on(&mut self, now: Instant, leg: &Leg) {
        let mut leg = leg.clone();
        leg.cseq += 2;
        let branch = transaction::new_branch();
        let (bytes, _) = self.leg_request(&leg, Method::Bye, leg.cseq, &branch, None, None);
        self.send_on_leg(now, &leg, branch, bytes, None, ClientRole::Bye);
    }
}

fn call_tenant(shard: &Shard, id: u64) -> Option<model::TenantId> {
    shard.calls.get(&id).map(|c| c.tenant)
}

fn call_domain(shard: &Shard, id: u64) -> String {
    shard
        .calls
        .get(&id)
        .map(|c| c.domain.clone())
        .unwrap_or_default()
}
