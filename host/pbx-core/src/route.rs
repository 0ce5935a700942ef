//! Where a call goes: the routing request the shard hands to the I/O layer (which
//! runs the tenant's dial plan and the policies, off the SIP path) and the decision
//! it hands back, plus the tenant trunks and inbound numbers the decision may use.
//!
//! A decision only *names* things: extensions of the calling tenant and trunks of
//! the calling tenant. The shard resolves those names within the call's tenant
//! again, so a decision naming another tenant's trunk or extension finds nothing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use model::{CallerDevice, TenantId};

use crate::Peer;

/// A call waiting for its next routing decision: when it arrives, and again
/// each time a dial attempt ends without an answer (the dial plan may then
/// ring someone else, go out a trunk, or end the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    /// The shard that holds the call; the decision goes back to it.
    pub shard: usize,
    /// The call's id within that shard.
    pub call: u64,
    pub tenant: TenantId,
    /// The caller's Call-ID (for logs and plugins).
    pub call_id: String,
    /// Who is calling: the extension, or the number an inbound trunk presented.
    pub caller: String,
    /// The calling extension, when the caller is one of the tenant's phones.
    pub caller_extension: Option<String>,
    /// The Request-URI's user part.
    pub dialled: String,
    /// The trunk an inbound call arrived on.
    pub inbound_trunk: Option<String>,
    pub source: SocketAddr,
    /// What happened: the call started, or its last dial attempt ended.
    pub event: CallEvent,
    /// Which decision of the call this is, from 1 (at most [`MAX_CALL_STEPS`]).
    pub step: u32,
    /// The device the caller called from, when it is one of the tenant's
    /// phones (from its INVITE).
    pub caller_device: Option<CallerDevice>,
    /// The headers of the caller's INVITE the provider exposes to plugins
    /// (lower-case name, value; bounded by [`crate::MAX_EXPOSED_HEADERS`] and
    /// [`crate::MAX_EXPOSED_VALUE`]).
    pub headers: Vec<(String, String)>,
    /// When the shard stops waiting for this decision and answers the call
    /// itself (503 Routing Timeout, or a transfer given up): a worker that
    /// reaches the request later skips it rather than run plugins for
    /// nobody. Set each time the request is sent.
    pub answer_by: Option<Instant>,
}

/// Most routing decisions one call may take: each further decision after a
/// dial attempt is a step, so a dial plan that keeps forwarding (or two that
/// forward to each other) ends the call here.
pub const MAX_CALL_STEPS: u32 = 8;

/// Why a routing decision is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// The call arrived.
    Started,
    /// The last dial attempt ended without an answer.
    DialEnded(DialResult),
    /// The phone that answered asked to transfer the call (REFER, RFC 3515):
    /// `dialled` is the transfer target and `caller_extension` the
    /// transferring extension. The plan routes the target like a new call.
    TransferRequested,
    /// What the host played to a call it answered ([`HostMedia::Play`]) has
    /// finished.
    PromptFinished,
    /// A [`HostMedia::Gather`] ended with these digits (empty: nothing was
    /// pressed before the timeout).
    DigitsGathered(String),
    /// A [`HostMedia::Record`] (or the recording of a voicemail) ended: the
    /// stored message's id, or `None` when nothing could be stored (the
    /// mailbox is full, or nothing was said).
    RecordingFinished { id: Option<String> },
}

/// How a dial attempt (a ring or a trunk call) ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialResult {
    /// Every target was busy (486 or 600).
    Busy,
    /// Nobody answered before the attempt's timeout.
    NoAnswer,
    /// Nothing could be rung: no target had a registered device.
    Unavailable,
    /// The targets refused the call with `status` (the most telling of their
    /// answers, RFC 3261 §16.7).
    Failed { status: u16 },
}

/// Ring these extensions at the same time, for up to `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingStep {
    pub extensions: Vec<String>,
    pub timeout: Duration,
}

/// What to do with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// Ring in steps: each step's extensions in parallel; on no answer, the next.
    Ring(Vec<RingStep>),
    /// Out through one of the tenant's trunks, to `number`, for up to
    /// `timeout` (zero: the host's ring timeout; never more than it),
    /// presenting `caller_id` when set (it must be one of the tenant's own
    /// numbers, checked by the shard; otherwise the call is refused).
    Trunk {
        trunk: String,
        number: String,
        timeout: Duration,
        caller_id: Option<String>,
    },
    /// Refuse the call.
    Reject { status: u16, reason: String },
    /// End the call with the outcome of its last dial attempt: the caller hears
    /// the most telling failure its targets gave (480 when nothing rang).
    Finish,
    /// The host answers the call itself (200 OK; its media ends at the host's
    /// relay). With `hang_up` it then ends the call as soon as the caller has
    /// acknowledged the answer (a feature code's confirmation); without, the
    /// call stays up until the caller hangs up or its maximum duration.
    Answer { hang_up: bool },
    /// The host plays to, listens to, or records the caller, answering the
    /// call first if nobody has ([`HostMedia`]); the next step hears how it
    /// ended.
    Media(HostMedia),
}

/// Something the host plays to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptRef {
    /// One of the call's tenant's uploaded prompts, by name (another tenant's
    /// prompt of the same name is never found).
    Tenant(String),
    /// A built-in tone.
    Tone(Tone),
    /// Digits, each as its key's tone pair (no recorded voice is shipped).
    Digits(String),
    /// Silence, at most [`MAX_SILENCE`].
    Silence(Duration),
}

/// Longest silence one [`PromptRef::Silence`] plays.
pub const MAX_SILENCE: Duration = Duration::from_secs(30);

/// The built-in tones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A short beep (before a recording).
    Beep,
    /// Two seconds of ringing tone.
    Ringback,
    /// Two seconds of busy tone.
    Busy,
    /// Three rising tones: something could not be done.
    Error,
    /// Two seconds of reorder (fast busy, 480 + 620 Hz, 250 ms on and off):
    /// the call cannot go on, as when a mailbox is full. Not offered to
    /// plugins; the host plays it.
    Reorder,
}

/// Play prompts while reading key presses (RFC 4733 events or SIP INFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gather {
    pub prompts: Vec<PromptRef>,
    /// Most digits to read (1 to [`MAX_GATHER_DIGITS`]); the gather ends when
    /// that many arrived.
    pub max_digits: u8,
    /// A key that ends the gather (it is not part of the digits).
    pub terminator: Option<char>,
    /// How long to wait for the first key once the prompts have finished.
    pub timeout: Duration,
    /// How long to wait for each further key.
    pub inter_digit: Duration,
    /// A key press stops the prompts.
    pub barge_in: bool,
}

/// Most digits one gather reads.
pub const MAX_GATHER_DIGITS: u8 = 32;

/// Record the caller into one of the tenant's mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The extension whose mailbox keeps the recording.
    pub mailbox: String,
    /// Longest recording (at most [`MAX_RECORDING`]).
    pub max: Duration,
    /// Play a beep first.
    pub beep: bool,
    /// A key that ends the recording.
    pub finish_key: Option<char>,
    /// End after this much silence.
    pub silence: Option<Duration>,
}

/// Longest recording one [`Record`] takes.
pub const MAX_RECORDING: Duration = Duration::from_secs(300);

/// What the host does on a call it answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMedia {
    /// Play prompts; ends with [`CallEvent::PromptFinished`].
    Play(Vec<PromptRef>),
    /// Read digits; ends with [`CallEvent::DigitsGathered`].
    Gather(Gather),
    /// Record; ends with [`CallEvent::RecordingFinished`].
    Record(Record),
    /// The voicemail of `mailbox`: its greeting (the tenant's prompt
    /// `greeting-<mailbox>`, else a built-in one), a beep, a recording of up
    /// to two minutes ended by `#` or silence, message-waiting indication to
    /// the mailbox's phones; ends with [`CallEvent::RecordingFinished`].
    Voicemail { mailbox: String },
    /// The mailbox menu of `mailbox` for its owner: the PIN, then each
    /// message played in turn with keys to keep, delete or replay it (run
    /// by the media, [`crate::CallMediaHandle::voicemail_menu`]); ends with
    /// [`CallEvent::PromptFinished`] when the caller is done.
    VoicemailMenu { mailbox: String },
    /// Hang up the call the host answered.
    HangUp,
}

impl RouteDecision {
    /// Out `trunk` to `number` for the host's ring timeout, with the call's
    /// own caller ID.
    pub fn trunk(trunk: impl Into<String>, number: impl Into<String>) -> RouteDecision {
        RouteDecision::Trunk {
            trunk: trunk.into(),
            number: number.into(),
            timeout: Duration::ZERO,
            caller_id: None,
        }
    }

    /// A reject, with the status kept to a final failure class.
    pub fn reject(status: u16, reason: impl Into<String>) -> RouteDecision {
        RouteDecision::Reject {
            status: final_status(status),
            reason: reason.into(),
        }
    }
}

/// `status` when it is a final failure (400-699), else 500.
pub(crate) fn final_status(status: u16) -> u16 {
    if (400..700).contains(&status) {
        status
    } else {
        500
    }
}

/// How calls are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// The host rings the dialled extension itself (no dial plan).
    Builtin,
    /// Each new call is handed out as [`crate::Output::Route`]; a call whose
    /// decision has not come back within `timeout` gets 503.
    External { timeout: Duration },
}

/// An upstream SIP trunk of a tenant, with its address already resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkEntry {
    pub tenant: TenantId,
    pub name: String,
    pub peer: Peer,
    /// Host and port as configured, for Request-URIs and the digest `uri`.
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for TrunkEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkEntry")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("peer", &self.peer)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Every tenant's trunks and inbound numbers (DIDs).
#[derive(Debug, Clone, Default)]
pub struct Trunks {
    by_name: HashMap<(TenantId, String), TrunkEntry>,
    by_ip: HashMap<IpAddr, Vec<(TenantId, String)>>,
    dids: HashMap<String, TenantId>,
}

impl Trunks {
    pub fn new(trunks: Vec<TrunkEntry>, dids: Vec<(String, TenantId)>) -> Trunks {
        let mut t = Trunks::default();
        for trunk in trunks {
            t.by_ip
                .entry(trunk.peer.addr.ip())
                .or_default()
                .push((trunk.tenant, trunk.name.clone()));
            t.by_name.insert((trunk.tenant, trunk.name.clone()), trunk);
        }
        t.dids = dids
            .into_iter()
            .map(|(number, tenant)| (did_key(&number).to_string(), tenant))
            .collect();
        t
    }

    /// The tenant's trunk of that name (another tenant's trunk is not found).
    pub(crate) fn get(&self, tenant: TenantId, name: &str) -> Option<&TrunkEntry> {
        self.by_name.get(&(tenant, name.to_string()))
    }

    /// Whether `number` is one of `tenant`'s own numbers (its DIDs), the only
    /// caller IDs its calls may present on a trunk.
    pub fn owns_number(&self, tenant: TenantId, number: &str) -> bool {
        self.dids.get(did_key(number)) == Some(&tenant)
    }

    /// An inbound call to `number` from `source`: the DID's tenant and the trunk it
    /// came through, when the source is one of that tenant's trunks.
    pub(crate) fn inbound(&self, source: IpAddr, number: &str) -> Option<(TenantId, &str)> {
        let tenant = *self.dids.get(did_key(number))?;
        self.by_ip
            .get(&source)?
            .iter()
            .find(|(t, _)| *t == tenant)
            .map(|(t, name)| (*t, name.as_str()))
    }
}

/// DIDs match with or without a leading `+`.
fn did_key(number: &str) -> &str {
    number.strip_prefix('+').unwrap_or(number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransportKind;

    fn trunk(tenant: i64, name: &str, addr: &str) -> TrunkEntry {
        TrunkEntry {
            tenant: TenantId(tenant),
            name: name.into(),
            peer: Peer {
                transport: TransportKind::Udp,
                addr: addr.parse().unwrap(),
                conn: None,
            },
            host: "carrier.example".into(),
            port: 5060,
            username: None,
            password: None,
        }
    }

    #[test]
    fn trunks_are_found_only_within_their_tenant() {
        let t = Trunks::new(vec![trunk(1, "out", "192.0.2.1:5060")], vec![]);
        assert!(t.get(TenantId(1), "out").is_some());
        assert!(t.get(TenantId(2), "out").is_none());
    }

    #[test]
    fn inbound_needs_the_did_and_a_trunk_of_the_same_tenant() {
        let t = Trunks::new(
            vec![
                trunk(1, "a", "192.0.2.1:5060"),
                trunk(2, "b", "192.0.2.2:5060"),
            ],
            vec![("+15550001".into(), TenantId(1))],
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(t.inbound(a, "15550001"), Some((TenantId(1), "a")));
        assert_eq!(t.inbound(a, "+15550001"), Some((TenantId(1), "a")));
        // Tenant 2's trunk cannot deliver tenant 1's number.
        assert_eq!(t.inbound(b, "15550001"), None);
        assert_eq!(t.inbound(a, "15550002"), None);
        // Only the owner may present the number as its caller ID.
        assert!(t.owns_number(TenantId(1), "+15550001"));
        assert!(t.owns_number(TenantId(1), "15550001"));
        assert!(!t.owns_number(TenantId(2), "+15550001"));
        assert!(!t.owns_number(TenantId(1), "+15550002"));
    }

    #[test]
    fn rejects_keep_to_failure_codes() {
        assert_eq!(
            RouteDecision::reject(200, "x"),
            RouteDecision::Reject {
                status: 500,
                reason: "x".into()
            }
        );
        assert_eq!(
            RouteDecision::reject(403, "no"),
            RouteDecision::Reject {
                status: 403,
                reason: "no".into()
            }
        );
    }
}
