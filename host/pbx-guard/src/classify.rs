//! Destination classes of dialled numbers.
//!
//! Numbers are parsed with the `phonenumber` crate (libphonenumber's data) for a
//! configured home country. Configured prefix lists override what the data says,
//! and emergency numbers always class as [`DestinationClass::Emergency`].

use std::str::FromStr;

use phonenumber::country;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What kind of destination a number is, for limits, approvals and rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationClass {
    Emergency,
    /// A short number: an extension of the tenant.
    Internal,
    /// A landline (or unknown kind) in the home country.
    National,
    /// A mobile number in the home country.
    Mobile,
    /// Outside the home country.
    International,
    PremiumRate,
    /// A configured high-risk prefix (fraud hot spots).
    HighRisk,
}

impl DestinationClass {
    /// Every class, in declaration order.
    pub const ALL: [DestinationClass; 7] = [
        DestinationClass::Emergency,
        DestinationClass::Internal,
        DestinationClass::National,
        DestinationClass::Mobile,
        DestinationClass::International,
        DestinationClass::PremiumRate,
        DestinationClass::HighRisk,
    ];

    /// The stable lower-case name (stored in approvals and shown in the API).
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationClass::Emergency => "emergency",
            DestinationClass::Internal => "internal",
            DestinationClass::National => "national",
            DestinationClass::Mobile => "mobile",
            DestinationClass::International => "international",
            DestinationClass::PremiumRate => "premium-rate",
            DestinationClass::HighRisk => "high-risk",
        }
    }

    /// Parses [`DestinationClass::as_str`]'s names.
    pub fn parse(s: &str) -> Option<DestinationClass> {
        DestinationClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether calls of this class cost real money abroad or at a premium.
    pub fn is_costly(self) -> bool {
        matches!(
            self,
            DestinationClass::International
                | DestinationClass::PremiumRate
                | DestinationClass::HighRisk
        )
    }
}

/// Settings of [`Classifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// ISO 3166 alpha-2 code of the home country, e.g. "US", "GB", "DE".
    pub home_country: String,
    /// Numbers without `+` of at most this many digits are extensions.
    pub internal_max_digits: usize,
    /// E.164 prefixes (digits, optional `+`) that are premium-rate.
    pub premium_prefixes: Vec<String>,
    /// E.164 prefixes (country codes or longer) that are high-risk.
    pub high_risk_prefixes: Vec<String>,
    /// Emergency numbers on top of the home country's.
    pub extra_emergency: Vec<String>,
}

impl Default for ClassifierConfig {
    fn default() -> ClassifierConfig {
        ClassifierConfig {
            home_country: "US".into(),
            internal_max_digits: 5,
            premium_prefixes: Vec::new(),
            // global satellite and international networks, a classic IRSF target
            high_risk_prefixes: vec!["870".into(), "881".into(), "882".into(), "883".into()],
            extra_emergency: Vec::new(),
        }
    }
}

/// A classified number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: DestinationClass,
    /// The number in E.164 digits without `+` when it is a public number.
    pub e164: Option<String>,
}

/// Classifies dialled numbers for one home country.
#[derive(Debug, Clone)]
pub struct Classifier {
    home: country::Id,
    home_code: u16,
    internal_max_digits: usize,
    premium: Vec<String>,
    high_risk: Vec<String>,
    emergency: Vec<String>,
}

/// Digits in a dialled number, at most.
const MAX_DIGITS: usize = 20;

/// Emergency numbers by country (always on top of 112 and 911).
fn emergency_numbers(country: &str) -> &'static [&'static str] {
    match country {
        "US" | "CA" => &["911", "933"],
        "GB" => &["999", "112"],
        "DE" | "AT" => &["110", "112"],
        "FR" => &[
            "15", "17", "18", "112", "114", "115", "119", "191", "196", "197",
        ],
        "AU" => &["000", "106", "112"],
        "NZ" => &["111"],
        "IN" => &["100", "101", "102", "108", "112"],
        "JP" => &["110", "118", "119"],
        "CH" => &["112", "117", "118", "144"],
        "IT" => &["112", "113", "115", "118"],
        "ES" => &["112", "091", "092", "061", "080"],
        "NL" | "BE" | "SE" | "DK" | "NO" | "FI" | "PL" | "IE" | "PT" => &["112", "999", "110"],
        "BR" => &["190", "192", "193"],
        "MX" => &["911", "065"],
        "CN" => &["110", "119", "120"],
        "ZA" => &["10111", "10177", "112"],
        _ => &[],
    }
}

/// Normalises a configured prefix to digits.
fn prefix_digits(p: &str) -> Result<String> {
    let t = p.trim();
    let digits = t.strip_prefix('+').unwrap_or(t);
    let digits: String = digits.chars().filter(|c| *c != ' ' && *c != '-').collect();
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadPrefix(p.chars().take(32).collect()));
    }
    Ok(digits)
}

impl Classifier {
    /// Checks the configuration: a known home country and well-formed prefixes.
    pub fn new(config: &ClassifierConfig) -> Result<Classifier> {
        let code = config.home_country.trim().to_ascii_uppercase();
        let bad_country = || Error::UnknownCountry(config.home_country.chars().take(8).collect());
        let home = country::Id::from_str(&code).map_err(|_| bad_country())?;
        let home_code = phonenumber::metadata::DATABASE
            .by_id(home.as_ref())
            .map(|m| m.country_code())
            .ok_or_else(bad_country)?;
        let premium = config
            .premium_prefixes
            .iter()
            .map(|p| prefix_digits(p))
            .collect::<Result<_>>()?;
        let high_risk = config
            .high_risk_prefixes
            .iter()
            .map(|p| prefix_digits(p))
            .collect::<Result<_>>()?;
        let mut emergency: Vec<String> = ["112", "911"]
            .into_iter()
            .chain(emergency_numbers(&code).iter().copied())
            .map(str::to_owned)
            .collect();
        for e in &config.extra_emergency {
            emergency.push(prefix_digits(e)?);
        }
        emergency.sort();
        emergency.dedup();
        Ok(Classifier {
            home,
            home_code,
            internal_max_digits: config.internal_max_digits,
            premium,
            high_risk,
            emergency,
        })
    }

    /// The home country's calling code (1 for the US, 44 for GB ...).
    pub fn home_code(&self) -> u16 {
        self.home_code
    }

    /// Classifies a dialled number such as `911`, `1000`, `+44 20 7946 0018`,
    /// `00493012345678` or `(212) 555-0100`. Separators (space, `-`, `.`, `(`,
    /// `)`) are ignored; anything else that is not a digit is an error.
    pub fn classify(&self, dialled: &str) -> Result<Classification> {
        let bad = || Error::BadNumber(dialled.chars().take(32).collect());
        let trimmed = dialled.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len().min(MAX_DIGITS));
        for c in rest.chars() {
            match c {
                '0'..='9' => {
                    if digits.len() == MAX_DIGITS {
                        return Err(bad());
                    }
                    digits.push(c);
                }
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(bad()),
            }
        }
        if digits.is_empty() {
            return Err(bad());
        }
        if !plus && self.emergency.contains(&digits) {
            return Ok(Classification {
                class: DestinationClass::Emergency,
                e164: None,
            });
        }
        if !plus && digits.len() <= self.internal_max_digits {
            return Ok(Classification {
                class: DestinationClass::Internal,
                e164: None,
            });
        }
        let input = if plus { format!("+{digits}") } else { digits };
        let parsed = phonenumber::parse(Some(self.home), &input).map_err(|_| bad())?;
        let code = parsed.code().value();
        let e164 = format!("{code}{}", parsed.national().value());
        let class = self.class_of(&parsed, code, &e164);
        Ok(Classification {
            class,
            e164: Some(e164),
        })
    }

    fn class_of(
        &self,
        parsed: &phonenumber::PhoneNumber,
        code: u16,
        e164: &str,
    ) -> DestinationClass {
        if self.premium.iter().any(|p| e164.starts_with(p.as_str())) {
            return DestinationClass::PremiumRate;
        }
        if self.high_risk.iter().any(|p| e164.starts_with(p.as_str())) {
            return DestinationClass::HighRisk;
        }
        use phonenumber::Type;
        let kind = parsed.number_type(&phonenumber::metadata::DATABASE);
        match kind {
            Type::Emergency => return DestinationClass::Emergency,
            Type::PremiumRate => return DestinationClass::PremiumRate,
            _ => {}
        }
        if code != self.home_code {
            return DestinationClass::International;
        }
        // inside the home calling code but another country (e.g. +1 876 Jamaica
        // dialled from the US): international too
        if let Some(id) = parsed.country().id()
            && id != self.home
        {
            return DestinationClass::International;
        }
        match kind {
            Type::Mobile => DestinationClass::Mobile,
            _ => DestinationClass::National,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DestinationClass::*;

    fn classifier(country: &str) -> Classifier {
        Classifier::new(&ClassifierConfig {
            home_country: country.into(),
            premium_prefixes: vec!["+44 871".into()],
            ..ClassifierConfig::default()
        })
        .expect("classifier")
    }

    #[test]
    fn table_by_country() {
        let cases: &[(&str, &str, DestinationClass)] = &[
            // United States
            ("US", "911", Emergency),
            ("US", "112", Emergency),
            ("US", "1000", Internal),
            ("US", "(212) 555-0100", National),
            ("US", "+1 212 555 0100", National),
            ("US", "1 900 555 0100", PremiumRate),
            ("US", "011 44 20 7946 0018", International),
            ("US", "+44 20 7946 0018", International),
            ("US", "+1 876 555 0100", International),
            ("US", "+882 1234 5678", HighRisk),
            // United Kingdom
            ("GB", "999", Emergency),
            ("GB", "112", Emergency),
            ("GB", "020 7946 0018", National),
            ("GB", "07400 123456", Mobile),
            ("GB", "+44 7400 123456", Mobile),
            ("GB", "0871 123 4567", PremiumRate),
            ("GB", "09098 790123", PremiumRate),
            ("GB", "00 1 212 555 0100", International),
            // Germany
            ("DE", "110", Emergency),
            ("DE", "112", Emergency),
            ("DE", "030 123456", National),
            ("DE", "01512 3456789", Mobile),
            ("DE", "0900 5123456", PremiumRate),
            ("DE", "0033 1 42 68 53 00", International),
            ("DE", "42", Internal),
            // Australia
            ("AU", "000", Emergency),
            ("AU", "0412 345 678", Mobile),
            ("AU", "0011 44 20 7946 0018", International),
            ("AU", "1900 123 456", PremiumRate),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter_map(|(country, number, want)| {
                let got = classifier(country).classify(number).map(|c| c.class);
                (got.as_ref() != Ok(want))
                    .then(|| format!("{country} {number}: {got:?}, want {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn e164_is_reported_for_public_numbers() {
        let c = classifier("GB");
        assert_eq!(
            c.classify("020 7946 0018").expect("n").e164.as_deref(),
            Some("442079460018")
        );
        assert_eq!(c.classify("999").expect("n").e164, None);
        assert_eq!(c.home_code(), 44);
    }

    #[test]
    fn configured_prefixes_override_the_data() {
        let c = Classifier::new(&ClassifierConfig {
            home_country: "de".into(),
            premium_prefixes: vec!["+49 30 999".into()],
            high_risk_prefixes: vec!["+53".into(), "4930888".into()],
            extra_emergency: vec!["116117".into()],
            ..ClassifierConfig::default()
        })
        .expect("classifier");
        assert_eq!(c.classify("030 999 1234").expect("n").class, PremiumRate);
        assert_eq!(c.classify("030 888 1234").expect("n").class, HighRisk);
        assert_eq!(c.classify("0053 7 123 4567").expect("n").class, HighRisk);
        assert_eq!(c.classify("116117").expect("n").class, Emergency);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let c = classifier("US");
        for bad in [
            "",
            "+",
            "abc",
            "12a4",
            "sip:100@x",
            "1234567890123456789012",
            "+-",
            "１２３",
        ] {
            assert!(c.classify(bad).is_err(), "{bad:?}");
        }
        assert!(
            Classifier::new(&ClassifierConfig {
                home_country: "XX".into(),
                ..ClassifierConfig::default()
            })
            .is_err()
        );
        assert!(
            Classifier::new(&ClassifierConfig {
                premium_prefixes: vec!["90x".into()],
                ..ClassifierConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn class_names_round_trip() {
        for c in DestinationClass::ALL {
            assert_eq!(DestinationClass::parse(c.as_str()), Some(c));
        }
        assert_eq!(DestinationClass::parse("nope"), None);
        assert!(International.is_costly() && !Mobile.is_costly());
    }
}
