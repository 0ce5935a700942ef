//! A tenant's calendar: its time zone and public holidays, which call handlers
//! read through `pbx:plugin/clock`. Checked once here, so every layer that
//! holds one (the store, the API, the plugin host) holds a valid one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most holidays one tenant's calendar holds.
pub const MAX_HOLIDAYS: usize = 1_000;
/// Longest holiday name, in bytes.
pub const MAX_HOLIDAY_NAME: usize = 64;

/// A tenant's time zone and holidays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"time_zone": "Europe/Berlin", "holidays": [{"date": "2026-12-25", "name": "Christmas Day"}]})))]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    /// An IANA time zone name, such as `Europe/Paris`.
    pub time_zone: String,
    /// Public holidays, by local date.
    #[serde(default)]
    pub holidays: Vec<Holiday>,
}

/// One public holiday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// The local date, `YYYY-MM-DD`.
    pub date: String,
    /// What it is called (1 to 64 bytes, no control characters).
    pub name: String,
}

/// Why a calendar is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarError {
    UnknownZone(String),
    BadDate(String),
    BadName(String),
    TooMany,
    Duplicate(String),
}

impl std::fmt::Display for CalendarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalendarError::UnknownZone(z) => {
                write!(
                    f,
                    "unknown time zone {z:?} (an IANA name such as Europe/Paris)"
                )
            }
            CalendarError::BadDate(d) => write!(f, "bad holiday date {d:?} (YYYY-MM-DD)"),
            CalendarError::BadName(d) => write!(
                f,
                "the holiday on {d} needs a name of 1 to {MAX_HOLIDAY_NAME} bytes without control characters"
            ),
            CalendarError::TooMany => write!(f, "more than {MAX_HOLIDAYS} holidays"),
            CalendarError::Duplicate(d) => write!(f, "two holidays on {d}"),
        }
    }
}

impl std::error::Error for CalendarError {}

impl Default for Calendar {
    /// UTC and no holidays: a tenant that set nothing.
    fn default() -> Calendar {
        Calendar {
            time_zone: "UTC".into(),
            holidays: Vec::new(),
        }
    }
}

impl Calendar {
    /// Checks the zone against the IANA database and every holiday.
    pub fn validate(&self) -> Result<(), CalendarError> {
        if jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            return Err(CalendarError::UnknownZone(clip(&self.time_zone)));
        }
        if self.holidays.len() > MAX_HOLIDAYS {
            return Err(CalendarError::TooMany);
        }
        let mut seen = std::collections::HashSet::new();
        for h in &self.holidays {
            let date: jiff::civil::Date = h
                .date
                .parse()
                .map_err(|_| CalendarError::BadDate(clip(&h.date)))?;
            if h.name.is_empty()
                || h.name.len() > MAX_HOLIDAY_NAME
                || h.name.chars().any(char::is_control)
            {
                return Err(CalendarError::BadName(h.date.clone()));
            }
            if !seen.insert(date) {
                return Err(CalendarError::Duplicate(h.date.clone()));
            }
        }
        Ok(())
    }
}

fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(zone: &str, days: &[(&str, &str)]) -> Calendar {
        Calendar {
            time_zone: zone.into(),
            holidays: days
                .iter()
                .map(|(d, n)| Holiday {
                    date: (*d).into(),
                    name: (*n).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn calendars_are_checked() {
        assert_eq!(
            cal("Europe/Paris", &[("2026-12-25", "Noël")]).validate(),
            Ok(())
        );
        assert_eq!(Calendar::default().validate(), Ok(()));
        assert_eq!(
            cal("Mars/Olympus", &[]).validate(),
            Err(CalendarError::UnknownZone("Mars/Olympus".into()))
        );
        assert_eq!(
            cal("UTC", &[("2026-02-30", "x")]).validate(),
            Err(CalendarError::BadDate("2026-02-30".into()))
        );
        assert_eq!(
            cal("UTC", &[("2026-01-01", "a\u{7}")]).validate(),
            Err(CalendarError::BadName("2026-01-01".into()))
        );
        assert_eq!(
            cal("UTC", &[("2026-01-01", "a"), ("2026-01-01", "b")]).validate(),
            Err(CalendarError::Duplicate("2026-01-01".into()))
        );
        let many: Vec<(String, String)> = (0..=MAX_HOLIDAYS)
            .map(|i| (format!("{}-01-01", 2000 + i), "x".to_string()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(cal("UTC", &many).validate(), Err(CalendarError::TooMany));
    }
}
