//! SIP and SIPS URIs (RFC 3261 §19.1), read by their grammar.
//!
//! rsip 0.4's URI reader ends the user part at the first `.` and the host at
//! the first `:`, so `sip:first.last@example.com` and `sip:[2001:db8::1]` come
//! back wrong. Everything in the host that needs the parts of a URI — the
//! tenant a request names, the user dialled, where a Contact points — reads
//! them here instead.
//!
//! The user part may hold `;` and `?` (RFC 3261 §19.1.1 `user-unreserved`,
//! §19.1.4: in `sip:alice;day=tuesday@atlanta.com` the user is
//! `alice;day=tuesday`), but never an unescaped `@`, so the first `@` ends the
//! userinfo when what comes before it is a valid userinfo.

use std::net::Ipv6Addr;

/// The parts of a `sip:` or `sips:` URI, borrowed from the text, escapes kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:` (the scheme is case-insensitive).
    pub secure: bool,
    /// The user part as written (`%`-escapes kept), without the password.
    pub user: Option<&'a str>,
    /// The password after `user:`, as written.
    pub password: Option<&'a str>,
    /// A host name or IPv4 address as written (case kept), or an IPv6 address
    /// without its brackets.
    pub host: &'a str,
    /// The port, when one is written.
    pub port: Option<u16>,
    /// The URI parameters as written, each with its leading `;` (or "").
    pub params: &'a str,
    /// The header part after `?`, as written (or "").
    pub headers: &'a str,
}

impl<'a> SipUri<'a> {
    /// Reads a URI; `None` when it is not a well-formed `sip:`/`sips:` URI
    /// (other schemes such as `tel:` included). Surrounding whitespace is
    /// ignored.
    pub fn parse(text: &'a str) -> Option<SipUri<'a>> {
        let text = text.trim();
        let (scheme, rest) = text.split_once(':')?;
        let secure = if scheme.eq_ignore_ascii_case("sips") {
            true
        } else if scheme.eq_ignore_ascii_case("sip") {
            false
        } else {
            return None;
        };
        let (user, password, rest) = match rest.find('@') {
            Some(at) if is_userinfo(&rest[..at]) => {
                let (user, password) = match rest[..at].split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (&rest[..at], None),
                };
                (Some(user), password, &rest[at + 1..])
            }
            Some(_) => return None,
            None => (None, None, rest),
        };
        let end = rest.find([';', '?']).unwrap_or(rest.len());
        let (host, port) = host_port(&rest[..end])?;
        let tail = &rest[end..];
        let (params, headers) = match tail.find('?') {
            Some(q) => (&tail[..q], &tail[q + 1..]),
            None => (tail, ""),
        };
        if !params.split(';').skip(1).all(is_param) || !headers.bytes().all(is_header_char) {
            return None;
        }
        Some(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The value of URI parameter `name` (case-insensitive name): `Some("")`
    /// for a parameter without a value such as `;lr`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        crate::params::find(self.params, name)
    }

    /// The user part with `%`-escapes decoded (RFC 3261 §19.1.4 compares the
    /// decoded form); `None` without a user part or when a decoded byte
    /// sequence is not UTF-8.
    pub fn user_decoded(&self) -> Option<String> {
        unescape(self.user?)
    }

    /// Whether the host is an IP address (v4 or v6) rather than a name.
    pub fn host_is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

/// Splits `host[:port]` or `[v6][:port]`, checking the host's characters.
pub fn host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        host.parse::<Ipv6Addr>().ok()?;
        (host, &rest[close + 1..])
    } else {
        let split = text.find(':').unwrap_or(text.len());
        let host = &text[..split];
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if host.is_empty() || !host.bytes().all(ok) {
            return None;
        }
        (host, &text[split..])
    };
    let port = match port.strip_prefix(':') {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
        None if port.is_empty() => None,
        None => return None,
    };
    Some((host, port))
}

/// RFC 3261 `unreserved` (alphanum / mark).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// `userinfo` without the `@`: `( user / telephone-subscriber ) [ ":" password ]`.
fn is_userinfo(text: &str) -> bool {
    let (user, password) = match text.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (text, None),
    };
    !user.is_empty()
        && escaped_ok(user, |b| unreserved(b) || b"&=+$,;?/".contains(&b))
        && password.is_none_or(|p| escaped_ok(p, |b| unreserved(b) || b"&=+$,".contains(&b)))
}

/// `pname [ "=" pvalue ]` where both are `paramchar`s (not empty name).
fn is_param(param: &str) -> bool {
    let paramchar = |b: u8| unreserved(b) || b"[]/:&+$".contains(&b);
    let (name, value) = match param.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (param, None),
    };
    !name.is_empty()
        && escaped_ok(name, paramchar)
        && value.is_none_or(|v| escaped_ok(v, paramchar))
}

/// Characters of the `?` header part: `hname "=" hvalue` pairs joined by `&`.
fn is_header_char(b: u8) -> bool {
    unreserved(b) || b"[]/?:+$&=%".contains(&b)
}

/// Every byte is allowed by `ok` or starts a `%HH` escape.
fn escaped_ok(text: &str, ok: impl Fn(u8) -> bool) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if !(i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit())
            {
                return false;
            }
            i += 3;
        } else if ok(bytes[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Decodes `%HH` escapes; `None` when the result is not UTF-8.
fn unescape(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (Option<&str>, &str, Option<u16>) {
        let u = SipUri::parse(s).unwrap_or_else(|| panic!("{s} refused"));
        (u.user, u.host, u.port)
    }

    #[test]
    fn user_part_may_hold_parameters() {
        // RFC 3261 §19.1.4.
        assert_eq!(
            parts("sip:alice;day=tuesday@atlanta.com"),
            (Some("alice;day=tuesday"), "atlanta.com", None)
        );
        let u = SipUri::parse("sip:alice@atlanta.com;day=tuesday").unwrap();
        assert_eq!(
            (u.user, u.host, u.param("day")),
            (Some("alice"), "atlanta.com", Some("tuesday"))
        );
    }

    #[test]
    fn rfc3261_and_rfc4475_forms() {
        assert_eq!(
            parts("sip:first.last@example.com"),
            (Some("first.last"), "example.com", None)
        );
        assert_eq!(
            parts("sip:1000@Acme.Example:5070;transport=udp"),
            (Some("1000"), "Acme.Example", Some(5070))
        );
        assert_eq!(parts("sip:[::1]:5060"), (None, "::1", Some(5060)));
        assert_eq!(parts("sip:[2001:db8::10]"), (None, "2001:db8::10", None));
        assert_eq!(
            parts("SIPS:alice:secret@example.com"),
            (Some("alice"), "example.com", None)
        );
        assert!(
            SipUri::parse("SIPS:alice:secret@example.com")
                .unwrap()
                .secure
        );
        // RFC 4475 §3.1.1.1 (esc01): the user decodes to "sips:user@example.com".
        let u = SipUri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.host, "example.net");
        assert_eq!(u.user_decoded().as_deref(), Some("sips:user@example.com"));
        // RFC 4475 §3.1.1.13 (escnull-like): an escaped user stays escaped.
        assert_eq!(parts("sip:%61lice@atlanta.com").0, Some("%61lice"));
        assert_eq!(
            SipUri::parse("sip:%61lice@atlanta.com")
                .unwrap()
                .user_decoded()
                .as_deref(),
            Some("alice")
        );
        let u =
            SipUri::parse("sip:bob@biloxi.com;lr;maddr=[::1]?subject=project%20x&priority=urgent")
                .unwrap();
        assert_eq!(u.param("lr"), Some(""));
        assert_eq!(u.param("MADDR"), Some("[::1]"));
        assert_eq!(u.headers, "subject=project%20x&priority=urgent");
        assert_eq!(
            parts("sip:+1-212-555-1212:1234@gateway.com;user=phone").0,
            Some("+1-212-555-1212")
        );
        assert!(SipUri::parse("sip:a?b@host").is_some());
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "tel:+123",
            "sip:@",
            "sip:",
            "sip:@example.com",
            "sip:user@",
            "sip:[::1",
            "sip:[not-v6]",
            "sip:host:99999",
            "sip:host:",
            "sip:host:12x",
            "sip:a b@host",
            "sip:a@b@host",
            "sip:host;=x",
            "sip:%zz@host",
            "sip:user@host<x>",
            "http://example.com",
        ] {
            assert_eq!(SipUri::parse(bad), None, "{bad} accepted");
        }
    }
}
