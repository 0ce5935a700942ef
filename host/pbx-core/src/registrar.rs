//! Registrar (RFC 3261 §10.3): contact bindings per address-of-record, shared by
//! every shard.
//!
//! Bindings live in a sharded concurrent map keyed by (tenant, extension), so the
//! same extension number in two tenants is two different address-of-records. Each
//! binding remembers the transport, source address and connection its REGISTER came
//! from: requests to the phone go there (the phone is usually behind NAT).
//! Persistence is the caller's: every change is returned as a
//! [`RegistrationChange`] for the write-behind queue.
//!
//! # Behind a front proxy, and in a cluster
//! A REGISTER that a front proxy (Kamailio) relayed carries the proxy's Path
//! (RFC 3327): the binding keeps it, the 200 OK echoes it, and requests to the
//! phone go to the proxy with the Path as their route set, so the proxy that
//! holds the phone's flow delivers them. Every binding also names the node it
//! was made on ([`RegistrarConfig::node`]); the bindings other nodes made reach
//! this node through the store ([`Bindings::refresh`]) and are used the same
//! way, which lets any node call any phone registered through the front.

use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;
use model::{Registration, RegistrationChange, TenantId, TransportKind};

use crate::msg::{Msg, NameAddr, SipUri};
use crate::{ConnId, Peer, RegistrarConfig};

/// One contact binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) contact: String,
    pub(crate) peer: Peer,
    pub(crate) local: SocketAddr,
    pub(crate) call_id: String,
    pub(crate) cseq: u32,
    pub(crate) expires_at_ms: i64,
    pub(crate) registered_at_ms: i64,
    pub(crate) user_agent: Option<String>,
    /// The Path a front proxy recorded: the route set of requests to the phone.
    pub(crate) path: Vec<String>,
    /// The node the binding was made on.
    pub(crate) node: Arc<str>,
}

impl Binding {
    fn to_record(&self, tenant: TenantId, extension: &str) -> Registration {
        Registration {
            tenant,
            extension: extension.to_string(),
            contact: self.contact.clone(),
            source: self.peer.addr,
            transport: self.peer.transport,
            local: self.local,
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            expires_at_ms: self.expires_at_ms,
            user_agent: self.user_agent.clone(),
            path: self.path.clone(),
            node: self.node.to_string(),
        }
    }

    /// A binding as the store holds it.
    fn from_record(r: Registration) -> (TenantId, String, Binding) {
        let binding = Binding {
            contact: r.contact,
            peer: Peer {
                transport: r.transport,
                addr: r.source,
                conn: None,
            },
            local: r.local,
            call_id: r.call_id,
            cseq: r.cseq,
            expires_at_ms: r.expires_at_ms,
            registered_at_ms: 0,
            user_agent: r.user_agent,
            path: r.path,
            node: r.node.into(),
        };
        (r.tenant, r.extension, binding)
    }
}

/// All bindings of all tenants.
#[derive(Debug, Default)]
pub(crate) struct Bindings {
    map: DashMap<(TenantId, String), Vec<Binding>>,
}

/// What the registrar answers a REGISTER with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// 200 OK listing these contacts with their remaining seconds.
    Ok(Vec<(String, u32)>),
    /// 423 Interval Too Brief with Min-Expires.
    TooBrief(u32),
    /// Any other refusal.
    Error(crate::Error),
}

/// A REGISTER's contact set, read from the message.
enum Request<'a> {
    Fetch,
    RemoveAll,
    Update(Vec<(NameAddr<'a>, u32)>),
}

impl Bindings {
    pub(crate) fn restore(records: Vec<Registration>) -> Bindings {
        let b = Bindings::default();
        for r in records {
            let (tenant, extension, binding) = Binding::from_record(r);
            b.map.entry((tenant, extension)).or_default().push(binding);
        }
        b
    }

    /// Takes in what the store holds for one address-of-record after another
    /// node changed it. This node's own bindings stay as they are in memory
    /// (they may be newer than the store: writes go behind), unless another
    /// node's row for the same contact lasts longer (the phone re-registered
    /// through that node); every other binding is replaced by the store's.
    pub(crate) fn refresh(
        &self,
        tenant: TenantId,
        extension: &str,
        stored: Vec<Registration>,
        own: &str,
        now_ms: i64,
    ) {
        let key = (tenant, extension.to_string());
        let mut list: Vec<Binding> = self
            .map
            .get(&key)
            .map(|v| {
                v.iter()
                    .filter(|b| &*b.node == own && b.expires_at_ms > now_ms)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for r in stored {
            if r.tenant != tenant || r.extension != extension || r.node == own {
                continue;
            }
            let (_, _, theirs) = Binding::from_record(r);
            match list
                .iter()
                .position(|b| same_uri(&b.contact, &theirs.contact))
            {
                Some(i) if list[i].expires_at_ms < theirs.expires_at_ms => list[i] = theirs,
                Some(_) => {}
                None => list.push(theirs),
            }
        }
        if list.is_empty() {
            self.map.remove(&key);
        } else {
            self.map.insert(key, list);
        }
    }

    /// Takes in every binding the store holds (after this node missed some
    /// announcements): each address-of-record held here or there is
    /// refreshed as [`Bindings::refresh`] does.
    pub(crate) fn resync(&self, all: Vec<Registration>, own: &str, now_ms: i64) {
        let mut stored: std::collections::HashMap<(TenantId, String), Vec<Registration>> =
            std::collections::HashMap::new();
        for r in all {
            stored
                .entry((r.tenant, r.extension.clone()))
                .or_default()
                .push(r);
        }
        let held: Vec<(TenantId, String)> = self.map.iter().map(|e| e.key().clone()).collect();
        for key in held {
            stored.entry(key).or_default();
        }
        for ((tenant, extension), rows) in stored {
            self.refresh(tenant, &extension, rows, own, now_ms);
        }
    }

    /// Live bindings of an address-of-record.
    pub(crate) fn lookup(&self, tenant: TenantId, extension: &str, now_ms: i64) -> Vec<Binding> {
        match self.map.get(&(tenant, extension.to_string())) {
            Some(v) => v
                .iter()
                .filter(|b| b.expires_at_ms > now_ms)
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }

    /// Unexpired bindings held by `node`.
    pub(crate) fn count_of_node(&self, node: &str, now_ms: i64) -> usize {
        self.map
            .iter()
            .map(|e| {
                e.value()
                    .iter()
                    .filter(|b| &*b.node == node && b.expires_at_ms > now_ms)
                    .count()
            })
            .sum()
    }

    /// Drops expired bindings; returns how many went.
    pub(crate) fn sweep(&self, now_ms: i64) -> usize {
        let mut removed = 0;
        self.map.retain(|_, v| {
            let before = v.len();
            v.retain(|b| b.expires_at_ms > now_ms);
            removed += before - v.len();
            !v.is_empty()
        });
        removed
    }

    /// Forgets the connection of bindings that used a closed stream.
    pub(crate) fn connection_closed(&self, conn: ConnId) {
        for mut e in self.map.iter_mut() {
            for b in e.value_mut().iter_mut() {
                if b.peer.conn == Some(conn) {
                    b.peer.conn = None;
                }
            }
        }
    }

    /// Applies an authenticated REGISTER for `extension` (RFC 3261 §10.3 steps 6-8).
    #[allow(clippy::too_many_arguments)] // the inputs of one registration, each distinct
    pub(crate) fn register(
        &self,
        cfg: &RegistrarConfig,
        tenant: TenantId,
        extension: &str,
        msg: &Msg,
        peer: Peer,
        behind_nat: bool,
        local: SocketAddr,
        now_ms: i64,
        changes: &mut Vec<RegistrationChange>,
    ) -> Reply {
        let request = match read_contacts(cfg, msg) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let call_id = msg.call_id();
        let Ok((cseq, _)) = msg.cseq() else {
            return Reply::Error(crate::Error::BadCSeq);
        };
        let user_agent = msg
            .header("User-Agent")
            .map(|s| s.chars().take(128).collect());
        let path: Vec<String> = msg
            .headers_named("Path")
            .take(MAX_PATH)
            .map(str::to_string)
            .collect();
        let node: Arc<str> = cfg.node.as_str().into();
        let key = (tenant, extension.to_string());
        let mut entry = self.map.entry(key).or_default();
        let list = entry.value_mut();
        list.retain(|b| b.expires_at_ms > now_ms);
        match request {
            Request::Fetch => {}
            Request::RemoveAll => {
                if list.iter().any(|b| b.call_id == call_id && b.cseq > cseq) {
                    return Reply::Error(crate::Error::OutOfOrder);
                }
                for b in list.drain(..) {
                    changes.push(RegistrationChange::Remove {
                        tenant,
                        extension: extension.to_string(),
                        contact: b.contact,
                    });
                }
            }
            Request::Update(contacts) => {
                // Validate the whole request before changing anything.
                for (c, _) in &contacts {
                    if let Some(b) = list.iter().find(|b| same_uri(&b.contact, c.uri))
                        && b.call_id == call_id
                        && b.cseq > cseq
                    {
                        return Reply::Error(crate::Error::OutOfOrder);
                    }
                }
                for (c, expires) in contacts {
                    let pos = list.iter().position(|b| same_uri(&b.contact, c.uri));
                    if expires == 0 {
                        if let Some(i) = pos {
                            let b = list.remove(i);
                            changes.push(RegistrationChange::Remove {
                                tenant,
                                extension: extension.to_string(),
                                contact: b.contact,
                            });
                        }
                        continue;
                    }
                    // Through a front, requests go back the way the REGISTER came.
                    let to = if path.is_empty() {
                        route_to(peer, c.uri, behind_nat)
                    } else {
                        peer
                    };
                    let binding = Binding {
                        contact: c.uri.to_string(),
                        peer: to,
                        local,
                        call_id: call_id.to_string(),
                        cseq,
                        expires_at_ms: now_ms + i64::from(expires) * 1000,
                        registered_at_ms: pos.map_or(now_ms, |i| list[i].registered_at_ms),
                        user_agent: user_agent.clone(),
                        path: path.clone(),
                        node: node.clone(),
                    };
                    changes.push(RegistrationChange::Upsert(
                        binding.to_record(tenant, extension),
                    ));
                    match pos {
                        Some(i) => list[i] = binding,
                        None => {
                            if list.len() >= cfg.max_contacts.max(1) {
                                // The oldest binding makes room: a phone that rebooted
                                // behind NAT must not be locked out by its stale entries.
                                if let Some((oldest, _)) = list
                                    .iter()
                                    .enumerate()
                                    .min_by_key(|(_, b)| b.registered_at_ms)
                                {
                                    let b = list.remove(oldest);
                                    changes.push(RegistrationChange::Remove {
                                        tenant,
                                        extension: extension.to_string(),
                                        contact: b.contact,
                                    });
                                }
                            }
                            list.push(binding);
                        }
                    }
                }
            }
        }
        let current = list
            .iter()
            .map(|b| {
                let secs = ((b.expires_at_ms - now_ms).max(0) / 1000) as u32;
                (b.contact.clone(), secs)
            })
            .collect();
        Reply::Ok(current)
    }
}

/// Path headers kept per binding; a REGISTER crosses one front, or a few.
pub(crate) const MAX_PATH: usize = 4;

/// Where requests to a binding go. A phone behind NAT (its Via does not name the
/// address its packets come from) is reached where its REGISTER came from, and a
/// stream phone over its own connection; otherwise a UDP phone is reached at the
/// address its Contact names, as it asked.
fn route_to(source: Peer, contact: &str, behind_nat: bool) -> Peer {
    if behind_nat || source.transport != TransportKind::Udp {
        return source;
    }
    let Some(parts) = SipUri::parse(contact) else {
        return source;
    };
    match parts.host.parse::<std::net::IpAddr>() {
        Ok(ip) => Peer {
            transport: source.transport,
            addr: SocketAddr::new(ip, parts.port.unwrap_or(5060)),
            conn: None,
        },
        Err(_) => source,
    }
}

/// Whether a request's top Via names another address than the one its packet came
/// from (RFC 3581 §4: the client is behind a NAT).
pub(crate) fn behind_nat(sent_by: &str, source: SocketAddr) -> bool {
    match sip::uri::host_port(sent_by) {
        Some((host, port)) => match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip != source.ip() || port.unwrap_or(5060) != source.port(),
            Err(_) => true,
        },
        None => true,
    }
}

/// Compares contact URIs the way phones reuse them (case-insensitive, RFC 3261
/// §19.1.4 is stricter but phones rewrite case freely).
fn same_uri(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn read_contacts<'a>(cfg: &RegistrarConfig, msg: &'a Msg) -> Result<Request<'a>, Reply> {
    let header_expires = msg.expires();
    let values: Vec<&str> = msg.headers_named("Contact").collect();
    if values.is_empty() {
        return Ok(Request::Fetch);
    }
    if values.iter().any(|v| v.trim() == "*") {
        if values.len() != 1 || header_expires != Some(0) {
            return Err(Reply::Error(crate::Error::InvalidWildcardContact));
        }
        return Ok(Request::RemoveAll);
    }
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let c = NameAddr::parse(v);
        if SipUri::parse(c.uri).is_none() {
            return Err(Reply::Error(crate::Error::BadContact));
        }
        let requested = match c.param("expires") {
            Some(e) => e
                .parse::<u32>()
                .map_err(|_| Reply::Error(crate::Error::BadExpires))?,
            None => header_expires.unwrap_or(cfg.default_expires),
        };
        if requested != 0 && requested < cfg.min_expires {
            return Err(Reply::TooBrief(cfg.min_expires));
        }
        out.push((c, requested.min(cfg.max_expires)));
    }
    Ok(Request::Update(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "192.0.2.10:40000";

    fn register(cseq: u32, contacts: &[&str], expires: u32) -> Msg {
        let mut s = format!(
            "REGISTER sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK{cseq}\r\n\
             From: <sip:1000@acme.example>;tag=t\r\nTo: <sip:1000@acme.example>\r\nCall-ID: reg\r\n\
             CSeq: {cseq} REGISTER\r\nExpires: {expires}\r\n"
        );
        for c in contacts {
            s.push_str(&format!("Contact: {c}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        Msg::parse(s.as_bytes()).unwrap()
    }

    fn source() -> Peer {
        Peer {
            transport: TransportKind::Udp,
            addr: SRC.parse().unwrap(),
            conn: None,
        }
    }

    fn apply(b: &Bindings, cfg: &RegistrarConfig, msg: &Msg, nat: bool, now: i64) -> Reply {
        let local = "127.0.0.1:5060".parse().unwrap();
        let mut changes = Vec::new();
        b.register(
            cfg,
            TenantId(1),
            "1000",
            msg,
            source(),
            nat,
            local,
            now,
            &mut changes,
        )
    }

    #[test]
    fn a_contact_beyond_the_limit_replaces_the_oldest() {
        let cfg = RegistrarConfig {
            max_contacts: 2,
            ..RegistrarConfig::default()
        };
        let b = Bindings::default();
        apply(
            &b,
            &cfg,
            &register(1, &["<sip:1000@10.0.0.5:1>"], 300),
            false,
            0,
        );
        apply(
            &b,
            &cfg,
            &register(2, &["<sip:1000@10.0.0.5:2>"], 300),
            false,
            1000,
        );
        let reply = apply(
            &b,
            &cfg,
            &register(3, &["<sip:1000@10.0.0.5:3>"], 300),
            false,
            2000,
        );
        let Reply::Ok(list) = reply else {
            panic!("{reply:?}")
        };
        let contacts: Vec<&str> = list.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(contacts, ["sip:1000@10.0.0.5:2", "sip:1000@10.0.0.5:3"]);
    }

    #[test]
    fn long_expiry_is_cut_and_old_cseq_is_refused() {
        let cfg = RegistrarConfig::default();
        let b = Bindings::default();
        let Reply::Ok(list) = apply(
            &b,
            &cfg,
            &register(5, &["<sip:1000@10.0.0.5>"], 999_999),
            false,
            0,
        ) else {
            panic!()
        };
        assert_eq!(list[0].1, cfg.max_expires);
        let reply = apply(
            &b,
            &cfg,
            &register(4, &["<sip:1000@10.0.0.5>"], 300),
            false,
            10,
        );
        assert_eq!(reply, Reply::Error(crate::Error::OutOfOrder));
    }

    #[test]
    fn nat_decides_where_requests_go() {
        let cfg = RegistrarConfig::default();
        let b = Bindings::default();
        apply(
            &b,
            &cfg,
            &register(1, &["<sip:1000@10.0.0.5:5070>"], 300),
            false,
            0,
        );
        let open = b.lookup(TenantId(1), "1000", 1);
        assert_eq!(open[0].peer.addr, "10.0.0.5:5070".parse().unwrap());
        apply(
            &b,
            &cfg,
            &register(2, &["<sip:1000@10.0.0.5:5070>"], 300),
            true,
            0,
        );
        let natted = b.lookup(TenantId(1), "1000", 1);
        assert_eq!(natted[0].peer.addr, SRC.parse().unwrap());
        assert!(behind_nat("10.0.0.5:5060", SRC.parse().unwrap()));
        assert!(!behind_nat("192.0.2.10:40000", SRC.parse().unwrap()));
        assert!(behind_nat("phone.example", SRC.parse().unwrap()));
        assert!(
            b.lookup(TenantId(2), "1000", 1).is_empty(),
            "another tenant's 1000"
        );
    }
}
