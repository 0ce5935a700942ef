//! The INVITE client transaction (RFC 3261 §17.1.1, amended by RFC 6026).

use std::time::Instant;

use bytes::Bytes;

use crate::timers::{Due, Slots};
use crate::{Class, TimerEvent, Timers};

/// States of [`ClientInvite`] (§17.1.1.2, figure 5 as amended by RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// The INVITE was sent; retransmitting (timer A, unreliable only) until a response
    /// comes or timer B fires.
    Calling,
    /// A provisional response came; waiting for the final one (no timers).
    Proceeding,
    /// A 300–699 final came and was ACKed; absorbing its retransmissions (timer D).
    Completed,
    /// A 2xx came (RFC 6026); passing 2xx retransmissions up to the TU (timer M).
    Accepted,
    /// Done.
    Terminated,
}

/// What to do with a response given to [`ClientInvite::on_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAction {
    /// Pass the response up to the TU (otherwise it was a retransmission to absorb).
    pub pass_to_tu: bool,
    /// Bytes to transmit: the ACK for a 300–699 final response.
    pub transmit: Option<Bytes>,
}

impl ClientAction {
    const ABSORB: Self = Self {
        pass_to_tu: false,
        transmit: None,
    };
    const PASS: Self = Self {
        pass_to_tu: true,
        transmit: None,
    };
}

/// An INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: ClientInviteState,
    /// The INVITE while `Calling` (timer A resends it), the ACK of the
    /// 300–699 final in `Completed` (each retransmission of that final gets
    /// it again), and empty otherwise: the two are never needed at once.
    bytes: Bytes,
    reliable: bool,
    timers: Timers,
    slots: Slots,
}

impl ClientInvite {
    /// Starts the transaction for `request` (the INVITE as it goes on the wire) and
    /// returns it with the bytes to send now. Timer B (`64*T1`) starts, and over
    /// unreliable transport timer A (`T1`).
    pub fn new(now: Instant, request: Bytes, reliable: bool, timers: Timers) -> (Self, Bytes) {
        let mut slots = Slots::default();
        if !reliable {
            slots.start_retransmit(now, timers.t1);
        }
        slots.start_give_up(now, timers.transaction_timeout());
        let first = request.clone();
        let tx = Self {
            state: ClientInviteState::Calling,
            bytes: request,
            reliable,
            timers,
            slots,
        };
        (tx, first)
    }

    /// Feeds a response with this `status` that matched the transaction.
    ///
    /// For the first 300–699 final response `ack` is called once to build the ACK, which
    /// is sent and kept: each retransmission of that final response while `Completed`
    /// gets the same ACK again. A 2xx moves to `Accepted`, where later 2xx responses
    /// are passed up too (the TU ACKs 2xx itself, in a new transaction). A status code
    /// outside `100..=699` is absorbed.
    pub fn on_response(
        &mut self,
        now: Instant,
        status: u16,
        ack: impl FnOnce() -> Bytes,
    ) -> ClientAction {
        use ClientInviteState::*;
        let Some(class) = Class::of(status) else {
            return ClientAction::ABSORB;
        };
        if self.state == Calling {
            // Any response ends `Calling`, and with it timer A, the only one
            // that resends the INVITE: the bytes need not wait out timer D or M.
            self.bytes = Bytes::new();
        }
        match (self.state, class) {
            (Calling | Proceeding, Class::Provisional) => {
                self.state = Proceeding;
                self.slots.clear();
                ClientAction::PASS
            }
            (Calling | Proceeding, Class::Success) => {
                self.state = Accepted;
                self.slots.clear();
                self.slots
                    .start_linger(now, self.timers.transaction_timeout());
                ClientAction::PASS
            }
            (Calling | Proceeding, Class::Failure) => {
                let ack = ack();
                self.bytes = ack.clone();
                self.state = Completed;
                self.slots.clear();
                self.slots
                    .start_linger(now, self.timers.timer_d(self.reliable));
                ClientAction {
                    pass_to_tu: true,
                    transmit: Some(ack),
                }
            }
            (Completed, Class::Failure) => ClientAction {
                pass_to_tu: false,
                transmit: Some(self.bytes.clone()),
            },
            (Accepted, Class::Success) => ClientAction::PASS,
            _ => ClientAction::ABSORB,
        }
    }

    /// The earliest instant at which [`ClientInvite::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots.next()
    }

    /// Runs the timer due at `now`, if any: A retransmits the INVITE (doubling its
    /// interval), B times out, D and M terminate.
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
                let next = self.slots.doubled(self.timers.t1, None);
                self.slots.rearm(now, next);
                Some(TimerEvent::Retransmit(self.bytes.clone()))
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.bytes = Bytes::new();
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    const INVITE: &[u8] = b"INVITE sip:b@example.com SIP/2.0";
    const ACK: &[u8] = b"ACK sip:b@example.com SIP/2.0";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn start(t0: Instant, reliable: bool) -> ClientInvite {
        let (tx, first) =
            ClientInvite::new(t0, Bytes::from_static(INVITE), reliable, Timers::default());
        assert_eq!(first, INVITE);
        tx
    }

    /// Jumps the clock to each timer until none is left; returns (offset, event).
    fn run(tx: &mut ClientInvite, t0: Instant) -> Vec<(Duration, TimerEvent)> {
        let mut out = Vec::new();
        while let Some(due) = tx.poll_timeout() {
            if let Some(ev) = tx.handle_timeout(due) {
                out.push((due - t0, ev));
            }
        }
        out
    }

    fn ack() -> Bytes {
        Bytes::from_static(ACK)
    }

    #[test]
    fn timer_a_doubles_until_timer_b() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        let events = run(&mut tx, t0);
        let re = TimerEvent::Retransmit(Bytes::from_static(INVITE));
        assert_eq!(
            events,
            vec![
                (ms(500), re.clone()),
                (ms(1_500), re.clone()),
                (ms(3_500), re.clone()),
                (ms(7_500), re.clone()),
                (ms(15_500), re.clone()),
                (ms(31_500), re),
                (ms(32_000), TimerEvent::TimedOut),
            ]
        );
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_transport_has_no_timer_a() {
        let t0 = Instant::now();
        let mut tx = start(t0, true);
        assert_eq!(run(&mut tx, t0), vec![(ms(32_000), TimerEvent::TimedOut)]);
    }

    #[test]
    fn early_timeout_calls_do_nothing() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        assert_eq!(tx.handle_timeout(t0 + ms(499)), None);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(500)));
    }

    #[test]
    fn provisional_stops_a_and_b() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        let action = tx.on_response(t0 + ms(100), 180, || panic!("no ACK for a 1xx"));
        assert_eq!(action, ClientAction::PASS);
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.on_response(t0 + ms(200), 183, ack), ClientAction::PASS);
    }

    #[test]
    fn failure_is_acked_then_timer_d_terminates() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        let calls = Cell::new(0);
        let build = || {
            calls.set(calls.get() + 1);
            ack()
        };
        let action = tx.on_response(t0 + ms(100), 486, build);
        assert_eq!(
            action,
            ClientAction {
                pass_to_tu: true,
                transmit: Some(ack())
            }
        );
        assert_eq!(tx.state(), ClientInviteState::Completed);
        // Each retransmitted final gets the stored ACK again, and is not passed up.
        for n in 1..=3 {
            let action = tx.on_response(t0 + ms(100 + n * 500), 486, || panic!("built once"));
            assert_eq!(
                action,
                ClientAction {
                    pass_to_tu: false,
                    transmit: Some(ack())
                }
            );
        }
        assert_eq!(calls.get(), 1);
        // Stray provisional and 2xx in Completed are absorbed.
        assert_eq!(
            tx.on_response(t0 + ms(2_000), 180, ack),
            ClientAction::ABSORB
        );
        assert_eq!(
            tx.on_response(t0 + ms(2_000), 200, ack),
            ClientAction::ABSORB
        );
        assert_eq!(run(&mut tx, t0), vec![(ms(32_100), TimerEvent::Terminated)]);
        assert_eq!(
            tx.on_response(t0 + ms(40_000), 486, ack),
            ClientAction::ABSORB
        );
    }

    #[test]
    fn failure_after_proceeding_is_acked() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        tx.on_response(t0 + ms(100), 100, ack);
        let action = tx.on_response(t0 + ms(900), 603, ack);
        assert!(action.pass_to_tu);
        assert_eq!(action.transmit, Some(ack()));
    }

    #[test]
    fn reliable_timer_d_is_zero() {
        let t0 = Instant::now();
        let mut tx = start(t0, true);
        tx.on_response(t0 + ms(100), 404, ack);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(100)));
        assert_eq!(run(&mut tx, t0), vec![(ms(100), TimerEvent::Terminated)]);
    }

    #[test]
    fn success_enters_accepted_and_passes_retransmissions_up() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        let action = tx.on_response(t0 + ms(100), 200, || panic!("the TU ACKs a 2xx"));
        assert_eq!(action, ClientAction::PASS);
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        // 2xx retransmissions (or other forks' 2xx) go up; nothing is sent.
        assert_eq!(tx.on_response(t0 + ms(600), 200, ack), ClientAction::PASS);
        assert_eq!(tx.on_response(t0 + ms(700), 202, ack), ClientAction::PASS);
        // Anything else is absorbed.
        assert_eq!(tx.on_response(t0 + ms(800), 180, ack), ClientAction::ABSORB);
        assert_eq!(tx.on_response(t0 + ms(800), 500, ack), ClientAction::ABSORB);
        // Timer M = 64*T1 from entering Accepted.
        assert_eq!(run(&mut tx, t0), vec![(ms(32_100), TimerEvent::Terminated)]);
    }

    #[test]
    fn success_over_reliable_still_waits_timer_m() {
        let t0 = Instant::now();
        let mut tx = start(t0, true);
        tx.on_response(t0, 200, ack);
        assert_eq!(run(&mut tx, t0), vec![(ms(32_000), TimerEvent::Terminated)]);
    }

    #[test]
    fn invalid_status_codes_are_absorbed() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        assert_eq!(tx.on_response(t0, 0, ack), ClientAction::ABSORB);
        assert_eq!(tx.on_response(t0, 99, ack), ClientAction::ABSORB);
        assert_eq!(tx.on_response(t0, 700, ack), ClientAction::ABSORB);
        assert_eq!(tx.state(), ClientInviteState::Calling);
    }

    #[test]
    fn terminated_absorbs_everything() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        run(&mut tx, t0);
        assert_eq!(
            tx.on_response(t0 + ms(40_000), 200, ack),
            ClientAction::ABSORB
        );
        assert_eq!(
            tx.on_response(t0 + ms(40_000), 180, ack),
            ClientAction::ABSORB
        );
        assert_eq!(tx.handle_timeout(t0 + ms(100_000)), None);
    }
}
