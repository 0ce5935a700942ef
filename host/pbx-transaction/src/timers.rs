//! Timer base values (RFC 3261 §17 and appendix A) and the per-transaction timer slots.

use std::time::{Duration, Instant};

/// The RFC 3261 timer base values; every transaction timer is derived from them.
///
/// The fields are public so a deployment can tune them; the defaults are the RFC's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip time estimate (default 500 ms).
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE responses
    /// (default 4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// No retransmission interval is shorter than this, so a zero `t1` or `t2` cannot make
/// a driver spin at one instant.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

impl Timers {
    /// `64*T1`: timers B, F, H, L, M and J over unreliable transport.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: at least 32 s over unreliable transport, zero over reliable.
    pub(crate) fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.transaction_timeout().max(Duration::from_secs(32))
        }
    }

    /// Timers I and K: T4 over unreliable transport, zero over reliable.
    pub(crate) fn timer_t4(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J: `64*T1` over unreliable transport, zero over reliable.
    pub(crate) fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.transaction_timeout()
        }
    }
}

/// A running retransmission timer (A, E or G).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retransmit {
    pub(crate) at: Instant,
    pub(crate) interval: Duration,
}

/// Which slot fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// A wait timer (D, I, J, K, L, M): the transaction ends quietly.
    Linger,
    /// A give-up timer (B, F, H): the transaction ends with a timeout.
    GiveUp,
    /// A retransmission timer (A, E, G).
    Retransmit,
}

/// The three kinds of timer any one transaction state runs at most one of each:
/// a retransmission timer, a give-up timer and a wait-then-terminate timer.
///
/// A deadline that would overflow `Instant` is treated as "never".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Slots {
    pub(crate) retransmit: Option<Retransmit>,
    pub(crate) give_up: Option<Instant>,
    pub(crate) linger: Option<Instant>,
}

impl Slots {
    /// Starts a retransmission timer that first fires `interval` after `now`.
    pub(crate) fn start_retransmit(&mut self, now: Instant, interval: Duration) {
        let interval = interval.max(MIN_INTERVAL);
        self.retransmit = now
            .checked_add(interval)
            .map(|at| Retransmit { at, interval });
    }

    pub(crate) fn start_give_up(&mut self, now: Instant, after: Duration) {
        self.give_up = now.checked_add(after);
    }

    pub(crate) fn start_linger(&mut self, now: Instant, after: Duration) {
        self.linger = now.checked_add(after);
    }

    /// The interval the retransmission timer last waited, if it runs.
    pub(crate) fn interval(&self) -> Option<Duration> {
        self.retransmit.map(|r| r.interval)
    }

    /// The next retransmission interval of §17's exponential back-off: twice the
    /// last one (`t1` if none ran yet), capped at `cap` when given (T2 for timers E
    /// and G; timer A has no cap).
    pub(crate) fn doubled(&self, t1: Duration, cap: Option<Duration>) -> Duration {
        let next = self.interval().unwrap_or(t1).saturating_mul(2);
        cap.map_or(next, |c| next.min(c))
    }

    /// Re-arms the retransmission timer after it fired, `next` after its last
    /// deadline (or after `now`, if the driver was so late that deadline is past too).
    pub(crate) fn rearm(&mut self, now: Instant, next: Duration) {
        let Some(last) = self.retransmit else {
            return;
        };
        let interval = next.max(MIN_INTERVAL);
        let at = match last.at.checked_add(interval) {
            Some(at) if at > now => Some(at),
            _ => now.checked_add(interval),
        };
        self.retransmit = at.map(|at| Retransmit { at, interval });
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// The earliest deadline of any running timer.
    pub(crate) fn next(&self) -> Option<Instant> {
        [self.retransmit.map(|r| r.at), self.give_up, self.linger]
            .into_iter()
            .flatten()
            .min()
    }

    /// The slot to act on at `now`. Ending timers win over a retransmission due at
    /// the same time: there is no point resending just before giving up.
    pub(crate) fn due(&self, now: Instant) -> Option<Due> {
        if self.linger.is_some_and(|at| at <= now) {
            Some(Due::Linger)
        } else if self.give_up.is_some_and(|at| at <= now) {
            Some(Due::GiveUp)
        } else if self.retransmit.is_some_and(|r| r.at <= now) {
            Some(Due::Retransmit)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_rfc_values() {
        let t = Timers::default();
        assert_eq!(t.t1, Duration::from_millis(500));
        assert_eq!(t.t2, Duration::from_secs(4));
        assert_eq!(t.t4, Duration::from_secs(5));
        assert_eq!(t.transaction_timeout(), Duration::from_secs(32));
        assert_eq!(t.timer_d(false), Duration::from_secs(32));
        assert_eq!(t.timer_d(true), Duration::ZERO);
        assert_eq!(t.timer_t4(false), Duration::from_secs(5));
        assert_eq!(t.timer_j(true), Duration::ZERO);
    }

    #[test]
    fn timer_d_is_at_least_32_seconds_with_a_small_t1() {
        let t = Timers {
            t1: Duration::from_millis(100),
            ..Timers::default()
        };
        assert_eq!(t.timer_d(false), Duration::from_secs(32));
    }

    #[test]
    fn overflowing_deadlines_mean_never() {
        let now = Instant::now();
        let mut slots = Slots::default();
        slots.start_give_up(now, Duration::MAX);
        slots.start_retransmit(now, Duration::MAX);
        assert_eq!(slots.next(), None);
        assert_eq!(slots.due(now), None);
    }

    #[test]
    fn ending_timers_win_over_a_retransmission() {
        let now = Instant::now();
        let mut slots = Slots::default();
        slots.start_retransmit(now, Duration::from_secs(1));
        slots.start_give_up(now, Duration::from_secs(2));
        assert_eq!(
            slots.due(now + Duration::from_secs(1)),
            Some(Due::Retransmit)
        );
        assert_eq!(slots.due(now + Duration::from_secs(2)), Some(Due::GiveUp));
        slots.start_linger(now, Duration::from_secs(2));
        assert_eq!(slots.due(now + Duration::from_secs(2)), Some(Due::Linger));
    }

    #[test]
    fn a_late_rearm_does_not_schedule_in_the_past() {
        let now = Instant::now();
        let mut slots = Slots::default();
        slots.start_retransmit(now, Duration::from_secs(1));
        let late = now + Duration::from_secs(10);
        slots.rearm(late, Duration::from_secs(2));
        assert_eq!(slots.next(), Some(late + Duration::from_secs(2)));
    }

    #[test]
    fn zero_intervals_are_clamped() {
        let now = Instant::now();
        let mut slots = Slots::default();
        slots.start_retransmit(now, Duration::ZERO);
        assert_eq!(slots.next(), Some(now + MIN_INTERVAL));
        slots.rearm(now + MIN_INTERVAL, Duration::ZERO);
        assert_eq!(slots.next(), Some(now + MIN_INTERVAL * 2));
    }
}
