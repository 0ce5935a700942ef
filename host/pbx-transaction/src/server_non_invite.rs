//! The non-INVITE server transaction (RFC 3261 §17.2.2).

use std::time::Instant;

use bytes::Bytes;

use crate::timers::Slots;
use crate::{Class, Error, Result, TimerEvent, Timers};

/// States of [`ServerNonInvite`] (§17.2.2, figure 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// The request was received; nothing sent yet, retransmissions are absorbed.
    Trying,
    /// A provisional was sent; request retransmissions get it again.
    Proceeding,
    /// The final was sent; request retransmissions get it again (timer J).
    Completed,
    /// Done.
    Terminated,
}

impl ServerNonInviteState {
    fn name(self) -> &'static str {
        match self {
            Self::Trying => "Trying",
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Terminated => "Terminated",
        }
    }
}

/// A non-INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    last_response: Option<Bytes>,
    reliable: bool,
    timers: Timers,
    slots: Slots,
}

impl ServerNonInvite {
    /// Starts the transaction for a request received at `now` (no timer runs yet; `now`
    /// keeps the constructors of all machines alike).
    pub fn new(_now: Instant, reliable: bool, timers: Timers) -> Self {
        Self {
            state: ServerNonInviteState::Trying,
            last_response: None,
            reliable,
            timers,
            slots: Slots::default(),
        }
    }

    /// A retransmission of the request arrived: returns the last response to send again,
    /// or `None` to absorb it (nothing sent yet, or the transaction ended).
    pub fn on_request_retransmission(&mut self, _now: Instant) -> Option<Bytes> {
        match self.state {
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => {
                self.last_response.clone()
            }
            _ => None,
        }
    }

    /// The TU sends a response: records it and returns the bytes to transmit. A 1xx
    /// moves to (or stays in) `Proceeding`; a 200–699 moves to `Completed` and starts
    /// timer J (`64*T1`, zero over reliable transport). Anything after the final
    /// response is an [`Error`].
    pub fn send_response(&mut self, now: Instant, status: u16, bytes: Bytes) -> Result<Bytes> {
        use ServerNonInviteState::*;
        let class = Class::of(status).ok_or(Error::InvalidStatus(status))?;
        match (self.state, class) {
            (Trying | Proceeding, Class::Provisional) => {
                self.state = Proceeding;
            }
            (Trying | Proceeding, Class::Success | Class::Failure) => {
                self.state = Completed;
                self.slots
                    .start_linger(now, self.timers.timer_j(self.reliable));
            }
            (state, _) => {
                return Err(Error::ResponseNotAllowed {
                    status,
                    state: state.name(),
                });
            }
        }
        self.last_response = Some(bytes.clone());
        Ok(bytes)
    }

    /// The earliest instant at which [`ServerNonInvite::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots.next()
    }

    /// Runs the timer due at `now`, if any: J terminates.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerEvent> {
        // Timer J is the only timer this machine runs.
        self.slots.due(now)?;
        self.state = ServerNonInviteState::Terminated;
        self.slots.clear();
        self.last_response = None;
        Some(TimerEvent::Terminated)
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bytes(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn run(tx: &mut ServerNonInvite, t0: Instant) -> Vec<(Duration, TimerEvent)> {
        let mut out = Vec::new();
        while let Some(due) = tx.poll_timeout() {
            if let Some(ev) = tx.handle_timeout(due) {
                out.push((due - t0, ev));
            }
        }
        out
    }

    #[test]
    fn trying_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(t0, false, Timers::default());
        assert_eq!(tx.on_request_retransmission(t0 + ms(500)), None);
        assert_eq!(tx.state(), ServerNonInviteState::Trying);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn proceeding_and_completed_resend_the_last_response() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(t0, false, Timers::default());
        assert_eq!(tx.send_response(t0, 100, bytes("100")), Ok(bytes("100")));
        assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
        assert_eq!(
            tx.on_request_retransmission(t0 + ms(500)),
            Some(bytes("100"))
        );
        assert_eq!(
            tx.send_response(t0 + ms(600), 200, bytes("200")),
            Ok(bytes("200"))
        );
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        assert_eq!(
            tx.on_request_retransmission(t0 + ms(1_500)),
            Some(bytes("200"))
        );
        assert_eq!(
            tx.on_request_retransmission(t0 + ms(3_500)),
            Some(bytes("200"))
        );
        assert_eq!(run(&mut tx, t0), vec![(ms(32_600), TimerEvent::Terminated)]);
        assert_eq!(tx.on_request_retransmission(t0 + ms(40_000)), None);
    }

    #[test]
    fn reliable_timer_j_is_zero() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(t0, true, Timers::default());
        tx.send_response(t0 + ms(10), 404, bytes("404")).unwrap();
        assert_eq!(run(&mut tx, t0), vec![(ms(10), TimerEvent::Terminated)]);
        assert!(tx.is_terminated());
    }

    #[test]
    fn responses_after_the_final_are_errors() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(t0, false, Timers::default());
        assert_eq!(
            tx.send_response(t0, 42, bytes("x")),
            Err(Error::InvalidStatus(42))
        );
        tx.send_response(t0, 200, bytes("200")).unwrap();
        assert_eq!(
            tx.send_response(t0, 180, bytes("180")),
            Err(Error::ResponseNotAllowed {
                status: 180,
                state: "Completed"
            })
        );
        assert!(tx.send_response(t0, 500, bytes("500")).is_err());
        assert_eq!(tx.on_request_retransmission(t0), Some(bytes("200")));
    }
}
