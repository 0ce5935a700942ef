//! Input checks applied before anything is written.

use crate::{Error, Result};

/// Longest tenant name accepted.
const MAX_TENANT_NAME: usize = 64;
/// Longest password accepted (bytes).
const MAX_PASSWORD: usize = 128;
/// Longest extension number accepted.
const MAX_EXTENSION: usize = 32;

/// A tenant name: see [`name`]; at most 64 characters.
pub(crate) fn tenant_name(name: &str) -> Result<String> {
    self::name("tenant name", name, MAX_TENANT_NAME)
}

/// Longest input [`name`] looks at, bytes: anything longer is refused before
/// it is normalised.
const MAX_NAME_INPUT: usize = 1024;

/// Characters that show nothing (or nothing on their own) but are not control
/// or format characters: Hangul fillers, the combining grapheme joiner, Khmer
/// inherent vowels, the braille blank, variation selectors.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Format characters (Unicode category Cf): zero-width spaces and joiners,
/// direction marks and overrides, the byte-order mark, tags and the like.
fn format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// A name people read: NFKC-normalised, 1 to `max` characters, no surrounding
/// spaces, no whitespace but the plain space, no control, format or invisible
/// characters. Returns the normalised form, which is what gets stored and
/// compared.
pub(crate) fn name(what: &str, name: &str, max: usize) -> Result<String> {
    use unicode_normalization::UnicodeNormalization;
    if name.len() > MAX_NAME_INPUT {
        return Err(Error::Invalid(format!("{what} must be 1-{max} characters")));
    }
    let n: String = name.nfkc().collect();
    let len = n.chars().count();
    if len == 0 || len > max {
        return Err(Error::Invalid(format!("{what} must be 1-{max} characters")));
    }
    if n.trim() != n {
        return Err(Error::Invalid(format!("{what} has surrounding spaces")));
    }
    if n.chars().any(|c| {
        c.is_control() || format_char(c) || invisible(c) || (c.is_whitespace() && c != ' ')
    }) {
        return Err(Error::Invalid(format!(
            "{what} has control, format or invisible characters"
        )));
    }
    Ok(n)
}

/// Lower-cases `domain` and checks it is a DNS host name (RFC 1123 labels).
pub(crate) fn domain(domain: &str) -> Result<String> {
    let d = domain.to_ascii_lowercase();
    let bad = || Error::Invalid(format!("not a valid domain: {domain:?}"));
    if d.is_empty() || d.len() > 253 {
        return Err(bad());
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(d)
}

/// An extension number: 1-32 characters of `[0-9A-Za-z._-]`.
pub(crate) fn extension_number(number: &str) -> Result<()> {
    let ok = !number.is_empty()
        && number.len() <= MAX_EXTENSION
        && number
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "extension number must be 1-{MAX_EXTENSION} characters of [0-9A-Za-z._-]: {number:?}"
        )))
    }
}

/// Longest prompt name accepted.
const MAX_PROMPT_NAME: usize = 64;
/// Longest caller identity kept with a voicemail message (bytes).
const MAX_CALLER: usize = 256;
/// Digits a voicemail PIN has at least and at most.
pub(crate) const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=12;

/// A prompt name: 1-64 characters of `[0-9A-Za-z._-]`.
pub(crate) fn prompt_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PROMPT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "prompt name must be 1-{MAX_PROMPT_NAME} characters of [0-9A-Za-z._-]: {name:?}"
        )))
    }
}

/// Who left a voicemail message, as the call showed it: at most 256 bytes, no
/// control characters (it may be empty for an anonymous caller).
pub(crate) fn caller(caller: &str) -> Result<()> {
    if caller.len() > MAX_CALLER || caller.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "caller must be at most {MAX_CALLER} bytes without control characters"
        )));
    }
    Ok(())
}

/// A voicemail PIN: 4-12 ASCII digits.
pub(crate) fn pin(pin: &str) -> Result<()> {
    if PIN_DIGITS.contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "a voicemail PIN is {} to {} digits",
            PIN_DIGITS.start(),
            PIN_DIGITS.end()
        )))
    }
}

/// A password: 1-128 bytes, no control characters.
pub(crate) fn password(password: &str) -> Result<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(Error::Invalid(format!(
            "password must be 1-{MAX_PASSWORD} bytes"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "password contains control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            domain("PBX.Example.COM").ok(),
            Some("pbx.example.com".into())
        );
        assert_eq!(domain("a-b.c1").ok(), Some("a-b.c1".into()));
        assert_eq!(domain("10.0.0.1").ok(), Some("10.0.0.1".into()));
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a.b.",
            "a b",
            "a_b.c",
            "ä.example",
            "user@host",
            &"a".repeat(64),
            &format!("{}.x", "a.".repeat(130)),
        ] {
            assert!(domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn extension_numbers() {
        for good in ["1", "1000", "alice.smith", "a_b-c", &"9".repeat(32)] {
            assert!(extension_number(good).is_ok(), "{good:?} rejected");
        }
        for bad in ["", "10 00", "a@b", "1:2", "é", &"9".repeat(33)] {
            assert!(extension_number(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_and_names() {
        assert!(password("s3cret: with colon").is_ok());
        assert!(password("").is_err());
        assert!(password("a\nb").is_err());
        assert!(password(&"x".repeat(129)).is_err());
        assert!(tenant_name("Acme Corp").is_ok());
        assert!(tenant_name("").is_err());
        assert!(tenant_name(" acme").is_err());
        assert!(tenant_name("a\tb").is_err());
        assert!(tenant_name(&"n".repeat(65)).is_err());
    }

    #[test]
    fn names_are_normalised_and_invisible_characters_refused() {
        // Full-width letters and ligatures fold to their plain forms.
        assert_eq!(name("n", "ｒｏｏｔ", 64).expect("nfkc"), "root");
        assert_eq!(name("n", "ﬁle", 64).expect("nfkc"), "file");
        for bad in [
            "root\u{200b}",
            "ro\u{200d}ot",
            "\u{202e}toor",
            "root\u{feff}",
            "ro\u{00ad}ot",
            "root\u{3164}",
            "root\u{e0041}",
            "a\u{a0}b\u{2028}",
            "root\u{fe0f}",
        ] {
            assert!(name("n", bad, 64).is_err(), "{bad:?} accepted");
        }
        assert!(name("n", "Zoë Müller", 64).is_ok());
        assert!(name("n", &"é".repeat(64), 64).is_ok());
        assert!(name("n", &"é".repeat(65), 64).is_err());
        assert!(name("n", &"x".repeat(700_000), 64).is_err());
    }

    #[test]
    fn prompt_names_callers_and_pins() {
        assert!(prompt_name("main-menu_v2.en").is_ok());
        assert!(prompt_name(&"p".repeat(64)).is_ok());
        for bad in ["", "a/b", "menu wav", "é", &"p".repeat(65)] {
            assert!(prompt_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(caller("").is_ok());
        assert!(caller("\"Ann\" <sip:+4930123@a.example>").is_ok());
        assert!(caller("a\r\nb").is_err());
        assert!(caller(&"1".repeat(257)).is_err());
        assert!(pin("1234").is_ok());
        assert!(pin("123456789012").is_ok());
        for bad in ["123", "1234567890123", "12a4", " 1234", "１２３４"] {
            assert!(pin(bad).is_err(), "{bad:?} accepted");
        }
    }
}
