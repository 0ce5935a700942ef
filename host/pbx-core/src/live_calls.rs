//! What an operator may ask of a shard's calls: list them, and end one.
//!
//! A call is named by the caller's Call-ID (its A leg), the identifier the
//! caller's phone and the call record both show. Both operations take the
//! tenant, so one tenant can never see or end another's call.

use std::time::Instant;

use model::TenantId;

use crate::call::State;
use crate::{Output, Shard};

/// A call in progress, as listed to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    pub tenant: TenantId,
    /// The caller's Call-ID.
    pub call_id: String,
    pub caller: String,
    /// What the caller dialled.
    pub callee: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds; `None` while it rings.
    pub answered_at_ms: Option<i64>,
}

/// Who a call record says ended a call the host ended.
const HANGUP_BY: &str = "system";

impl Shard {
    /// The calls this shard holds that have not ended, oldest first (each names
    /// its tenant; callers filter).
    pub fn calls(&self) -> Vec<CallSummary> {
        let mut list: Vec<CallSummary> = self
            .calls
            .values()
            .filter(|c| c.state != State::Ended)
            .map(|c| CallSummary {
                tenant: c.tenant,
                call_id: c.a.call_id.clone(),
                caller: c.caller.clone(),
                callee: c.callee.clone(),
                started_at_ms: c.started_ms,
                answered_at_ms: c.answered_ms,
            })
            .collect();
        list.sort_by(|x, y| (x.started_at_ms, &x.call_id).cmp(&(y.started_at_ms, &y.call_id)));
        list
    }

    /// Ends the call of `tenant` whose caller's Call-ID is `call_id`: BYE to both
    /// legs when answered; CANCEL to the callee and 487 to the caller while it
    /// is routed or rings. `false` when this shard has no such live call.
    pub fn hang_up_call(&mut self, now: Instant, tenant: TenantId, call_id: &str) -> bool {
        let Some((&id, state)) = self
            .calls
            .iter()
            .find(|(_, c)| c.tenant == tenant && c.a.call_id == call_id)
            .map(|(id, c)| (id, c.state))
        else {
            return false;
        };
        match state {
            State::Answered => self.hang_up(now, id, "ended by an operator"),
            State::Routing | State::Ringing => {
                let queued = self.out.len();
                self.cancel_call(now, id);
                // The record of a cancelled call names the caller; this one was
                // ended by the host.
                for output in self.out.iter_mut().skip(queued) {
                    if let Output::Cdr(cdr) = output {
                        cdr.hangup_by = HANGUP_BY.to_owned();
                    }
                }
            }
            State::Ended => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use model::{Directory, Disposition, Tenant, TenantStatus, TransportKind};

    use super::*;
    use crate::msg::Msg;
    use crate::{CoreConfig, Inbound, Peer, RouteDecision, Routing, Shared, TrunkEntry, Trunks};

    const CARRIER: &str = "127.0.0.1:9000";
    const TENANT: TenantId = TenantId(1);

    struct Rig {
        shard: Shard,
        now: Instant,
        sent: Vec<Msg>,
        cdrs: Vec<model::Cdr>,
    }

    fn carrier_peer() -> Peer {
        Peer {
            transport: TransportKind::Udp,
            addr: CARRIER.parse().unwrap(),
            conn: None,
        }
    }

    /// A shard whose tenant has a trunk and a DID: a call in from the trunk to
    /// the DID needs no digest, and the decision sends it back out the trunk.
    fn rig() -> Rig {
        let now = Instant::now();
        let directory = Directory {
            tenants: vec![Tenant {
                id: TENANT,
                name: "acme".into(),
                status: TenantStatus::Active,
                realm: "acme.example".into(),
                domains: vec!["acme.example".into()],
                media_encryption: Default::default(),
                digest: None,
            }],
            extensions: Vec::new(),
            acls: Vec::new(),
        };
        let config = CoreConfig {
            routing: Routing::External {
                timeout: std::time::Duration::from_secs(2),
            },
            ..CoreConfig::default()
        };
        let shared = Shared::new(config, directory, Vec::new(), (now, 1_000_000), 1);
        shared.replace_trunks(Trunks::new(
            vec![TrunkEntry {
                tenant: TENANT,
                name: "carrier".into(),
                peer: carrier_peer(),
                host: "carrier.example".into(),
                port: 9000,
                username: None,
                password: None,
            }],
            vec![("+15550001".into(), TENANT)],
        ));
        Rig {
            shard: Shard::new(0, Arc::clone(&shared)),
            now,
            sent: Vec::new(),
            cdrs: Vec::new(),
        }
    }

    impl Rig {
        fn feed(&mut self, text: &str) {
            let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
            self.shard.handle(
                self.now,
                Inbound::new(carrier_peer(), local, Bytes::from(text.to_owned())),
            );
            self.drain();
        }

        fn drain(&mut self) {
            while let Some(o) = self.shard.poll_output() {
                match o {
                    Output::Transmit { bytes, .. } => {
                        self.sent.push(Msg::parse(&bytes).expect("valid SIP"));
                    }
                    Output::Route(req) => {
                        let decision = RouteDecision::trunk("carrier", "15551234567");
                        self.shard.route_decided(self.now, req.call, decision);
                    }
                    Output::Cdr(cdr) => self.cdrs.push(cdr),
                    Output::Registration(_)
                    | Output::Answered(_)
                    | Output::AuthFailure { .. }
                    | Output::Authenticated { .. }
                    | Output::Forward { .. } => {}
                }
            }
        }

        /// An inbound call that is now ringing out the trunk; returns the
        /// outbound INVITE.
        fn ringing_call(&mut self) -> Msg {
            self.feed(
                "INVITE sip:+15550001@pbx.example SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.1:9000;branch=z9hG4bKin1\r\n\
                 From: <sip:+4930123456@carrier.example>;tag=c\r\n\
                 To: <sip:+15550001@pbx.example>\r\nCall-ID: in-1\r\nCSeq: 1 INVITE\r\n\
                 Contact: <sip:c@127.0.0.1:9000>\r\nContent-Length: 0\r\n\r\n",
            );
            self.drain();
            let invite = self
                .sent
                .iter()
                .find(|m| m.method() == Some(crate::msg::Method::Invite))
                .expect("INVITE out the trunk")
                .clone();
            let ringing = reply(&invite, 180, "Ringing");
            self.feed(&ringing);
            invite
        }
    }

    fn reply(invite: &Msg, status: u16, reason: &str) -> String {
        let mut s = format!("SIP/2.0 {status} {reason}\r\n");
        for v in invite.headers_named("Via") {
            s.push_str(&format!("Via: {v}\r\n"));
        }
        s.push_str(&format!(
            "From: {}\r\nTo: {};tag=far\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             Contact: <sip:far@127.0.0.1:9000>\r\nContent-Length: 0\r\n\r\n",
            invite.header("From").unwrap(),
            invite.header("To").unwrap(),
            invite.call_id(),
            invite.header("CSeq").unwrap()
        ));
        s
    }

    #[test]
    fn a_ringing_call_is_listed_and_cancelled_for_its_tenant_only() {
        let mut r = rig();
        assert!(r.shard.calls().is_empty());
        r.ringing_call();
        let calls = r.shard.calls();
        assert_eq!(calls.len(), 1);
        let c = &calls[0];
        assert_eq!((c.tenant, c.call_id.as_str()), (TENANT, "in-1"));
        assert_eq!(c.caller, "+4930123456");
        assert_eq!(c.answered_at_ms, None);

        assert!(!r.shard.hang_up_call(r.now, TenantId(2), "in-1"));
        assert!(!r.shard.hang_up_call(r.now, TENANT, "no-such-call"));
        r.sent.clear();
        assert!(r.shard.hang_up_call(r.now, TENANT, "in-1"));
        r.drain();
        assert!(
            r.sent
                .iter()
                .any(|m| m.method() == Some(crate::msg::Method::Cancel))
        );
        assert!(r.sent.iter().any(|m| m.status() == Some(487)));
        assert!(r.shard.calls().is_empty(), "an ended call is not listed");
        assert_eq!(r.cdrs.len(), 1);
        assert_eq!(r.cdrs[0].disposition, Disposition::Cancelled);
        assert_eq!(r.cdrs[0].hangup_by, HANGUP_BY);
        assert!(
            !r.shard.hang_up_call(r.now, TENANT, "in-1"),
            "only once, though it lingers"
        );
    }

    #[test]
    fn an_answered_call_gets_bye_on_both_legs() {
        let mut r = rig();
        let invite = r.ringing_call();
        r.feed(&reply(&invite, 200, "OK"));
        let calls = r.shard.calls();
        assert!(calls[0].answered_at_ms.is_some(), "{calls:?}");
        r.sent.clear();
        assert!(r.shard.hang_up_call(r.now, TENANT, "in-1"));
        r.drain();
        let byes = r
            .sent
            .iter()
            .filter(|m| m.method() == Some(crate::msg::Method::Bye))
            .count();
        assert_eq!(byes, 2);
        assert_eq!(r.cdrs.len(), 1);
        assert_eq!(r.cdrs[0].disposition, Disposition::Answered);
        assert_eq!(r.cdrs[0].hangup_by, HANGUP_BY);
    }
}
