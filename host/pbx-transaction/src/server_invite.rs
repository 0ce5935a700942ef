//! The INVITE server transaction (RFC 3261 §17.2.1, amended by RFC 6026).

use std::time::Instant;

use bytes::Bytes;

use crate::timers::{Due, Slots};
use crate::{Class, Error, Result, TimerEvent, Timers};

/// States of [`ServerInvite`] (§17.2.1, figure 7 as amended by RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// The INVITE was received; the TU may send provisional responses.
    Proceeding,
    /// A 300–699 final was sent; retransmitting it (timer G, unreliable only) until the
    /// ACK comes or timer H fires.
    Completed,
    /// The ACK came; absorbing ACK retransmissions (timer I).
    Confirmed,
    /// A 2xx was sent (RFC 6026); the TU retransmits it, the transaction absorbs INVITE
    /// retransmissions and passes ACKs up (timer L).
    Accepted,
    /// Done.
    Terminated,
}

impl ServerInviteState {
    fn name(self) -> &'static str {
        match self {
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Confirmed => "Confirmed",
            Self::Accepted => "Accepted",
            Self::Terminated => "Terminated",
        }
    }
}

/// An INVITE server transaction.
///
/// Sending `100 Trying` within 200 ms (§17.2.1) is the TU's job: it builds the bytes.
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: ServerInviteState,
    /// What a retransmitted INVITE gets: the last provisional in
    /// `Proceeding`, the 300–699 final in `Completed` (which timer G resends
    /// too); nothing in the other states, which keep no bytes.
    response: Option<Bytes>,
    reliable: bool,
    timers: Timers,
    slots: Slots,
}

impl ServerInvite {
    /// Starts the transaction for an INVITE received at `now` (no timer runs yet; `now`
    /// keeps the constructors of all machines alike).
    pub fn new(_now: Instant, reliable: bool, timers: Timers) -> Self {
        Self {
            state: ServerInviteState::Proceeding,
            response: None,
            reliable,
            timers,
            slots: Slots::default(),
        }
    }

    /// A retransmission of the INVITE arrived: returns the response to send again (the
    /// last provisional in `Proceeding`, the final in `Completed`) or `None` to absorb
    /// it silently.
    pub fn on_request_retransmission(&mut self, _now: Instant) -> Option<Bytes> {
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => self.response.clone(),
            _ => None,
        }
    }

    /// The TU sends a response: records it and returns the bytes to transmit.
    ///
    /// A 1xx keeps the transaction in `Proceeding`; a 2xx moves it to `Accepted` and
    /// starts timer L (`64*T1`), and further 2xx responses may be sent there; a 300–699
    /// moves it to `Completed` with timer H (`64*T1`) and, over unreliable transport,
    /// timer G (`T1`). Anything else is an [`Error`].
    pub fn send_response(&mut self, now: Instant, status: u16, bytes: Bytes) -> Result<Bytes> {
        use ServerInviteState::*;
        let class = Class::of(status).ok_or(Error::InvalidStatus(status))?;
        match (self.state, class) {
            (Proceeding, Class::Provisional) => {
                self.response = Some(bytes.clone());
            }
            (Proceeding, Class::Success) => {
                // The TU retransmits its 2xx itself (RFC 6026).
                self.state = Accepted;
                self.response = None;
                self.slots
                    .start_linger(now, self.timers.transaction_timeout());
            }
            (Proceeding, Class::Failure) => {
                self.state = Completed;
                self.response = Some(bytes.clone());
                if !self.reliable {
                    self.slots.start_retransmit(now, self.timers.t1);
                }
                self.slots
                    .start_give_up(now, self.timers.transaction_timeout());
            }
            (Accepted, Class::Success) => {}
            (state, _) => {
                return Err(Error::ResponseNotAllowed {
                    status,
                    state: state.name(),
                });
            }
        }
        Ok(bytes)
    }

    /// An ACK matched the transaction; returns whether to pass it to the TU.
    ///
    /// In `Completed` the ACK ends retransmissions: the transaction moves to `Confirmed`
    /// and starts timer I (T4, zero over reliable transport). In `Accepted` the ACK is
    /// for the 2xx and goes up to the TU (RFC 6026). Elsewhere it is absorbed.
    pub fn on_ack(&mut self, now: Instant) -> bool {
        match self.state {
            ServerInviteState::Completed => {
                self.state = ServerInviteState::Confirmed;
                self.response = None;
                self.slots.clear();
                self.slots
                    .start_linger(now, self.timers.timer_t4(self.reliable));
                false
            }
            ServerInviteState::Accepted => true,
            _ => false,
        }
    }

    /// The earliest instant at which [`ServerInvite::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots.next()
    }

    /// Runs the timer due at `now`, if any: G retransmits the final response (doubling
    /// up to T2), H times out (no ACK came), I and L terminate.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerEvent> {
        match self.slots.due(now)? {
            Due::Linger => {
                self.terminate();
                Some(TimerEvent::Terminated)
            }
            Due::GiveUp => {
                self.terminate();
                Some(TimerEvent::TimedOut)
            }
            Due::Retransmit => {
                let Some(response) = self.response.clone() else {
                    self.slots.retransmit = None;
                    return None;
                };
                let next = self.slots.doubled(self.timers.t1, Some(self.timers.t2));
                self.slots.rearm(now, next);
                Some(TimerEvent::Retransmit(response))
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.slots.clear();
        self.response = None;
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

    fn run(tx: &mut ServerInvite, t0: Instant) -> Vec<(Duration, TimerEvent)> {
        let mut out = Vec::new();
        while let Some(due) = tx.poll_timeout() {
            if let Some(ev) = tx.handle_timeout(due) {
                out.push((due - t0, ev));
            }
        }
        out
    }

    #[test]
    fn proceeding_resends_the_last_provisional() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, false, Timers::default());
        assert_eq!(tx.on_request_retransmission(t0), None);
        assert_eq!(tx.send_response(t0, 100, bytes("100")), Ok(bytes("100")));
        assert_eq!(
            tx.on_request_retransmission(t0 + ms(500)),
            Some(bytes("100"))
        );
        assert_eq!(
            tx.send_response(t0 + ms(600), 180, bytes("180")),
            Ok(bytes("180"))
        );
        assert_eq!(
            tx.on_request_retransmission(t0 + ms(700)),
            Some(bytes("180"))
        );
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
    }

    #[test]
    fn timer_g_doubles_capped_at_t2_until_timer_h() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, false, Timers::default());
        assert_eq!(tx.send_response(t0, 486, bytes("486")), Ok(bytes("486")));
        assert_eq!(tx.state(), ServerInviteState::Completed);
        let mut expected: Vec<_> = [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
        ]
        .into_iter()
        .map(|t| (ms(t), TimerEvent::Retransmit(bytes("486"))))
        .collect();
        expected.push((ms(32_000), TimerEvent::TimedOut));
        assert_eq!(run(&mut tx, t0), expected);
        assert!(tx.is_terminated());
    }

    #[test]
    fn completed_resends_the_final_for_each_retransmitted_invite() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, false, Timers::default());
        tx.send_response(t0, 180, bytes("180")).unwrap();
        tx.send_response(t0, 404, bytes("404")).unwrap();
        for n in 1..=3 {
            assert_eq!(
                tx.on_request_retransmission(t0 + ms(n * 100)),
                Some(bytes("404"))
            );
        }
    }

    #[test]
    fn ack_confirms_then_timer_i() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, false, Timers::default());
        tx.send_response(t0, 486, bytes("486")).unwrap();
        assert_eq!(
            tx.handle_timeout(t0 + ms(500)),
            Some(TimerEvent::Retransmit(bytes("486")))
        );
        assert!(!tx.on_ack(t0 + ms(700)));
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        // ACK and INVITE retransmissions are absorbed; no more G or H.
        assert!(!tx.on_ack(t0 + ms(800)));
        assert_eq!(tx.on_request_retransmission(t0 + ms(800)), None);
        assert_eq!(run(&mut tx, t0), vec![(ms(5_700), TimerEvent::Terminated)]);
    }

    #[test]
    fn reliable_completed_has_only_timer_h() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, true, Timers::default());
        tx.send_response(t0, 500, bytes("500")).unwrap();
        assert_eq!(run(&mut tx, t0), vec![(ms(32_000), TimerEvent::TimedOut)]);
    }

    #[test]
    fn reliable_timer_i_is_zero() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, true, Timers::default());
        tx.send_response(t0, 500, bytes("500")).unwrap();
        assert!(!tx.on_ack(t0 + ms(30)));
        assert_eq!(run(&mut tx, t0), vec![(ms(30), TimerEvent::Terminated)]);
    }

    #[test]
    fn success_enters_accepted_with_timer_l() {
        for reliable in [false, true] {
            let t0 = Instant::now();
            let mut tx = ServerInvite::new(t0, reliable, Timers::default());
            tx.send_response(t0, 180, bytes("180")).unwrap();
            assert_eq!(
                tx.send_response(t0 + ms(10), 200, bytes("200")),
                Ok(bytes("200"))
            );
            assert_eq!(tx.state(), ServerInviteState::Accepted);
            // The transaction does not retransmit the 2xx and absorbs INVITEs.
            assert_eq!(tx.on_request_retransmission(t0 + ms(500)), None);
            // The TU's 2xx retransmissions pass through; other responses are refused.
            assert_eq!(
                tx.send_response(t0 + ms(510), 200, bytes("200")),
                Ok(bytes("200"))
            );
            assert_eq!(
                tx.send_response(t0 + ms(520), 486, bytes("486")),
                Err(Error::ResponseNotAllowed {
                    status: 486,
                    state: "Accepted"
                })
            );
            assert!(tx.send_response(t0 + ms(520), 180, bytes("180")).is_err());
            // ACKs are passed up.
            assert!(tx.on_ack(t0 + ms(600)));
            assert!(tx.on_ack(t0 + ms(700)));
            assert_eq!(run(&mut tx, t0), vec![(ms(32_010), TimerEvent::Terminated)]);
        }
    }

    #[test]
    fn wrong_responses_are_errors() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, false, Timers::default());
        assert_eq!(
            tx.send_response(t0, 99, bytes("x")),
            Err(Error::InvalidStatus(99))
        );
        assert_eq!(
            tx.send_response(t0, 700, bytes("x")),
            Err(Error::InvalidStatus(700))
        );
        tx.send_response(t0, 603, bytes("603")).unwrap();
        assert!(tx.send_response(t0, 603, bytes("603")).is_err());
        assert!(tx.send_response(t0, 200, bytes("200")).is_err());
        assert!(tx.send_response(t0, 180, bytes("180")).is_err());
        // The failed calls changed nothing.
        assert_eq!(tx.on_request_retransmission(t0), Some(bytes("603")));
        assert_eq!(tx.state(), ServerInviteState::Completed);
    }

    #[test]
    fn ack_before_a_final_is_absorbed() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, false, Timers::default());
        assert!(!tx.on_ack(t0));
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
    }

    #[test]
    fn terminated_refuses_and_absorbs() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(t0, true, Timers::default());
        tx.send_response(t0, 486, bytes("486")).unwrap();
        tx.on_ack(t0);
        run(&mut tx, t0);
        assert!(tx.is_terminated());
        assert!(!tx.on_ack(t0));
        assert_eq!(tx.on_request_retransmission(t0), None);
        assert!(tx.send_response(t0, 200, bytes("200")).is_err());
    }
}
