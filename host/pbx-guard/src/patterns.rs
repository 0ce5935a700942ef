//! Calling baselines and the alerts raised when calls stray from them.
//!
//! Per tenant and per extension the detector keeps an exponentially weighted
//! moving average (EWMA) of calls per clock hour and of the hourly peak of
//! simultaneous calls. Rules compare the current hour to those baselines and
//! look at single calls (off-hours international) and at call endings (many
//! short calls to many destinations: IRSF and wangiri call-backs). Each rule has
//! thresholds and an optional [`AutoSuspend`] action the caller carries out.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use model::TenantId;

use crate::DestinationClass;
use crate::alerts::{Alert, Severity, events};
use crate::bans::evict_oldest_batch;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What the caller should suspend when a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutoSuspend {
    Extension,
    Tenant,
}

/// Calls in the current hour above both `min_calls` and `factor` × the hourly
/// baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct BurstRule {
    pub enabled: bool,
    pub min_calls: u32,
    pub factor: f64,
    pub action: Option<AutoSuspend>,
}

/// Costly (international, premium, high-risk) calls outside business hours.
#[derive(Debug, Clone, PartialEq)]
pub struct OffHoursRule {
    pub enabled: bool,
    pub action: Option<AutoSuspend>,
}

/// Business hours in the tenant's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessHours {
    /// First business hour, 0-23.
    pub start_hour: u8,
    /// First hour after business, 0-24; below `start_hour` wraps past midnight.
    pub end_hour: u8,
    /// Business days, Monday first.
    pub weekdays: [bool; 7],
    /// Local time minus UTC, minutes.
    pub utc_offset_minutes: i32,
}

impl Default for BusinessHours {
    fn default() -> BusinessHours {
        BusinessHours {
            start_hour: 8,
            end_hour: 19,
            weekdays: [true, true, true, true, true, false, false],
            utc_offset_minutes: 0,
        }
    }
}

impl BusinessHours {
    /// Whether `unix_ms` falls in business hours.
    pub fn contains(&self, unix_ms: i64) -> bool {
        let local = unix_ms.saturating_add(i64::from(self.utc_offset_minutes) * 60_000);
        let day = local.div_euclid(DAY_MS);
        let hour = local.rem_euclid(DAY_MS) / HOUR_MS;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0)
        let weekday = (day + 3).rem_euclid(7) as usize;
        let (start, end) = (i64::from(self.start_hour), i64::from(self.end_hour));
        let in_hours = if start <= end {
            hour >= start && hour < end
        } else {
            hour >= start || hour < end
        };
        self.weekdays.get(weekday).copied().unwrap_or(false) && in_hours
    }
}

/// Many short calls to many distinct destinations from one extension.
#[derive(Debug, Clone, PartialEq)]
pub struct ShortCallRule {
    pub enabled: bool,
    /// A call is short when it lasted less than this.
    pub max_duration: Duration,
    pub window: Duration,
    /// Distinct destinations of short calls within `window` that fire the rule.
    pub distinct_destinations: usize,
    pub action: Option<AutoSuspend>,
}

/// More simultaneous calls than `min_calls` and `factor` × the usual hourly peak.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcurrencyRule {
    pub enabled: bool,
    pub min_calls: u32,
    pub factor: f64,
    pub action: Option<AutoSuspend>,
}

/// Settings of [`Patterns`].
#[derive(Debug, Clone, PartialEq)]
pub struct PatternConfig {
    /// Weight of each finished hour in the baselines (0 < alpha <= 1).
    pub alpha: f64,
    pub burst: BurstRule,
    pub off_hours: OffHoursRule,
    /// Business hours of tenants without their own.
    pub business_hours: BusinessHours,
    pub short_calls: ShortCallRule,
    pub concurrency: ConcurrencyRule,
    /// Most tenants plus extensions tracked.
    pub max_tracked: usize,
}

impl Default for PatternConfig {
    fn default() -> PatternConfig {
        PatternConfig {
            alpha: 0.1,
            burst: BurstRule {
                enabled: true,
                min_calls: 30,
                factor: 5.0,
                action: None,
            },
            off_hours: OffHoursRule {
                enabled: true,
                action: None,
            },
            business_hours: BusinessHours::default(),
            short_calls: ShortCallRule {
                enabled: true,
                max_duration: Duration::from_secs(10),
                window: Duration::from_secs(600),
                distinct_destinations: 10,
                action: Some(AutoSuspend::Extension),
            },
            concurrency: ConcurrencyRule {
                enabled: true,
                min_calls: 10,
                factor: 3.0,
                action: None,
            },
            max_tracked: 100_000,
        }
    }
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternAlert {
    /// Stable event name from [`events`], e.g. `"fraud.burst"`.
    pub event: &'static str,
    pub tenant: TenantId,
    /// The extension concerned; `None` for tenant-wide rules.
    pub extension: Option<String>,
    pub severity: Severity,
    pub message: String,
    pub action: Option<AutoSuspend>,
}

impl PatternAlert {
    /// The alert record for the store and webhooks.
    pub fn to_alert(&self, at_ms: i64) -> Alert {
        Alert {
            tenant: Some(self.tenant),
            severity: self.severity,
            event: self.event.to_owned(),
            message: self.message.clone(),
            at_ms,
        }
    }
}

/// A call that just started.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    pub tenant: TenantId,
    pub extension: &'a str,
    pub class: DestinationClass,
    /// The tenant's calls in progress, this one included.
    pub concurrent: u32,
    pub now: Instant,
    pub unix_ms: i64,
}

#[derive(Debug, Default)]
struct Hourly {
    hour: i64,
    count: u32,
    peak: u32,
    calls_ewma: f64,
    peak_ewma: f64,
    burst_alerted: Option<i64>,
    concurrency_alerted: Option<i64>,
    off_hours_alerted: Option<i64>,
}

impl Hourly {
    fn roll(&mut self, hour: i64, alpha: f64) {
        if hour <= self.hour {
            return;
        }
        if self.count > 0 || self.peak > 0 || self.hour != 0 {
            self.calls_ewma = self.calls_ewma * (1.0 - alpha) + f64::from(self.count) * alpha;
            self.peak_ewma = self.peak_ewma * (1.0 - alpha) + f64::from(self.peak) * alpha;
            let quiet = (hour - self.hour - 1).clamp(0, 10_000) as i32;
            let decay = (1.0 - alpha).powi(quiet);
            self.calls_ewma *= decay;
            self.peak_ewma *= decay;
        }
        self.hour = hour;
        self.count = 0;
        self.peak = 0;
    }
}

#[derive(Debug, Default)]
struct State {
    hourly: Hourly,
    /// Destinations of short calls within the rule's window, one entry each
    /// (the time of its latest short call), oldest first: never more than
    /// the rule's threshold, as reaching it fires the rule and clears them.
    short: VecDeque<(Instant, u64)>,
    last: Option<Instant>,
}

/// The baseline detector. Single-owner: the server keeps it behind a lock.
#[derive(Debug)]
pub struct Patterns {
    config: PatternConfig,
    states: HashMap<(TenantId, Option<String>), State>,
    hours: HashMap<TenantId, BusinessHours>,
    hasher: RandomState,
}

impl Patterns {
    pub fn new(config: PatternConfig) -> Patterns {
        Patterns {
            config,
            states: HashMap::new(),
            hours: HashMap::new(),
            hasher: RandomState::new(),
        }
    }

    /// Gives `tenant` its own business hours.
    pub fn set_business_hours(&mut self, tenant: TenantId, hours: BusinessHours) {
        if self.hours.len() < self.config.max_tracked.max(1) || self.hours.contains_key(&tenant) {
            self.hours.insert(tenant, hours);
        }
    }

    fn alpha(&self) -> f64 {
        let a = self.config.alpha;
        if a.is_finite() && a > 0.0 {
            a.min(1.0)
        } else {
            0.1
        }
    }

    fn state(&mut self, tenant: TenantId, extension: Option<&str>, now: Instant) -> &mut State {
        let key = (tenant, extension.map(|e| crate::truncate(e, 64)));
        if !self.states.contains_key(&key) {
            evict_oldest_batch(&mut self.states, self.config.max_tracked.max(1), |s| {
                s.last.unwrap_or(now)
            });
        }
        let s = self.states.entry(key).or_default();
        s.last = Some(now);
        s
    }

    /// Looks at a call that just started (after it was admitted).
    pub fn call_started(&mut self, call: &CallInfo<'_>) -> Vec<PatternAlert> {
        let mut out = Vec::new();
        let hour = call.unix_ms.div_euclid(HOUR_MS);
        let alpha = self.alpha();
        let burst = self.config.burst.clone();
        let concurrency = self.config.concurrency.clone();

        for extension in [Some(call.extension), None] {
            let s = self.state(call.tenant, extension, call.now);
            let h = &mut s.hourly;
            h.roll(hour, alpha);
            h.count = h.count.saturating_add(1);
            let threshold = f64::from(burst.min_calls).max(burst.factor * h.calls_ewma);
            if burst.enabled && f64::from(h.count) > threshold && h.burst_alerted != Some(hour) {
                h.burst_alerted = Some(hour);
                let who =
                    extension.map_or_else(|| "tenant".to_owned(), |e| format!("extension {e}"));
                out.push(PatternAlert {
                    event: events::FRAUD_BURST,
                    tenant: call.tenant,
                    extension: extension.map(str::to_owned),
                    severity: Severity::Warning,
                    message: format!(
                        "{who}: {} calls this hour, usually {:.1}",
                        h.count, h.calls_ewma
                    ),
                    action: burst.action,
                });
            }
            if extension.is_none() {
                h.peak = h.peak.max(call.concurrent);
                let threshold =
                    f64::from(concurrency.min_calls).max(concurrency.factor * h.peak_ewma);
                if concurrency.enabled
                    && f64::from(call.concurrent) > threshold
                    && h.concurrency_alerted != Some(hour)
                {
                    h.concurrency_alerted = Some(hour);
                    out.push(PatternAlert {
                        event: events::FRAUD_CONCURRENCY,
                        tenant: call.tenant,
                        extension: None,
                        severity: Severity::Warning,
                        message: format!(
                            "{} simultaneous calls, usual peak {:.1}",
                            call.concurrent, h.peak_ewma
                        ),
                        action: concurrency.action,
                    });
                }
            }
        }

        let hours = self
            .hours
            .get(&call.tenant)
            .copied()
            .unwrap_or(self.config.business_hours);
        if self.config.off_hours.enabled && call.class.is_costly() && !hours.contains(call.unix_ms)
        {
            let action = self.config.off_hours.action;
            let s = self.state(call.tenant, Some(call.extension), call.now);
            if s.hourly.off_hours_alerted != Some(hour) {
                s.hourly.off_hours_alerted = Some(hour);
                out.push(PatternAlert {
                    event: events::FRAUD_OFF_HOURS,
                    tenant: call.tenant,
                    extension: Some(call.extension.to_owned()),
                    severity: Severity::Warning,
                    message: format!(
                        "{} call from extension {} outside business hours",
                        call.class.as_str(),
                        call.extension
                    ),
                    action,
                });
            }
        }
        out
    }

    /// Looks at a call that ended after `talk` time to `destination`.
    pub fn call_ended(
        &mut self,
        tenant: TenantId,
        extension: &str,
        destination: &str,
        talk: Duration,
        now: Instant,
    ) -> Option<PatternAlert> {
        let rule = self.config.short_calls.clone();
        if !rule.enabled || talk >= rule.max_duration {
            return None;
        }
        let dest = self.hasher.hash_one(crate::truncate(destination, 64));
        let threshold = rule.distinct_destinations.max(1);
        let s = self.state(tenant, Some(extension), now);
        while s
            .short
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= rule.window)
        {
            s.short.pop_front();
        }
        // A destination called again moves to the back with its new time: it
        // counts while any of its short calls is in the window.
        s.short.retain(|(_, d)| *d != dest);
        s.short.push_back((now, dest));
        if s.short.len() < threshold {
            return None;
        }
        let distinct = s.short.len();
        s.short.clear();
        Some(PatternAlert {
            event: events::FRAUD_SHORT_CALLS,
            tenant,
            extension: Some(extension.to_owned()),
            severity: Severity::Critical,
            message: format!("extension {extension}: short calls to {distinct} destinations"),
            action: rule.action,
        })
    }

    /// The hourly call baseline of a tenant (`extension = None`) or extension.
    pub fn baseline(&self, tenant: TenantId, extension: Option<&str>) -> Option<f64> {
        self.states
            .get(&(tenant, extension.map(str::to_owned)))
            .map(|s| s.hourly.calls_ewma)
    }

    /// How many tenants and extensions are tracked.
    pub fn tracked(&self) -> usize {
        self.states.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: TenantId = TenantId(1);

    /// Monday 2024-01-01 00:00 UTC.
    const MONDAY: i64 = 1_704_067_200_000;

    fn config() -> PatternConfig {
        PatternConfig {
            alpha: 0.5,
            burst: BurstRule {
                enabled: true,
                min_calls: 5,
                factor: 3.0,
                action: Some(AutoSuspend::Extension),
            },
            off_hours: OffHoursRule {
                enabled: true,
                action: Some(AutoSuspend::Tenant),
            },
            business_hours: BusinessHours::default(),
            short_calls: ShortCallRule {
                enabled: true,
                max_duration: Duration::from_secs(10),
                window: Duration::from_secs(600),
                distinct_destinations: 4,
                action: Some(AutoSuspend::Extension),
            },
            concurrency: ConcurrencyRule {
                enabled: true,
                min_calls: 3,
                factor: 2.0,
                action: None,
            },
            max_tracked: 100,
        }
    }

    fn call(
        ext: &str,
        class: DestinationClass,
        concurrent: u32,
        t0: Instant,
        unix_ms: i64,
    ) -> CallInfo<'_> {
        CallInfo {
            tenant: ACME,
            extension: ext,
            class,
            concurrent,
            now: t0 + Duration::from_millis(u64::try_from(unix_ms - MONDAY).unwrap_or(0)),
            unix_ms,
        }
    }

    fn events_of(alerts: &[PatternAlert]) -> Vec<(&'static str, Option<&str>)> {
        alerts
            .iter()
            .map(|a| (a.event, a.extension.as_deref()))
            .collect()
    }

    #[test]
    fn business_hours_by_weekday_hour_and_offset() {
        let h = BusinessHours::default();
        assert!(h.contains(MONDAY + 9 * HOUR_MS));
        assert!(!h.contains(MONDAY + 7 * HOUR_MS));
        assert!(!h.contains(MONDAY + 19 * HOUR_MS));
        assert!(!h.contains(MONDAY + 5 * DAY_MS + 10 * HOUR_MS), "saturday");
        let ny = BusinessHours {
            utc_offset_minutes: -300,
            ..h
        };
        // 14:00 UTC is 09:00 in New York
        assert!(ny.contains(MONDAY + 14 * HOUR_MS));
        assert!(!ny.contains(MONDAY + 9 * HOUR_MS));
        let night = BusinessHours {
            start_hour: 22,
            end_hour: 6,
            weekdays: [true; 7],
            utc_offset_minutes: 0,
        };
        assert!(night.contains(MONDAY + 23 * HOUR_MS));
        assert!(night.contains(MONDAY + 2 * HOUR_MS));
        assert!(!night.contains(MONDAY + 12 * HOUR_MS));
    }

    #[test]
    fn burst_over_min_and_over_baseline() {
        let t0 = Instant::now();
        let mut p = Patterns::new(config());
        let start = MONDAY + 9 * HOUR_MS;
        let mut fired = Vec::new();
        for i in 0..6 {
            fired.extend(p.call_started(&call(
                "100",
                DestinationClass::National,
                1,
                t0,
                start + i * 1000,
            )));
        }
        // the sixth call passes min_calls = 5 for the extension and the tenant
        assert_eq!(
            events_of(&fired),
            vec![
                (events::FRAUD_BURST, Some("100")),
                (events::FRAUD_BURST, None)
            ]
        );
        assert_eq!(fired[0].action, Some(AutoSuspend::Extension));
        // a busy baseline raises the bar: 20 calls an hour for a few hours
        let mut p = Patterns::new(PatternConfig {
            burst: BurstRule {
                min_calls: 1000,
                ..config().burst
            },
            ..config()
        });
        for hour in 0..6 {
            for i in 0..20 {
                p.call_started(&call(
                    "100",
                    DestinationClass::National,
                    1,
                    t0,
                    start + hour * HOUR_MS + i * 1000,
                ));
            }
        }
        let next = start + 6 * HOUR_MS;
        p.call_started(&call("100", DestinationClass::National, 1, t0, next));
        let base = p.baseline(ACME, Some("100")).expect("baseline");
        assert!(base > 15.0 && base <= 20.0, "{base}");
        let mut p2 = Patterns::new(config());
        for hour in 0..6 {
            for i in 0..20 {
                p2.call_started(&call(
                    "100",
                    DestinationClass::National,
                    1,
                    t0,
                    start + hour * HOUR_MS + i * 1000,
                ));
            }
        }
        // the seventh hour: 20 calls is normal now, 61 is a burst
        let mut fired = Vec::new();
        for i in 0..61 {
            fired.extend(p2.call_started(&call(
                "100",
                DestinationClass::National,
                1,
                t0,
                next + i * 1000,
            )));
            if i < 40 {
                assert!(fired.is_empty(), "call {i}: {fired:?}");
            }
        }
        assert!(fired.iter().any(|a| a.event == events::FRAUD_BURST));
    }

    #[test]
    fn off_hours_costly_calls_alert_once_an_hour() {
        let t0 = Instant::now();
        let mut p = Patterns::new(config());
        let night = MONDAY + 2 * HOUR_MS;
        let a = p.call_started(&call("100", DestinationClass::International, 1, t0, night));
        assert_eq!(events_of(&a), vec![(events::FRAUD_OFF_HOURS, Some("100"))]);
        assert_eq!(a[0].action, Some(AutoSuspend::Tenant));
        assert!(
            p.call_started(&call(
                "100",
                DestinationClass::PremiumRate,
                1,
                t0,
                night + 1000
            ))
            .is_empty()
        );
        assert!(
            p.call_started(&call(
                "100",
                DestinationClass::National,
                1,
                t0,
                night + 2000
            ))
            .is_empty()
        );
        let day = MONDAY + 10 * HOUR_MS;
        assert!(
            p.call_started(&call("101", DestinationClass::International, 1, t0, day))
                .is_empty()
        );
        p.set_business_hours(
            ACME,
            BusinessHours {
                weekdays: [true; 7],
                start_hour: 0,
                end_hour: 24,
                utc_offset_minutes: 0,
            },
        );
        assert!(
            p.call_started(&call("102", DestinationClass::HighRisk, 1, t0, night))
                .is_empty()
        );
    }

    #[test]
    fn many_short_calls_to_many_destinations() {
        let t0 = Instant::now();
        let mut p = Patterns::new(config());
        let short = Duration::from_secs(3);
        // long calls and repeats of one destination do not count
        assert!(
            p.call_ended(ACME, "100", "+4420", Duration::from_secs(60), t0)
                .is_none()
        );
        for i in 0..5 {
            assert!(
                p.call_ended(ACME, "100", "+4420", short, t0 + Duration::from_secs(i))
                    .is_none()
            );
        }
        let mut fired = None;
        for (i, d) in ["+881", "+882", "+883"].iter().enumerate() {
            fired = p.call_ended(
                ACME,
                "100",
                d,
                short,
                t0 + Duration::from_secs(10 + i as u64),
            );
        }
        let alert = fired.expect("alert");
        assert_eq!(alert.event, events::FRAUD_SHORT_CALLS);
        assert_eq!(alert.action, Some(AutoSuspend::Extension));
        assert_eq!(alert.to_alert(5).tenant, Some(ACME));
        // One destination called again and again is one entry, whatever the calls.
        let mut p = Patterns::new(config());
        for i in 0..500u64 {
            assert!(
                p.call_ended(ACME, "100", "+4420", short, t0 + Duration::from_millis(i))
                    .is_none()
            );
        }
        let state = &p.states[&(ACME, Some("100".to_owned()))];
        assert_eq!(state.short.len(), 1);
        // Many calls to one destination do not push the others out: three
        // destinations, a hundred more calls to the first, then a fourth fires.
        let mut p = Patterns::new(config());
        let at = |s: u64| t0 + Duration::from_secs(s);
        for (i, d) in ["+4420", "+881", "+882"].iter().enumerate() {
            assert!(p.call_ended(ACME, "100", d, short, at(i as u64)).is_none());
        }
        for i in 0..100 {
            assert!(
                p.call_ended(ACME, "100", "+4420", short, at(10 + i))
                    .is_none()
            );
        }
        assert!(p.call_ended(ACME, "100", "+883", short, at(200)).is_some());
        // A destination counts while its latest short call is in the window.
        let mut p = Patterns::new(config());
        for (s, d) in [(0, "+4420"), (500, "+881"), (500, "+882"), (550, "+4420")] {
            assert!(p.call_ended(ACME, "100", d, short, at(s)).is_none());
        }
        assert!(p.call_ended(ACME, "100", "+883", short, at(700)).is_some());
        // spread beyond the window: no alert
        let mut p = Patterns::new(config());
        for i in 0..10u64 {
            let d = format!("+4420{i}");
            assert!(
                p.call_ended(ACME, "100", &d, short, t0 + Duration::from_secs(i * 300))
                    .is_none()
            );
        }
    }

    #[test]
    fn concurrency_above_normal_peak() {
        let t0 = Instant::now();
        let mut p = Patterns::new(config());
        let start = MONDAY + 9 * HOUR_MS;
        let a = p.call_started(&call("100", DestinationClass::National, 3, t0, start));
        assert!(a.is_empty());
        let a = p.call_started(&call(
            "101",
            DestinationClass::National,
            4,
            t0,
            start + 1000,
        ));
        assert_eq!(events_of(&a), vec![(events::FRAUD_CONCURRENCY, None)]);
        // once per hour
        let a = p.call_started(&call(
            "102",
            DestinationClass::National,
            5,
            t0,
            start + 2000,
        ));
        assert!(a.iter().all(|a| a.event != events::FRAUD_CONCURRENCY));
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let mut p = Patterns::new(PatternConfig {
            max_tracked: 10,
            ..config()
        });
        for i in 0..100u64 {
            let ext = format!("{i}");
            p.call_started(&call(
                &ext,
                DestinationClass::National,
                1,
                t0,
                MONDAY + 9 * HOUR_MS + i as i64,
            ));
            assert!(p.tracked() <= 10);
        }
    }
}
