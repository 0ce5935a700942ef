//! The non-INVITE client transaction (RFC 3261 §17.1.2).

use std::time::Instant;

use bytes::Bytes;

use crate::timers::{Due, Slots};
use crate::{Class, TimerEvent, Timers};

/// States of [`ClientNonInvite`] (§17.1.2.2, figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// The request was sent; retransmitting (timer E, unreliable only) until a response
    /// comes or timer F fires.
    Trying,
    /// A provisional response came; retransmitting every T2 until the final one.
    Proceeding,
    /// A final response came; absorbing its retransmissions (timer K).
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    request: Bytes,
    reliable: bool,
    timers: Timers,
    slots: Slots,
}

impl ClientNonInvite {
    /// Starts the transaction for `request` and returns it with the bytes to send now.
    /// Timer F (`64*T1`) starts, and over unreliable transport timer E (`T1`).
    pub fn new(now: Instant, request: Bytes, reliable: bool, timers: Timers) -> (Self, Bytes) {
        let mut slots = Slots::default();
        if !reliable {
            slots.start_retransmit(now, timers.t1);
        }
        slots.start_give_up(now, timers.transaction_timeout());
        let first = request.clone();
        let tx = Self {
            state: ClientNonInviteState::Trying,
            request,
            reliable,
            timers,
            slots,
        };
        (tx, first)
    }

    /// Feeds a response with this `status` that matched the transaction; returns whether
    /// to pass it to the TU. Responses after the final one, and status codes outside
    /// `100..=699`, are absorbed.
    pub fn on_response(&mut self, now: Instant, status: u16) -> bool {
        use ClientNonInviteState::*;
        let Some(class) = Class::of(status) else {
            return false;
        };
        match (self.state, class) {
            (Trying | Proceeding, Class::Provisional) => {
                // Timer E keeps running; from its next firing it waits T2.
                self.state = Proceeding;
                true
            }
            (Trying | Proceeding, Class::Success | Class::Failure) => {
                self.state = Completed;
                // Nothing resends the request any more: timer K only waits.
                self.request = Bytes::new();
                self.slots.clear();
                self.slots
                    .start_linger(now, self.timers.timer_t4(self.reliable));
                true
            }
            _ => false,
        }
    }

    /// The earliest instant at which [`ClientNonInvite::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots.next()
    }

    /// Runs the timer due at `now`, if any: E retransmits the request (doubling up to
    /// T2 while `Trying`, every T2 while `Proceeding`), F times out, K terminates.
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
                let t2 = self.timers.t2;
                let next = match self.state {
                    ClientNonInviteState::Proceeding => t2,
                    _ => self.slots.doubled(self.timers.t1, Some(t2)),
                };
                self.slots.rearm(now, next);
                Some(TimerEvent::Retransmit(self.request.clone()))
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
        self.request = Bytes::new();
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const REQUEST: &[u8] = b"REGISTER sip:example.com SIP/2.0";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn start(t0: Instant, reliable: bool) -> ClientNonInvite {
        let (tx, first) =
            ClientNonInvite::new(t0, Bytes::from_static(REQUEST), reliable, Timers::default());
        assert_eq!(first, REQUEST);
        tx
    }

    fn run(tx: &mut ClientNonInvite, t0: Instant) -> Vec<(Duration, TimerEvent)> {
        let mut out = Vec::new();
        while let Some(due) = tx.poll_timeout() {
            if let Some(ev) = tx.handle_timeout(due) {
                out.push((due - t0, ev));
            }
        }
        out
    }

    fn retransmit() -> TimerEvent {
        TimerEvent::Retransmit(Bytes::from_static(REQUEST))
    }

    #[test]
    fn timer_e_doubles_capped_at_t2_until_timer_f() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        let mut expected: Vec<_> = [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
        ]
        .into_iter()
        .map(|t| (ms(t), retransmit()))
        .collect();
        expected.push((ms(32_000), TimerEvent::TimedOut));
        assert_eq!(run(&mut tx, t0), expected);
        assert!(tx.is_terminated());
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        assert_eq!(tx.handle_timeout(t0 + ms(500)), Some(retransmit()));
        // A provisional arrives before E's next firing at 1.5 s.
        assert!(tx.on_response(t0 + ms(600), 100));
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        let events = run(&mut tx, t0);
        let times: Vec<_> = events.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times,
            [
                1_500, 5_500, 9_500, 13_500, 17_500, 21_500, 25_500, 29_500, 32_000
            ]
            .map(ms)
        );
        assert_eq!(events.last().map(|(_, e)| e), Some(&TimerEvent::TimedOut));
    }

    #[test]
    fn reliable_transport_only_has_timer_f() {
        let t0 = Instant::now();
        let mut tx = start(t0, true);
        assert_eq!(run(&mut tx, t0), vec![(ms(32_000), TimerEvent::TimedOut)]);
    }

    #[test]
    fn final_response_then_timer_k() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        assert!(tx.on_response(t0 + ms(100), 180));
        assert!(tx.on_response(t0 + ms(200), 180));
        assert!(tx.on_response(t0 + ms(300), 401));
        assert_eq!(tx.state(), ClientNonInviteState::Completed);
        // Retransmitted finals (and anything else) are absorbed.
        assert!(!tx.on_response(t0 + ms(400), 401));
        assert!(!tx.on_response(t0 + ms(400), 200));
        assert!(!tx.on_response(t0 + ms(400), 180));
        assert_eq!(run(&mut tx, t0), vec![(ms(5_300), TimerEvent::Terminated)]);
        assert!(!tx.on_response(t0 + ms(6_000), 200));
    }

    #[test]
    fn reliable_timer_k_is_zero() {
        let t0 = Instant::now();
        let mut tx = start(t0, true);
        assert!(tx.on_response(t0 + ms(50), 200));
        assert_eq!(run(&mut tx, t0), vec![(ms(50), TimerEvent::Terminated)]);
    }

    #[test]
    fn invalid_status_codes_are_absorbed() {
        let t0 = Instant::now();
        let mut tx = start(t0, false);
        assert!(!tx.on_response(t0, 42));
        assert!(!tx.on_response(t0, 1_000));
        assert_eq!(tx.state(), ClientNonInviteState::Trying);
    }
}
