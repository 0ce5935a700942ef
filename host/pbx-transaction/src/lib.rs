//! SIP transactions (RFC 3261 §17, with the RFC 6026 `Accepted` states): the layer that
//! absorbs retransmissions and runs timers A–M, so the transaction user (TU) above it
//! sees each request and response once.
//!
//! # Design
//!
//! Every transaction is a plain state machine in the style of `quinn-proto`: it reads no
//! clock and does no I/O. Inputs carry the current time (`now: Instant`) and return what
//! to transmit; the owner asks [`ClientInvite::poll_timeout`] (and its siblings) when the
//! next timer is due and calls `handle_timeout(now)` then, which yields at most one
//! [`TimerEvent`]. The crate knows nothing of SIP syntax: messages are opaque
//! [`Bytes`] and responses are described by their status code, so the
//! parser and the transport stay elsewhere and tests drive every timer with a virtual
//! clock.
//!
//! The four machines are [`ClientInvite`], [`ClientNonInvite`], [`ServerInvite`] and
//! [`ServerNonInvite`]; [`Transaction`] wraps any of them for a single map. Incoming
//! messages are matched to a transaction by [`Key`] (§17.1.3, §17.2.3), and
//! [`TimerQueue`] lets the owner of many transactions find the next deadline cheaply.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use pbx_transaction::{ClientNonInvite, TimerEvent, Timers};
//!
//! let start = Instant::now();
//! let request = Bytes::from_static(b"OPTIONS sip:a@example.com SIP/2.0\r\n...");
//! let (mut tx, first) = ClientNonInvite::new(start, request.clone(), false, Timers::default());
//! assert_eq!(first, request); // send it
//! let due = tx.poll_timeout().unwrap(); // timer E
//! assert_eq!(due, start + Duration::from_millis(500));
//! assert_eq!(tx.handle_timeout(due), Some(TimerEvent::Retransmit(request)));
//! assert!(tx.on_response(due, 200)); // pass the 200 up
//! ```
//!
//! A transaction keeps only the bytes it may still have to send: the request
//! while timer A or E may resend it, the response a retransmitted request
//! gets on the server side, the ACK of a non-2xx final on the client side.
//! Once it only waits out timer D, I, J, K, L or M it holds its timers, its
//! state and at most one response or ACK, so the many completed transactions
//! a busy owner keeps for up to 32 s cost little. A [`Key`] is one shared
//! allocation, so the owner's map and its [`TimerQueue`] share it too, and the
//! queue gives back the room of a burst of deadlines once they are gone.
//! [`table`] keeps such tables, whose entries are replaced by the thousand a
//! second, sized to what they hold.
//!
//! Transport reliability (`reliable = true` for TCP and TLS) switches retransmission
//! timers off and makes the wait timers D, I, J and K zero, as §17 prescribes; a zero
//! wait timer still reports [`TimerEvent::Terminated`] through `handle_timeout`, so
//! cleanup follows one path.

mod client_invite;
mod client_non_invite;
mod key;
mod server_invite;
mod server_non_invite;
pub mod table;
mod timer_queue;
mod timers;

#[cfg(test)]
mod pair_tests;

use std::time::Instant;

use bytes::Bytes;

pub use client_invite::{ClientAction, ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use key::{Key, MAGIC_COOKIE, new_branch};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use timer_queue::TimerQueue;
pub use timers::Timers;

/// Errors of this crate: the TU asked a transaction for something §17 does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A status code outside `100..=699`.
    #[error("status code {0} is not in 100..=699")]
    InvalidStatus(u16),
    /// A response the transaction cannot send in its current state (for example a
    /// second final response, or a provisional one after the final).
    #[error("a {status} response cannot be sent in the {state} state")]
    ResponseNotAllowed {
        /// The status code the TU tried to send.
        status: u16,
        /// The state the transaction was in.
        state: &'static str,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a timer firing asks the owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerEvent {
    /// Timer A, E or G: send these bytes again.
    Retransmit(Bytes),
    /// Timer B, F or H: the transaction gave up and is now terminated. For B and F the
    /// TU treats this as a 408 (Request Timeout) response; for H the ACK never came.
    TimedOut,
    /// Timer D, I, J, K, L or M: the transaction ended normally; forget it.
    Terminated,
}

/// The class of a status code, as the state machines care about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// 1xx.
    Provisional,
    /// 2xx.
    Success,
    /// 3xx–6xx.
    Failure,
}

impl Class {
    pub(crate) fn of(status: u16) -> Option<Self> {
        match status {
            100..=199 => Some(Self::Provisional),
            200..=299 => Some(Self::Success),
            300..=699 => Some(Self::Failure),
            _ => None,
        }
    }
}

/// Any one of the four transaction kinds, so the owner can keep them in one map and
/// drive their timers uniformly.
#[derive(Debug, Clone)]
pub enum Transaction {
    /// An INVITE we sent.
    ClientInvite(ClientInvite),
    /// A non-INVITE request we sent.
    ClientNonInvite(ClientNonInvite),
    /// An INVITE we received.
    ServerInvite(ServerInvite),
    /// A non-INVITE request we received.
    ServerNonInvite(ServerNonInvite),
}

impl Transaction {
    /// The earliest instant at which [`Transaction::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Self::ClientInvite(t) => t.poll_timeout(),
            Self::ClientNonInvite(t) => t.poll_timeout(),
            Self::ServerInvite(t) => t.poll_timeout(),
            Self::ServerNonInvite(t) => t.poll_timeout(),
        }
    }

    /// Runs the timer due at `now`, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerEvent> {
        match self {
            Self::ClientInvite(t) => t.handle_timeout(now),
            Self::ClientNonInvite(t) => t.handle_timeout(now),
            Self::ServerInvite(t) => t.handle_timeout(now),
            Self::ServerNonInvite(t) => t.handle_timeout(now),
        }
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        match self {
            Self::ClientInvite(t) => t.is_terminated(),
            Self::ClientNonInvite(t) => t.is_terminated(),
            Self::ServerInvite(t) => t.is_terminated(),
            Self::ServerNonInvite(t) => t.is_terminated(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(Class::of(99), None);
        assert_eq!(Class::of(100), Some(Class::Provisional));
        assert_eq!(Class::of(199), Some(Class::Provisional));
        assert_eq!(Class::of(200), Some(Class::Success));
        assert_eq!(Class::of(300), Some(Class::Failure));
        assert_eq!(Class::of(699), Some(Class::Failure));
        assert_eq!(Class::of(700), None);
    }

    #[test]
    fn the_wrapper_drives_the_inner_machine() {
        let start = Instant::now();
        let (tx, _) =
            ClientNonInvite::new(start, Bytes::from_static(b"R"), true, Timers::default());
        let mut tx = Transaction::ClientNonInvite(tx);
        let f = start + Duration::from_secs(32);
        assert_eq!(tx.poll_timeout(), Some(f));
        assert!(!tx.is_terminated());
        assert_eq!(tx.handle_timeout(f), Some(TimerEvent::TimedOut));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }
}
