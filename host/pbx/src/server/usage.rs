//! Per-tenant call counters, as the `usage` capability shows them to plugins, and
//! the destination class of a dialled number.
//!
//! A call is counted from the moment its routing is allowed until its call record
//! is written; both ends are keyed by the caller's Call-ID, so a call counted once
//! is released once, whatever order the records come in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pbx_plugin::{DestinationClass, Usage};
use store::TenantId;

/// Recent call starts kept per tenant for windowed counts.
const WINDOW_CAP: usize = 10_000;
/// Longest window a plugin can ask about.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Default)]
struct TenantCounters {
    concurrent: u32,
    by_extension: HashMap<String, u32>,
    recent: VecDeque<(Instant, Option<String>, DestinationClass)>,
}

struct Live {
    tenant: TenantId,
    extension: Option<String>,
    class: DestinationClass,
}

/// Every tenant's counters.
#[derive(Default)]
pub(crate) struct UsageBook {
    inner: Mutex<(HashMap<TenantId, TenantCounters>, HashMap<String, Live>)>,
}

impl UsageBook {
    /// A call was allowed.
    pub(crate) fn started(
        &self,
        call_id: &str,
        tenant: TenantId,
        extension: Option<&str>,
        class: DestinationClass,
    ) {
        self.started_at(call_id, tenant, extension, class, Instant::now());
    }

    pub(crate) fn started_at(
        &self,
        call_id: &str,
        tenant: TenantId,
        extension: Option<&str>,
        class: DestinationClass,
        now: Instant,
    ) {
        let mut inner = self.inner.lock();
        let (tenants, live) = &mut *inner;
        if live.contains_key(call_id) {
            return;
        }
        let t = tenants.entry(tenant).or_default();
        t.concurrent += 1;
        if let Some(ext) = extension {
            *t.by_extension.entry(ext.to_string()).or_default() += 1;
        }
        if t.recent.len() == WINDOW_CAP {
            t.recent.pop_front();
        }
        t.recent
            .push_back((now, extension.map(str::to_string), class));
        live.insert(
            call_id.to_string(),
            Live {
                tenant,
                extension: extension.map(str::to_string),
                class,
            },
        );
    }

    /// A call's record was written; returns its class when it had been counted.
    pub(crate) fn ended(&self, call_id: &str) -> Option<DestinationClass> {
        let mut inner = self.inner.lock();
        let (tenants, live) = &mut *inner;
        let call = live.remove(call_id)?;
        if let Some(t) = tenants.get_mut(&call.tenant) {
            t.concurrent = t.concurrent.saturating_sub(1);
            if let Some(ext) = &call.extension
                && let Some(n) = t.by_extension.get_mut(ext)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.by_extension.remove(ext);
                }
            }
        }
        Some(call.class)
    }

    fn read<T>(&self, tenant: TenantId, f: impl FnOnce(&TenantCounters) -> T) -> Option<T> {
        self.inner.lock().0.get(&tenant).map(f)
    }
}

/// One tenant's view of the counters (what `usage` is bound to).
pub(crate) struct TenantUsage {
    book: Arc<UsageBook>,
    tenant: TenantId,
}

impl TenantUsage {
    pub(crate) fn new(book: Arc<UsageBook>, tenant: TenantId) -> TenantUsage {
        TenantUsage { book, tenant }
    }
}

impl Usage for TenantUsage {
    fn concurrent_calls(&self) -> u32 {
        self.book.read(self.tenant, |t| t.concurrent).unwrap_or(0)
    }

    fn concurrent_calls_by_extension(&self, extension: &str) -> u32 {
        self.book
            .read(self.tenant, |t| {
                t.by_extension.get(extension).copied().unwrap_or(0)
            })
            .unwrap_or(0)
    }

    fn calls_in_window(
        &self,
        window: Duration,
        extension: Option<&str>,
        class: Option<DestinationClass>,
    ) -> u32 {
        let now = Instant::now();
        let window = window.min(MAX_WINDOW);
        self.book
            .read(self.tenant, |t| {
                t.recent
                    .iter()
                    .rev()
                    .take_while(|(at, _, _)| now.duration_since(*at) <= window)
                    .filter(|(_, ext, c)| {
                        extension.is_none_or(|e| ext.as_deref() == Some(e))
                            && class.is_none_or(|want| *c == want)
                    })
                    .count()
            })
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn class_approved(&self, _class: DestinationClass) -> bool {
        false
    }
}

/// Emergency short codes, never blocked by a shipped policy.
const EMERGENCY: &[&str] = &["112", "911", "999", "000", "110", "119", "118"];

/// The destination class of a dialled number (`internal` for the tenant's own
/// extensions). International means a `+` or `00` prefix; premium-rate covers the
/// common 900/090x ranges.
pub(crate) fn classify(dialled: &str, is_extension: bool) -> DestinationClass {
    if is_extension {
        return DestinationClass::Internal;
    }
    let without_line_prefix = dialled.strip_prefix('9').unwrap_or(dialled);
    if EMERGENCY.contains(&dialled) || EMERGENCY.contains(&without_line_prefix) {
        return DestinationClass::Emergency;
    }
    let number = dialled.strip_prefix('9').unwrap_or(dialled);
    if number.starts_with('+') || number.starts_with("00") || number.starts_with("011") {
        return DestinationClass::International;
    }
    let national = number.trim_start_matches('0').trim_start_matches('1');
    if number.starts_with("0900") || number.starts_with("1900") || national.starts_with("900") {
        return DestinationClass::Premium;
    }
    if number.starts_with("07") {
        return DestinationClass::Mobile;
    }
    if number.len() >= 7 {
        return DestinationClass::National;
    }
    DestinationClass::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_released_once_whatever_the_order() {
        let book = Arc::new(UsageBook::default());
        let t = TenantId(1);
        let u = TenantUsage::new(book.clone(), t);
        book.started("a", t, Some("1000"), DestinationClass::Internal);
        book.started("a", t, Some("1000"), DestinationClass::Internal);
        book.started("b", t, Some("1000"), DestinationClass::International);
        assert_eq!(u.concurrent_calls(), 2);
        assert_eq!(u.concurrent_calls_by_extension("1000"), 2);
        assert_eq!(book.ended("b"), Some(DestinationClass::International));
        assert_eq!(book.ended("b"), None);
        assert_eq!(book.ended("a"), Some(DestinationClass::Internal));
        assert_eq!(book.ended("never"), None);
        assert_eq!(u.concurrent_calls(), 0);
        assert_eq!(u.concurrent_calls_by_extension("1000"), 0);
        assert_eq!(
            u.calls_in_window(
                Duration::from_secs(60),
                None,
                Some(DestinationClass::International)
            ),
            1
        );
        assert_eq!(
            u.calls_in_window(Duration::from_secs(60), Some("1000"), None),
            2
        );
    }

    #[test]
    fn counters_survive_concurrent_use() {
        let book = Arc::new(UsageBook::default());
        let t = TenantId(7);
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let book = book.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let id = format!("{n}-{i}");
                        book.started(&id, t, Some("1"), DestinationClass::National);
                        assert!(book.ended(&id).is_some());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(TenantUsage::new(book, t).concurrent_calls(), 0);
    }

    #[test]
    fn classes() {
        assert_eq!(classify("1001", true), DestinationClass::Internal);
        assert_eq!(classify("911", false), DestinationClass::Emergency);
        assert_eq!(classify("112", false), DestinationClass::Emergency);
        assert_eq!(
            classify("9011441234567", false),
            DestinationClass::International
        );
        assert_eq!(
            classify("+441234567890", false),
            DestinationClass::International
        );
        assert_eq!(classify("919005551234", false), DestinationClass::Premium);
        assert_eq!(classify("09001234567", false), DestinationClass::Premium);
        assert_eq!(classify("95551234567", false), DestinationClass::National);
    }
}
