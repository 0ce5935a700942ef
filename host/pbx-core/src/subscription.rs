//! Message-waiting indication: subscriptions to the `message-summary` event
//! package (RFC 3842) under RFC 6665, and the NOTIFYs that report a mailbox's
//! new and old messages, to subscribers and, unsolicited, to registered
//! phones that did not subscribe.
//!
//! # Design
//! A phone subscribes to its own extension's mailbox only. The SUBSCRIBE is
//! digest-authenticated by the same path as a REGISTER (401), in the tenant
//! its From names; the mailbox it names (Request-URI, else To) must be that
//! extension in that tenant. Anything else is 403, whether or not such a
//! mailbox exists in another tenant. An event package other than
//! `message-summary` is 489 with `Allow-Events`.
//!
//! The table ([`Subscriptions`]) is shared by all shards, so its caps are
//! global and a mailbox change knows which phones already hear through a
//! subscription (they get no unsolicited NOTIFY as well). Each subscription
//! belongs to the shard its Call-ID maps to: that shard alone sends its
//! NOTIFYs (their answers come back to it) and runs its expiry timer. A
//! mailbox change is therefore given to every shard
//! ([`Shard::notify_mailbox`]); shard 0 also sends the unsolicited ones.
//!
//! Bounded by [`crate::SubscriptionConfig`]: per extension (a further
//! subscription replaces the oldest, as the registrar does with contacts),
//! per tenant (480: one tenant cannot use up the others' room) and in all
//! (503). Mailbox counts are kept only for mailboxes with messages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use model::TenantId;
use parking_lot::Mutex;
use transaction::Key;

use crate::auth::Kind;
use crate::call::{ClientRole, Leg, token};
use crate::msg::{Method, Msg, NameAddr, SipUri};
use crate::registrar::Binding;
use crate::shard::{ReqCtx, TimerKey};
use crate::{ConnId, Error, Peer, Shard, SubscriptionConfig};

/// The one event package served.
pub const MESSAGE_SUMMARY: &str = "message-summary";

/// The body type of a message summary (RFC 3842 §5).
const SUMMARY_TYPE: &str = "application/simple-message-summary";

/// A subscription dialog as the host (the notifier) names it: the
/// subscriber's Call-ID and the host's own tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DialogKey {
    call_id: String,
    local_tag: String,
}

/// One subscription to a mailbox.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    tenant: TenantId,
    mailbox: String,
    /// The shard that sends its NOTIFYs.
    shard: usize,
    /// The dialog: the host's tag and URI, the subscriber's, its Contact and
    /// the flow the SUBSCRIBE came on.
    dialog: Leg,
    expires_at_ms: i64,
    created_at_ms: i64,
}

impl Subscription {
    fn key(&self) -> DialogKey {
        DialogKey {
            call_id: self.dialog.call_id.clone(),
            local_tag: self.dialog.local_tag.clone(),
        }
    }

    /// Whether requests to `binding` reach the phone this subscription
    /// reports to: the same contact, or the same flow.
    fn reaches(&self, binding: &Binding) -> bool {
        self.dialog
            .remote_target
            .eq_ignore_ascii_case(&binding.contact)
            || (self.dialog.peer.transport == binding.peer.transport
                && self.dialog.peer.addr == binding.peer.addr)
    }
}

/// Every shard's subscriptions, and what each mailbox holds.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_mailbox: HashMap<(TenantId, String), Vec<Subscription>>,
    dialogs: HashMap<DialogKey, (TenantId, String)>,
    per_tenant: HashMap<TenantId, usize>,
    /// (new, old) messages of mailboxes that have any.
    counts: HashMap<(TenantId, String), (u32, u32)>,
}

impl Inner {
    fn remove(&mut self, key: &DialogKey) -> Option<Subscription> {
        let mailbox = self.dialogs.remove(key)?;
        let list = self.by_mailbox.get_mut(&mailbox)?;
        let i = list.iter().position(|s| s.key() == *key)?;
        let sub = list.remove(i);
        if list.is_empty() {
            self.by_mailbox.remove(&mailbox);
        }
        if let Some(n) = self.per_tenant.get_mut(&sub.tenant) {
            *n -= 1;
            if *n == 0 {
                self.per_tenant.remove(&sub.tenant);
            }
        }
        Some(sub)
    }

    fn get_mut(&mut self, key: &DialogKey) -> Option<&mut Subscription> {
        let mailbox = self.dialogs.get(key)?;
        self.by_mailbox
            .get_mut(mailbox)?
            .iter_mut()
            .find(|s| s.key() == *key)
    }
}

impl Subscriptions {
    /// Keeps `sub` within `cfg`'s caps; returns the subscription it
    /// replaced, if any (the extension's oldest, at the extension's cap).
    fn add(
        &self,
        cfg: &SubscriptionConfig,
        sub: Subscription,
    ) -> Result<Option<Subscription>, Error> {
        let mut inner = self.inner.lock();
        let mailbox = (sub.tenant, sub.mailbox.clone());
        let oldest = inner
            .by_mailbox
            .get(&mailbox)
            .filter(|list| list.len() >= cfg.max_per_extension.max(1))
            .and_then(|list| list.iter().min_by_key(|s| s.created_at_ms))
            .map(Subscription::key);
        let replaced = match oldest {
            Some(key) => inner.remove(&key),
            None => {
                let tenant = inner.per_tenant.get(&sub.tenant).copied().unwrap_or(0);
                if tenant >= cfg.max_per_tenant {
                    return Err(Error::TenantSubscriptionsFull);
                }
                if inner.dialogs.len() >= cfg.max_total {
                    return Err(Error::SubscriptionsFull);
                }
                None
            }
        };
        *inner.per_tenant.entry(sub.tenant).or_default() += 1;
        inner.dialogs.insert(sub.key(), mailbox.clone());
        inner.by_mailbox.entry(mailbox).or_default().push(sub);
        Ok(replaced)
    }

    /// Changes subscription `key` with `f`; `None` when there is none.
    fn with<R>(&self, key: &DialogKey, f: impl FnOnce(&mut Subscription) -> R) -> Option<R> {
        self.inner.lock().get_mut(key).map(f)
    }

    fn remove(&self, key: &DialogKey) -> Option<Subscription> {
        self.inner.lock().remove(key)
    }

    /// The subscriptions of a mailbox, on every shard.
    pub(crate) fn of_mailbox(&self, tenant: TenantId, mailbox: &str) -> Vec<Subscription> {
        self.inner
            .lock()
            .by_mailbox
            .get(&(tenant, mailbox.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn set_counts(&self, tenant: TenantId, mailbox: &str, counts: (u32, u32)) {
        let mut inner = self.inner.lock();
        let key = (tenant, mailbox.to_string());
        if counts == (0, 0) {
            inner.counts.remove(&key);
        } else {
            inner.counts.insert(key, counts);
        }
    }

    fn counts(&self, tenant: TenantId, mailbox: &str) -> (u32, u32) {
        self.inner
            .lock()
            .counts
            .get(&(tenant, mailbox.to_string()))
            .copied()
            .unwrap_or((0, 0))
    }

    /// Forgets the connection of subscriptions that used a closed stream.
    pub(crate) fn connection_closed(&self, conn: ConnId) {
        let mut inner = self.inner.lock();
        for sub in inner.by_mailbox.values_mut().flatten() {
            if sub.dialog.peer.conn == Some(conn) {
                sub.dialog.peer.conn = None;
            }
        }
    }
}

/// Whether a SUBSCRIBE is for `message-summary` (its Event header, without
/// parameters).
fn is_message_summary(msg: &Msg) -> bool {
    msg.header("Event")
        .and_then(|v| v.split(';').next())
        .is_some_and(|package| package.trim().eq_ignore_ascii_case(MESSAGE_SUMMARY))
}

/// The subscription length granted for `requested` (default when absent),
/// within `cfg`; `Err(min)` when it is shorter than allowed (423).
fn granted_expires(cfg: &SubscriptionConfig, requested: Option<u32>) -> Result<u32, u32> {
    match requested.unwrap_or(cfg.default_expires) {
        0 => Ok(0),
        e if e < cfg.min_expires => Err(cfg.min_expires),
        e => Ok(e.min(cfg.max_expires)),
    }
}

/// The host of `uri` when it is a domain name (lower-case), not an address.
fn domain_of(uri: &str) -> Option<String> {
    let host = SipUri::parse(uri)?.host.to_ascii_lowercase();
    host.parse::<std::net::IpAddr>().is_err().then_some(host)
}

/// The body of a message summary (RFC 3842 §5.2).
fn summary_body(mailbox: &str, domain: &str, (new, old): (u32, u32)) -> String {
    let waiting = if new > 0 { "yes" } else { "no" };
    format!(
        "Messages-Waiting: {waiting}\r\nMessage-Account: sip:{mailbox}@{domain}\r\n\
         Voice-Message: {new}/{old} (0/0)\r\n"
    )
}

impl Shard {
    /// A SUBSCRIBE outside any dialog.
    pub(crate) fn on_subscribe(
        &mut self,
        now: Instant,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        key: Key,
    ) {
        if !is_message_summary(msg) {
            let extra = [("Allow-Events", MESSAGE_SUMMARY.to_string())];
            self.refuse(msg, peer, local, &Error::BadEvent, &extra);
            return;
        }
        // The subscriber proves who it is in its own tenant; the mailbox is
        // checked against that afterwards.
        let domain = msg
            .from()
            .ok()
            .and_then(|f| domain_of(f.uri))
            .unwrap_or_else(|| Self::request_domain(msg));
        let Some((tenant, extension)) =
            self.authenticate_in(now, msg, peer, local, Kind::Www, domain)
        else {
            return;
        };
        if !self.is_own_mailbox(msg, tenant, &extension) {
            tracing::info!(
                event = "sip.subscribe.denied",
                source = %peer.addr,
                %tenant,
                extension = %extension,
                "subscription to a mailbox not the extension's own"
            );
            self.refuse_subscribe(now, msg, peer, local, key, &Error::Forbidden, &[]);
            return;
        }
        let cfg = self.shared.config.subscriptions.clone();
        let expires = match granted_expires(&cfg, msg.expires()) {
            Ok(e) => e,
            Err(min) => {
                let extra = [("Min-Expires", min.to_string())];
                self.refuse_subscribe(now, msg, peer, local, key, &Error::IntervalTooBrief, &extra);
                return;
            }
        };
        let (Ok(from), Ok(to)) = (msg.from(), msg.to()) else {
            return;
        };
        let contact = msg
            .header("Contact")
            .map(|c| NameAddr::parse(c).uri)
            .filter(|uri| SipUri::parse(uri).is_some());
        let Some(contact) = contact else {
            self.refuse_subscribe(now, msg, peer, local, key, &Error::BadContact, &[]);
            return;
        };
        let now_ms = self.shared.unix_ms(now);
        let sub = Subscription {
            tenant,
            mailbox: extension,
            shard: self.index,
            dialog: Leg {
                call_id: msg.call_id().to_string(),
                local_tag: token(8),
                remote_tag: from.tag().map(str::to_string),
                local_uri: format!("<{}>", to.uri),
                remote_uri: format!("<{}>", from.uri),
                remote_target: contact.to_string(),
                // As a UAS: the Record-Route values in order (RFC 3261 §12.1.1).
                route_set: msg
                    .headers_named("Record-Route")
                    .map(str::to_string)
                    .collect(),
                peer,
                local: Some(local),
                cseq: 0,
            },
            expires_at_ms: now_ms + i64::from(expires) * 1000,
            created_at_ms: now_ms,
        };
        if expires == 0 {
            // A one-time fetch: the state now, and no subscription kept.
            self.accept_subscribe(now, msg, peer, local, key, &sub, 0);
            self.notify_ended(now, sub);
            return;
        }
        match self.shared.subscriptions.add(&cfg, sub.clone()) {
            Ok(replaced) => {
                if let Some(old) = replaced {
                    tracing::debug!(mailbox = %old.mailbox, "oldest subscription replaced");
                }
            }
            Err(error) => {
                tracing::info!(
                    event = "sip.subscribe.full",
                    source = %peer.addr,
                    %tenant,
                    %error,
                    "subscription refused"
                );
                let extra = [("Retry-After", cfg.min_expires.to_string())];
                self.refuse_subscribe(now, msg, peer, local, key, &error, &extra);
                return;
            }
        }
        self.accept_subscribe(now, msg, peer, local, key, &sub, expires);
        let key = sub.key();
        self.timers.schedule(
            TimerKey::Subscription(Box::new(key.clone())),
            now + Duration::from_secs(u64::from(expires)),
        );
        self.notify_active(now, &key);
    }

    /// A SUBSCRIBE in a subscription's dialog: a refresh, or with
    /// `Expires: 0` the end of it.
    pub(crate) fn on_subscribe_refresh(
        &mut self,
        now: Instant,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        key: Key,
    ) {
        let dialog = DialogKey {
            call_id: msg.call_id().to_string(),
            local_tag: msg
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_string))
                .unwrap_or_default(),
        };
        let from_tag = msg.from().ok().and_then(|f| f.tag().map(str::to_string));
        let shard = self.index;
        let ours = self.shared.subscriptions.with(&dialog, |s| {
            s.shard == shard && s.dialog.remote_tag == from_tag
        });
        if ours != Some(true) {
            self.refuse(msg, peer, local, &Error::NoSuchCall, &[]);
            return;
        }
        if !is_message_summary(msg) {
            let extra = [("Allow-Events", MESSAGE_SUMMARY.to_string())];
            self.refuse(msg, peer, local, &Error::BadEvent, &extra);
            return;
        }
        let expires = match granted_expires(&self.shared.config.subscriptions, msg.expires()) {
            Ok(e) => e,
            Err(min) => {
                let extra = [("Min-Expires", min.to_string())];
                self.refuse(msg, peer, local, &Error::IntervalTooBrief, &extra);
                return;
            }
        };
        let now_ms = self.shared.unix_ms(now);
        let contact = msg
            .header("Contact")
            .map(|c| NameAddr::parse(c).uri.to_string())
            .filter(|uri| SipUri::parse(uri).is_some());
        // The phone may have moved to a new flow (a new connection): NOTIFYs
        // follow it.
        let Some(sub) = self.shared.subscriptions.with(&dialog, |s| {
            s.expires_at_ms = now_ms + i64::from(expires) * 1000;
            s.dialog.peer = peer;
            s.dialog.local = Some(local);
            if let Some(c) = contact {
                s.dialog.remote_target = c;
            }
            s.clone()
        }) else {
            return;
        };
        self.accept_subscribe(now, msg, peer, local, key, &sub, expires);
        if expires == 0 {
            self.timers
                .cancel(&TimerKey::Subscription(Box::new(dialog.clone())));
            if let Some(sub) = self.shared.subscriptions.remove(&dialog) {
                self.notify_ended(now, sub);
            }
            return;
        }
        self.timers.schedule(
            TimerKey::Subscription(Box::new(dialog.clone())),
            now + Duration::from_secs(u64::from(expires)),
        );
        self.notify_active(now, &dialog);
    }

    /// A subscription's expiry timer: unless refreshed meanwhile, it ends
    /// with a final NOTIFY.
    pub(crate) fn subscription_timeout(&mut self, now: Instant, key: &DialogKey) {
        let now_ms = self.shared.unix_ms(now);
        let left = self
            .shared
            .subscriptions
            .with(key, |s| s.expires_at_ms - now_ms);
        match left {
            Some(ms) if ms > 0 => {
                let at = now + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                self.timers
                    .schedule(TimerKey::Subscription(Box::new(key.clone())), at);
            }
            Some(_) => {
                if let Some(sub) = self.shared.subscriptions.remove(key) {
                    tracing::debug!(mailbox = %sub.mailbox, "subscription expired");
                    self.notify_ended(now, sub);
                }
            }
            None => {}
        }
    }

    /// A subscriber answered a NOTIFY with 481: it no longer has the
    /// subscription, which goes (RFC 6665 §4.2.2).
    pub(crate) fn subscription_refused(&mut self, response: &Msg) {
        let Some(local_tag) = response
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_string))
        else {
            return;
        };
        let key = DialogKey {
            call_id: response.call_id().to_string(),
            local_tag,
        };
        let shard = self.index;
        if self.shared.subscriptions.with(&key, |s| s.shard == shard) == Some(true) {
            self.timers
                .cancel(&TimerKey::Subscription(Box::new(key.clone())));
            self.shared.subscriptions.remove(&key);
        }
    }

    /// Whether the mailbox a SUBSCRIBE names (Request-URI user, else To
    /// user; in the tenant of the first domain among them) is `extension`
    /// of `tenant`.
    fn is_own_mailbox(&self, msg: &Msg, tenant: TenantId, extension: &str) -> bool {
        let to = msg.to().ok().map(|t| t.uri);
        let uris = [Some(msg.request_uri()), to];
        let user = uris
            .iter()
            .flatten()
            .find_map(|uri| SipUri::parse(uri).and_then(|p| p.user));
        if user != Some(extension) {
            return false;
        }
        let domain = uris.iter().flatten().find_map(|uri| domain_of(uri));
        match domain {
            Some(domain) => self
                .shared
                .index()
                .tenant_for_domain(&domain)
                .is_some_and(|t| t.id == tenant),
            // Addressed by IP alone: the subscriber's own tenant.
            None => true,
        }
    }

    /// Refuses an authenticated SUBSCRIBE in a server transaction of its
    /// own, so that a retransmission gets the same answer rather than
    /// counting as a replayed credential.
    #[allow(
        clippy::too_many_arguments,
        reason = "a request's identity and its answer"
    )]
    fn refuse_subscribe(
        &mut self,
        now: Instant,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        key: Key,
        error: &Error,
        extra: &[(&str, String)],
    ) {
        let ctx = ReqCtx::new(msg, peer.addr);
        let tag = crate::shard::stateless_tag(&ctx.call_id);
        let mut w = ctx.response(
            error.status(),
            error.reason(),
            Some(&tag),
            self.user_agent(),
        );
        for (name, value) in extra {
            w.header(name, value);
        }
        let bytes = w.finish(None);
        self.respond_new_server(now, key, false, peer, local, None, error.status(), bytes);
    }

    /// 200 to a SUBSCRIBE (a new server transaction), granting `expires`.
    #[allow(
        clippy::too_many_arguments,
        reason = "a request's identity and its answer"
    )]
    fn accept_subscribe(
        &mut self,
        now: Instant,
        msg: &Msg,
        peer: Peer,
        local: SocketAddr,
        key: Key,
        sub: &Subscription,
        expires: u32,
    ) {
        let ctx = ReqCtx::new(msg, peer.addr);
        let contact = self.contact(peer.transport, Some(local));
        let mut w = ctx.response(200, "OK", Some(&sub.dialog.local_tag), self.user_agent());
        w.header("Expires", expires).header("Contact", contact);
        let ok = w.finish(None);
        self.respond_new_server(now, key, false, peer, local, None, 200, ok);
    }

    /// NOTIFY with the mailbox's state to subscription `key` (of this shard).
    fn notify_active(&mut self, now: Instant, key: &DialogKey) {
        let now_ms = self.shared.unix_ms(now);
        let Some(sub) = self.shared.subscriptions.with(key, |s| {
            s.dialog.cseq += 1;
            s.clone()
        }) else {
            return;
        };
        let left = (sub.expires_at_ms - now_ms).max(0) / 1000;
        self.notify_subscriber(now, &sub, &format!("active;expires={left}"));
    }

    /// The final NOTIFY of a subscription no longer kept.
    fn notify_ended(&mut self, now: Instant, mut sub: Subscription) {
        sub.dialog.cseq += 1;
        self.notify_subscriber(now, &sub, "terminated;reason=timeout");
    }

    fn notify_subscriber(&mut self, now: Instant, sub: &Subscription, state: &str) {
        let index = self.shared.index();
        let Some(domain) = index.realm(sub.tenant) else {
            return;
        };
        let counts = self.shared.subscriptions.counts(sub.tenant, &sub.mailbox);
        let body = summary_body(&sub.mailbox, domain, counts);
        self.send_summary(now, &sub.dialog, state, &body);
    }

    /// Sends one message-summary NOTIFY in `dialog`, in a client
    /// transaction over the dialog's flow: to a subscriber, or unsolicited.
    fn send_summary(&mut self, now: Instant, dialog: &Leg, state: &str, body: &str) {
        let branch = transaction::new_branch();
        let contact = self.contact(dialog.peer.transport, dialog.local);
        let bytes = self.leg_request_with(
            dialog,
            Method::Notify,
            dialog.cseq.max(1),
            &branch,
            Some((SUMMARY_TYPE, body.as_bytes())),
            &[
                ("Event", MESSAGE_SUMMARY),
                ("Subscription-State", state),
                ("Contact", &contact),
            ],
        );
        self.send_on_leg(now, dialog, branch, bytes, None, ClientRole::Notify);
    }

    /// A mailbox of `tenant` changed and now holds `(new, old)` messages:
    /// each of its subscriptions on this shard gets a NOTIFY, and shard 0
    /// sends the mailbox's registered phones that no subscription reaches
    /// an unsolicited one. The I/O layer gives every change to every shard.
    pub fn notify_mailbox(
        &mut self,
        now: Instant,
        tenant: TenantId,
        mailbox: &str,
        counts: (u32, u32),
    ) {
        self.shared
            .subscriptions
            .set_counts(tenant, mailbox, counts);
        let subs = self.shared.subscriptions.of_mailbox(tenant, mailbox);
        let shard = self.index;
        for sub in subs.iter().filter(|s| s.shard == shard) {
            self.notify_active(now, &sub.key());
        }
        if self.index != 0 {
            return;
        }
        let index = self.shared.index();
        let Some(domain) = index.realm(tenant).map(str::to_string) else {
            return;
        };
        let body = summary_body(mailbox, &domain, counts);
        let now_ms = self.shared.unix_ms(now);
        for binding in self.shared.bindings.lookup(tenant, mailbox, now_ms) {
            if subs.iter().any(|s| s.reaches(&binding)) {
                continue;
            }
            let dialog = Leg {
                // Names this shard, so the phone's answer comes back here.
                call_id: format!("pbx{}-{}", self.index, token(12)),
                local_tag: token(8),
                remote_tag: None,
                local_uri: format!("<sip:{mailbox}@{domain}>"),
                remote_uri: format!("<sip:{mailbox}@{domain}>"),
                remote_target: binding.contact.clone(),
                route_set: Vec::new(),
                peer: binding.peer,
                local: Some(binding.local),
                cseq: 1,
            };
            self.send_summary(now, &dialog, "active", &body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_granted_within_bounds() {
        let cfg = SubscriptionConfig::default();
        assert_eq!(granted_expires(&cfg, None), Ok(cfg.default_expires));
        assert_eq!(granted_expires(&cfg, Some(0)), Ok(0));
        assert_eq!(granted_expires(&cfg, Some(30)), Err(cfg.min_expires));
        assert_eq!(granted_expires(&cfg, Some(120)), Ok(120));
        assert_eq!(granted_expires(&cfg, Some(999_999)), Ok(cfg.max_expires));
    }

    #[test]
    fn summary_says_whether_messages_wait() {
        let body = summary_body("100", "acme.example", (2, 1));
        assert!(body.starts_with("Messages-Waiting: yes\r\n"));
        assert!(body.contains("Message-Account: sip:100@acme.example\r\n"));
        assert!(body.contains("Voice-Message: 2/1 (0/0)\r\n"));
        assert!(summary_body("100", "acme.example", (0, 3)).starts_with("Messages-Waiting: no"));
    }
}
