//! Request rate limits (fixed one-minute windows in a bounded table) and the
//! backoff schedule for failed logins. Time is always a parameter.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Length of a rate-limit window.
const WINDOW_MS: i64 = 60_000;

/// Counts requests per key per minute. The table holds at most `max_keys`
/// keys: stale windows are dropped first, then arbitrary entries, so memory
/// stays bounded whatever the traffic.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_window: u32,
    max_keys: usize,
    table: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_window: u32, max_keys: usize) -> Self {
        RateLimiter {
            per_window,
            max_keys: max_keys.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key`; `Err(seconds)` when over the limit, with the
    /// time until the window ends.
    pub(crate) fn check(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        let window = now_ms.div_euclid(WINDOW_MS);
        let mut table = self.table.lock();
        if !table.contains_key(key) && table.len() >= self.max_keys {
            table.retain(|_, (w, _)| *w == window);
            if table.len() >= self.max_keys
                && let Some(victim) = table.keys().next().cloned()
            {
                table.remove(&victim);
            }
        }
        let entry = table.entry(key.to_owned()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= self.per_window {
            let end = (window + 1) * WINDOW_MS;
            let wait_ms = u64::try_from(end - now_ms).unwrap_or(0);
            return Err(wait_ms.div_ceil(1000));
        }
        entry.1 += 1;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.lock().len()
    }
}

/// Failed logins allowed for a user before backoff starts.
pub(crate) const USER_FREE_FAILURES: u32 = 3;
/// Failed logins allowed from one address before backoff starts (several people
/// may share an address).
pub(crate) const ADDRESS_FREE_FAILURES: u32 = 20;
/// From this many failures past the free ones, the key is locked out for
/// [`LOCKOUT_MS`].
const LOCKOUT_AFTER: u32 = 10;
/// The longest wait: a lockout.
pub(crate) const LOCKOUT_MS: i64 = 15 * 60_000;

/// How long after the last failure the next attempt must wait: nothing for the
/// first `free` failures, then 1 s, 2 s, 4 s, ... and a 15-minute lockout once
/// ten more have failed.
pub(crate) fn backoff_ms(failures: u32, free: u32) -> i64 {
    if failures < free {
        return 0;
    }
    let over = failures - free;
    if over >= LOCKOUT_AFTER {
        return LOCKOUT_MS;
    }
    (1_000i64 << over).min(LOCKOUT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_window_and_tells_when_to_retry() {
        let rl = RateLimiter::new(2, 100);
        assert!(rl.check("a", 0).is_ok());
        assert!(rl.check("a", 1_000).is_ok());
        assert_eq!(rl.check("a", 45_000), Err(15));
        assert!(rl.check("b", 45_000).is_ok(), "keys are independent");
        assert!(rl.check("a", 60_000).is_ok(), "a new window");
    }

    #[test]
    fn table_stays_bounded() {
        let rl = RateLimiter::new(1, 3);
        for i in 0..50 {
            assert!(rl.check(&format!("k{i}"), 0).is_ok());
        }
        assert!(rl.len() <= 3);
    }

    #[test]
    fn backoff_grows_then_locks_out() {
        assert_eq!(backoff_ms(2, 3), 0);
        assert_eq!(backoff_ms(3, 3), 1_000);
        assert_eq!(backoff_ms(5, 3), 4_000);
        assert_eq!(backoff_ms(12, 3), 512_000);
        assert_eq!(backoff_ms(13, 3), LOCKOUT_MS);
        assert_eq!(backoff_ms(u32::MAX, 3), LOCKOUT_MS);
    }
}
