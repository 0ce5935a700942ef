//! `pbx:plugin/clock` (0.2): now, in the tenant's time zone, and the tenant's
//! public-holiday calendar. The zone and the calendar are the tenant's; the
//! instant is the host's, so a test (or a replay) can pin it.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::civil::{Date, Weekday as CivilWeekday};
use jiff::tz::TimeZone;

use crate::bindings::call_handler::pbx::plugin0_2_0::clock::{Host, LocalTime, Weekday};
use crate::runtime::HostState;

/// Most holidays one tenant's calendar holds.
pub const MAX_HOLIDAYS: usize = 1_000;
/// Longest holiday name, in bytes.
pub const MAX_HOLIDAY_NAME: usize = 64;

/// Where the instant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instant {
    /// The host's wall clock.
    System,
    /// A fixed instant, Unix seconds (tests, replays).
    Fixed(i64),
}

/// A tenant's clock: its zone, its holidays, and where "now" comes from.
#[derive(Debug, Clone)]
pub struct TenantClock {
    zone: TimeZone,
    zone_name: String,
    holidays: BTreeMap<Date, String>,
    instant: Instant,
}

/// Why a tenant's clock settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("unknown time zone {0:?} (an IANA name such as Europe/Paris)")]
    UnknownZone(String),
    #[error("bad holiday date {0:?} (YYYY-MM-DD)")]
    BadDate(String),
    #[error("a holiday name is empty or longer than {MAX_HOLIDAY_NAME} bytes")]
    BadName,
    #[error("more than {MAX_HOLIDAYS} holidays")]
    TooMany,
}

impl TenantClock {
    /// UTC, no holidays, the system clock: a tenant that set nothing.
    pub fn utc() -> TenantClock {
        TenantClock {
            zone: TimeZone::UTC,
            zone_name: "UTC".into(),
            holidays: BTreeMap::new(),
            instant: Instant::System,
        }
    }

    /// The tenant's zone (IANA name) and holidays (`YYYY-MM-DD`, name).
    pub fn new<'a>(
        zone: &str,
        holidays: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TenantClock, ClockError> {
        let tz = TimeZone::get(zone).map_err(|_| ClockError::UnknownZone(zone.to_string()))?;
        let mut days = BTreeMap::new();
        for (date, name) in holidays {
            let day: Date = date
                .parse()
                .map_err(|_| ClockError::BadDate(date.to_string()))?;
            if name.is_empty() || name.len() > MAX_HOLIDAY_NAME {
                return Err(ClockError::BadName);
            }
            days.insert(day, name.to_string());
            if days.len() > MAX_HOLIDAYS {
                return Err(ClockError::TooMany);
            }
        }
        Ok(TenantClock {
            zone: tz,
            zone_name: zone.to_string(),
            holidays: days,
            instant: Instant::System,
        })
    }

    /// The clock of a tenant's stored calendar.
    pub fn of(calendar: &model::Calendar) -> Result<TenantClock, ClockError> {
        TenantClock::new(
            &calendar.time_zone,
            calendar
                .holidays
                .iter()
                .map(|h| (h.date.as_str(), h.name.as_str())),
        )
    }

    /// The same clock, reading `instant` instead of the system clock.
    pub fn at(mut self, instant: Instant) -> TenantClock {
        self.instant = instant;
        self
    }

    fn timestamp(&self) -> Timestamp {
        let secs = match self.instant {
            Instant::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            Instant::Fixed(secs) => secs,
        };
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Now, in the tenant's zone.
    pub fn now(&self) -> LocalTime {
        let ts = self.timestamp();
        let zoned = ts.to_zoned(self.zone.clone());
        let small = |v: i8| u8::try_from(v).unwrap_or(0);
        LocalTime {
            year: i32::from(zoned.year()),
            month: small(zoned.month()),
            day: small(zoned.day()),
            hour: small(zoned.hour()),
            minute: small(zoned.minute()),
            second: small(zoned.second()),
            weekday: match zoned.weekday() {
                CivilWeekday::Monday => Weekday::Monday,
                CivilWeekday::Tuesday => Weekday::Tuesday,
                CivilWeekday::Wednesday => Weekday::Wednesday,
                CivilWeekday::Thursday => Weekday::Thursday,
                CivilWeekday::Friday => Weekday::Friday,
                CivilWeekday::Saturday => Weekday::Saturday,
                CivilWeekday::Sunday => Weekday::Sunday,
            },
            unix_secs: ts.as_second(),
            utc_offset_secs: zoned.offset().seconds(),
            zone: self.zone_name.clone(),
        }
    }

    /// Today's holiday in the tenant's zone, if any.
    pub fn holiday(&self) -> Option<String> {
        let today = self.timestamp().to_zoned(self.zone.clone()).date();
        self.holidays.get(&today).cloned()
    }
}

impl Host for HostState {
    fn now(&mut self) -> LocalTime {
        self.caps.clock.now()
    }

    fn holiday(&mut self) -> Option<String> {
        self.caps.clock.holiday()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-25 07:30:00 UTC, a Friday.
    const XMAS_MORNING_UTC: i64 = 1_798_183_800;

    #[test]
    fn local_time_is_read_in_the_tenants_zone() {
        let clock = TenantClock::new("America/New_York", [])
            .unwrap()
            .at(Instant::Fixed(XMAS_MORNING_UTC));
        let now = clock.now();
        assert_eq!((now.year, now.month, now.day), (2026, 12, 25));
        assert_eq!((now.hour, now.minute), (2, 30));
        assert_eq!(now.weekday, Weekday::Friday);
        assert_eq!(now.utc_offset_secs, -5 * 3600);
        assert_eq!(now.unix_secs, XMAS_MORNING_UTC);
        assert_eq!(now.zone, "America/New_York");
    }

    #[test]
    fn a_holiday_is_the_tenants_local_day() {
        let holidays = [("2026-12-25", "Christmas Day")];
        // 07:30 UTC on the 25th is still the 24th in Honolulu.
        let honolulu = TenantClock::new("Pacific/Honolulu", holidays)
            .unwrap()
            .at(Instant::Fixed(XMAS_MORNING_UTC));
        assert_eq!(honolulu.holiday(), None);
        let paris = TenantClock::new("Europe/Paris", holidays)
            .unwrap()
            .at(Instant::Fixed(XMAS_MORNING_UTC));
        assert_eq!(paris.holiday().as_deref(), Some("Christmas Day"));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(
            TenantClock::new("Mars/Olympus", []).unwrap_err(),
            ClockError::UnknownZone("Mars/Olympus".into())
        );
        assert_eq!(
            TenantClock::new("UTC", [("2026-13-01", "x")]).unwrap_err(),
            ClockError::BadDate("2026-13-01".into())
        );
        assert_eq!(
            TenantClock::new("UTC", [("2026-01-01", "")]).unwrap_err(),
            ClockError::BadName
        );
        let utc = TenantClock::utc().at(Instant::Fixed(0));
        assert_eq!((utc.now().year, utc.now().hour), (1970, 0));
    }
}
