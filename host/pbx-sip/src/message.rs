//! Parsing one SIP message into an [`rsip::SipMessage`] that later code can
//! trust, and the cheap Call-ID scan used to dispatch before parsing.

use rsip::Header;
use rsip::prelude::{HasHeaders, ToTypedHeader, UntypedHeader};

use crate::error::{Error, Result};
use crate::normalize::normalize;
use crate::scan;

/// The request methods rsip 0.4 knows, spelled as RFC 3261 requires
/// (methods are case-sensitive).
const KNOWN_METHODS: &[&[u8]] = &[
    b"ACK",
    b"BYE",
    b"CANCEL",
    b"INFO",
    b"INVITE",
    b"MESSAGE",
    b"NOTIFY",
    b"OPTIONS",
    b"PRACK",
    b"PUBLISH",
    b"REFER",
    b"REGISTER",
    b"SUBSCRIBE",
    b"UPDATE",
];

/// CSeq numbers must be below 2**31 (RFC 3261 §8.1.1.5).
const MAX_CSEQ: u32 = (1 << 31) - 1;

/// Parses and validates one message (a datagram, or one stream frame).
///
/// On success these hold, so callers may `expect` nothing and still rely on
/// them: at least one Via; exactly one From, To, Call-ID (non-empty) and CSeq;
/// `.typed()` succeeds on every Via, From, To, CSeq and Contact header (except
/// that one naming an IPv6 reference, which rsip's grammar lacks, passes a
/// structural check of ours instead); for a
/// request the method is known and equals the CSeq method; Max-Forwards, if
/// present, is a number up to 255.
///
/// # Errors
///
/// An [`Error`] whose [`status`](Error::status) is the answer to send.
pub fn parse(raw: &[u8]) -> Result<rsip::SipMessage> {
    let normalized = normalize(raw)?;
    let method = normalized.method();
    if let Some(method) = method
        && !KNOWN_METHODS.contains(&method)
    {
        return Err(Error::UnknownMethod);
    }
    let message = match rsip::SipMessage::try_from(normalized.as_bytes()) {
        Ok(message) => message,
        Err(_) => ipv6_request_uri(normalized.as_bytes())
            .ok_or(Error::Malformed("rejected by the SIP grammar"))?,
    };
    validate(&message, method)?;
    Ok(message)
}

/// rsip cannot read an IPv6 reference in the Request-URI either
/// (`INVITE sip:1001@[2001:db8::1]:5060 SIP/2.0`). When the URI is sound by
/// [`crate::SipUri`], rsip reads the request with a stand-in host in the
/// brackets' place, and the typed URI gets the address back; everything else
/// (user, port, parameters, every header) is rsip's own reading.
fn ipv6_request_uri(normalized: &[u8]) -> Option<rsip::SipMessage> {
    let line_end = normalized.iter().position(|&b| b == b'\r')?;
    let line = std::str::from_utf8(&normalized[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let ip: std::net::Ipv6Addr = crate::SipUri::parse(uri)?.host.parse().ok()?;
    let open = uri.find('[')?;
    let close = open + uri[open..].find(']')?;
    let stand_in = format!(
        "{method} {}{STAND_IN_HOST}{} {version}",
        &uri[..open],
        &uri[close + 1..]
    );
    let mut bytes = stand_in.into_bytes();
    bytes.extend_from_slice(&normalized[line_end..]);
    let mut message = rsip::SipMessage::try_from(bytes.as_slice()).ok()?;
    match &mut message {
        rsip::SipMessage::Request(request) => {
            request.uri.host_with_port.host = std::net::IpAddr::V6(ip).into();
        }
        rsip::SipMessage::Response(_) => return None,
    }
    Some(message)
}

/// The host rsip is shown in place of an IPv6 reference (RFC 2606 `.invalid`).
const STAND_IN_HOST: &str = "ipv6.invalid";

/// rsip cannot parse IPv6 references (`[2001:db8::1]:5060`); such a Via, From, To
/// or Contact is accepted when its structure is sound, and the host reads it with
/// its own accessors.
fn ipv6_fallback(value: &str, via: bool) -> bool {
    let Some(open) = value.find('[') else {
        return false;
    };
    let Some(close) = value[open..].find(']') else {
        return false;
    };
    let inside = &value[open + 1..open + close];
    if inside.parse::<std::net::Ipv6Addr>().is_err() {
        return false;
    }
    if via {
        let mut parts = value.split_ascii_whitespace();
        let proto = parts.next().unwrap_or("");
        proto.len() > 8 && proto[..8].eq_ignore_ascii_case("SIP/2.0/") && parts.next().is_some()
    } else {
        let lower = value.to_ascii_lowercase();
        lower.contains("sip:") || lower.contains("sips:")
    }
}

/// rsip's Contact grammar refuses a quoted parameter value holding `<` or `>`,
/// such as RFC 5626's `+sip.instance="<urn:uuid:...>"`, which linphone and many
/// desk phones send in every REGISTER. Such a Contact is accepted when it is a
/// bracketed SIP URI (after an optional display name) followed by well-formed
/// parameters; the host reads it with its own accessors.
fn contact_fallback(value: &str) -> bool {
    let value = value.trim();
    let Some(open) = unquoted(value, b'<') else {
        return false;
    };
    let Some(close) = value[open..].find('>').map(|i| open + i) else {
        return false;
    };
    let uri = &value[open + 1..close];
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let hostport = rest.rsplit('@').next().unwrap_or(rest);
    let hostport = hostport.split([';', '?']).next().unwrap_or(hostport);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (hostport, None),
    };
    (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips"))
        && !host.is_empty()
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
        && !uri.contains(['<', '"', ' '])
        && params_well_formed(&value[close + 1..])
}

/// The position of `needle` outside double quotes.
fn unquoted(s: &str, needle: u8) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `;name[=token|"quoted"]` repeated (RFC 3261 `generic-param`), nothing else.
fn params_well_formed(params: &str) -> bool {
    let is_token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~:[]/".contains(c);
    let mut rest = params.trim_start();
    while !rest.is_empty() {
        let Some(after) = rest.strip_prefix(';') else {
            return false;
        };
        let after = after.trim_start();
        let name_len = after.find(|c| !is_token(c)).unwrap_or(after.len());
        if name_len == 0 {
            return false;
        }
        let mut tail = after[name_len..].trim_start();
        if let Some(value) = tail.strip_prefix('=') {
            let value = value.trim_start();
            if let Some(quoted) = value.strip_prefix('"') {
                let Some(end) = closing_quote(quoted) else {
                    return false;
                };
                tail = &quoted[end + 1..];
            } else {
                let len = value.find(|c| !is_token(c)).unwrap_or(value.len());
                if len == 0 {
                    return false;
                }
                tail = &value[len..];
            }
        }
        rest = tail.trim_start();
    }
    true
}

/// The position of the quote closing a quoted string whose opening quote was
/// just before `s` (backslash escapes honoured).
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
        }
    }
    None
}

#[derive(Default)]
struct Seen {
    via: usize,
    from: usize,
    to: usize,
    call_id: usize,
    cseq: usize,
}

fn validate(message: &rsip::SipMessage, method: Option<&[u8]>) -> Result<()> {
    let mut seen = Seen::default();
    for header in message.headers().iter() {
        match header {
            Header::Via(h) => {
                seen.via += 1;
                if h.typed().is_err() && !ipv6_fallback(h.value(), true) {
                    return Err(Error::InvalidHeader("Via"));
                }
            }
            Header::From(h) => {
                seen.from += 1;
                if h.typed().is_err() && !ipv6_fallback(h.value(), false) {
                    return Err(Error::InvalidHeader("From"));
                }
            }
            Header::To(h) => {
                seen.to += 1;
                if h.typed().is_err() && !ipv6_fallback(h.value(), false) {
                    return Err(Error::InvalidHeader("To"));
                }
            }
            Header::Contact(h)
                if h.typed().is_err()
                    && !ipv6_fallback(h.value(), false)
                    && !contact_fallback(h.value()) =>
            {
                return Err(Error::InvalidHeader("Contact"));
            }
            Header::CallId(h) => {
                seen.call_id += 1;
                if h.value().trim().is_empty() {
                    return Err(Error::InvalidHeader("Call-ID"));
                }
            }
            Header::CSeq(h) => {
                seen.cseq += 1;
                let typed = h.typed().map_err(|_| Error::InvalidHeader("CSeq"))?;
                if typed.seq > MAX_CSEQ {
                    return Err(Error::InvalidHeader("CSeq"));
                }
                if let Some(method) = method {
                    let cseq_method = h.value().split_ascii_whitespace().nth(1);
                    if cseq_method.map(str::as_bytes) != Some(method) {
                        return Err(Error::CSeqMismatch);
                    }
                }
            }
            Header::MaxForwards(h) if !h.num().is_ok_and(|n| n <= 255) => {
                return Err(Error::InvalidHeader("Max-Forwards"));
            }
            _ => {}
        }
    }
    if seen.via == 0 {
        return Err(Error::MissingHeader("Via"));
    }
    for (count, name) in [
        (seen.from, "From"),
        (seen.to, "To"),
        (seen.call_id, "Call-ID"),
        (seen.cseq, "CSeq"),
    ] {
        if count != 1 {
            return Err(Error::MissingHeader(name));
        }
    }
    Ok(())
}

/// Finds the Call-ID (or compact `i`) value without parsing or allocating.
///
/// Meant for dispatching raw messages to shards; it trusts nothing and
/// returns `None` when no non-empty Call-ID appears on a header line of its
/// own (a value that starts on a folded continuation line is not found).
pub fn peek_call_id(raw: &[u8]) -> Option<&[u8]> {
    peek_header(raw, "Call-ID", Some(b'i'))
}

/// The value of the first header named `name` (any case, or its `compact`
/// one-letter form), trimmed, without parsing or allocating. The start line is
/// skipped; the search ends at the end of the header section. `None` when the
/// header is absent, empty, or starts on a folded continuation line. Meant for
/// cheap looks at raw bytes before any parsing (dispatch, abuse checks): the
/// value is untrusted and may be anything.
pub fn peek_header<'a>(raw: &'a [u8], name: &str, compact: Option<u8>) -> Option<&'a [u8]> {
    let raw = raw.get(scan::leading_crlf(raw)..)?;
    let mut lines = raw.split(|&b| b == b'\n').map(scan::strip_cr);
    lines.next()?;
    for line in lines {
        match line.first() {
            None => return None,
            Some(&b) if scan::is_ws(b) => continue,
            Some(_) => {}
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let found = scan::trim(line.get(..colon).unwrap_or_default());
        if scan::name_is(found, name, compact) {
            let value = scan::trim(line.get(colon + 1..).unwrap_or_default());
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::prelude::HeadersExt;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@example.com>\r\n\
        From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@10.0.0.1>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    fn with(from: &str, to: &str) -> String {
        INVITE.replacen(from, to, 1)
    }

    #[test]
    fn peek_header_finds_values_by_full_or_compact_name() {
        let raw = INVITE.as_bytes();
        assert_eq!(
            peek_header(raw, "to", Some(b't')),
            Some(&b"Bob <sip:bob@example.com>"[..])
        );
        assert_eq!(peek_header(raw, "CSEQ", None), Some(&b"314159 INVITE"[..]));
        assert_eq!(peek_header(raw, "User-Agent", None), None);
        let compact = with("To: Bob <sip:bob@example.com>", "t:  <sip:x@y>  ");
        assert_eq!(
            peek_header(compact.as_bytes(), "To", Some(b't')),
            Some(&b"<sip:x@y>"[..])
        );
        // Nothing past the header section, nothing from the start line.
        let body = with("v=0\n", "User-Agent: hidden\r\n");
        assert_eq!(peek_header(body.as_bytes(), "User-Agent", None), None);
        assert_eq!(
            peek_header(b"User-Agent: x\r\n\r\n", "User-Agent", None),
            None
        );
        assert_eq!(peek_header(b"", "To", None), None);
        assert_eq!(
            peek_header(b"INVITE x SIP/2.0\r\nTo:\r\n\r\n", "To", None),
            None
        );
    }

    #[test]
    fn parses_a_plain_invite() {
        let m = parse(INVITE.as_bytes()).unwrap();
        let rsip::SipMessage::Request(req) = &m else {
            panic!("not a request")
        };
        assert_eq!(req.method, rsip::Method::Invite);
        assert_eq!(req.body, b"v=0\n");
        assert_eq!(
            req.call_id_header().unwrap().value(),
            "a84b4c76e66710@pc33.example.com"
        );
        assert_eq!(req.cseq_header().unwrap().typed().unwrap().seq, 314_159);
    }

    /// linphone's REGISTER (RFC 5626 instance id in the Contact) parses; a
    /// Contact that is not a SIP name-addr with sound parameters still fails.
    #[test]
    fn contacts_with_an_instance_id_parse() {
        let raw = "REGISTER sip:acme.example SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:47100;branch=z9hG4bK.T6KeoIvrC;rport\r\n\
            From: <sip:1000@acme.example>;tag=Rzhfui02k\r\n\
            To: sip:1000@acme.example\r\n\
            CSeq: 20 REGISTER\r\n\
            Call-ID: YQWMeXHcIr\r\n\
            Max-Forwards: 70\r\n\
            Supported: replaces, outbound, gruu\r\n\
            Accept: application/sdp\r\n\
            Accept: text/plain\r\n\
            Contact: <sip:1000@127.0.0.1:47100;transport=udp>;+sip.instance=\"<urn:uuid:274bf1c1-d64f-007b-9d43-023302f8db7f>\"\r\n\
            Expires: 3600\r\n\
            User-Agent: Unknown\r\n\
            Content-Length: 0\r\n\r\n";
        assert!(parse(raw.as_bytes()).is_ok());
        for good in [
            "<sip:1000@127.0.0.1:5060>;+sip.instance=\"<urn:uuid:1>\";reg-id=1;expires=600",
            "\"Desk <7>\" <sips:1000@h>;+sip.instance=\"<urn:uuid:\\\"x>\"",
        ] {
            assert!(contact_fallback(good), "{good}");
        }
        for bad in [
            "<tel:1000>;+sip.instance=\"<urn:uuid:1>\"",
            "<sip:1000@h>;+sip.instance=\"<urn:uuid:1>",
            "<sip:1000@h>;=x",
            "<sip:1000@h> junk",
            "<sip:1000@h>;a=",
            "sip:1000@h;+sip.instance=\"<urn:uuid:1>\"",
            "<sip:10\"00@h>",
            "<sip:a@b:99999>;+sip.instance=\"<urn:uuid:1>\"",
            "<sip:@>",
        ] {
            assert!(!contact_fallback(bad), "{bad}");
        }
    }

    #[test]
    fn ipv6_references_pass_the_fallback_check() {
        let raw = b"REGISTER sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKv6\r\nFrom: <sip:1000@acme.example>;tag=a\r\nTo: <sip:1000@acme.example>\r\nCall-ID: v6\r\nCSeq: 1 REGISTER\r\nContact: <sip:1000@[2001:db8::1]:5060>\r\nContent-Length: 0\r\n\r\n";
        assert!(parse(raw).is_ok());
        assert!(!ipv6_fallback("SIP/2.0/UDP [zz::1]:5060", true));
        // ... and in the Request-URI, whose typed form keeps the address.
        let raw = String::from_utf8_lossy(raw).replace(
            "REGISTER sip:acme.example SIP/2.0",
            "REGISTER sip:1000@[2001:db8::1]:5070;transport=udp SIP/2.0",
        );
        let Ok(rsip::SipMessage::Request(request)) = parse(raw.as_bytes()) else {
            panic!("an IPv6 Request-URI is refused");
        };
        assert_eq!(
            request.uri.host_with_port.host,
            rsip::Host::IpAddr("2001:db8::1".parse().unwrap())
        );
        assert_eq!(request.uri.user(), Some("1000"));
        assert_eq!(request.uri.host_with_port.port.map(u16::from), Some(5070));
        for bad in ["sip:[2001:db8::1", "sip:[zz::1]", "sip:a@b@[::1]"] {
            let raw = raw.replace("sip:1000@[2001:db8::1]:5070;transport=udp", bad);
            assert!(parse(raw.as_bytes()).is_err(), "{bad}");
        }
        assert!(!ipv6_fallback("<mailto:x@[::1]>", false));
    }

    #[test]
    fn parses_a_response() {
        let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let m = parse(raw.as_bytes()).unwrap();
        let rsip::SipMessage::Response(res) = m else {
            panic!("not a response")
        };
        assert_eq!(res.status_code.code(), 200);
    }

    #[test]
    fn unknown_and_lowercase_methods_are_501() {
        let m = with("INVITE sip:", "FOO sip:").replace("314159 INVITE", "314159 FOO");
        assert_eq!(parse(m.as_bytes()), Err(Error::UnknownMethod));
        let m = with("INVITE sip:", "invite sip:");
        assert_eq!(parse(m.as_bytes()), Err(Error::UnknownMethod));
    }

    #[test]
    fn version_other_than_2_0_is_505() {
        let m = with("SIP/2.0\r\n", "SIP/3.0\r\n");
        assert_eq!(parse(m.as_bytes()), Err(Error::VersionNotSupported));
    }

    #[test]
    fn cseq_method_must_match() {
        let m = with("314159 INVITE", "314159 ACK");
        assert_eq!(parse(m.as_bytes()), Err(Error::CSeqMismatch));
        let m = with("314159 INVITE", "314159 invite");
        assert_eq!(parse(m.as_bytes()), Err(Error::CSeqMismatch));
    }

    #[test]
    fn mandatory_headers() {
        for (line, name) in [
            (
                "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n",
                "Via",
            ),
            ("To: Bob <sip:bob@example.com>\r\n", "To"),
            (
                "From: Alice <sip:alice@example.com>;tag=1928301774\r\n",
                "From",
            ),
            ("Call-ID: a84b4c76e66710@pc33.example.com\r\n", "Call-ID"),
            ("CSeq: 314159 INVITE\r\n", "CSeq"),
        ] {
            let m = with(line, "");
            assert_eq!(parse(m.as_bytes()), Err(Error::MissingHeader(name)));
        }
        let m = with("Call-ID:", "Call-ID: b\r\nCall-ID:");
        assert_eq!(parse(m.as_bytes()), Err(Error::MissingHeader("Call-ID")));
        let m = with("Max-Forwards: 70\r\n", "");
        assert!(parse(m.as_bytes()).is_ok());
    }

    #[test]
    fn typed_headers_must_parse() {
        for (from, to, name) in [
            ("SIP/2.0/UDP 10.0.0.1", "garbage", "Via"),
            ("Alice <sip:alice@example.com>", "<nonsense", "From"),
            ("Bob <sip:bob@example.com>", "<sip:b@c", "To"),
            (
                "<sip:alice@10.0.0.1>",
                "<sip:x@y>, <sip:a@b:99999>",
                "Contact",
            ),
            ("314159 INVITE", "abc INVITE", "CSeq"),
            ("314159 INVITE", "4294967295 INVITE", "CSeq"),
            ("Max-Forwards: 70", "Max-Forwards: 256", "Max-Forwards"),
            (
                "Call-ID: a84b4c76e66710@pc33.example.com",
                "Call-ID: ",
                "Call-ID",
            ),
        ] {
            let m = with(from, to);
            let got = parse(m.as_bytes());
            assert_eq!(got, Err(Error::InvalidHeader(name)), "{name}");
        }
    }

    #[test]
    fn peeks_call_id() {
        assert_eq!(
            peek_call_id(INVITE.as_bytes()),
            Some(&b"a84b4c76e66710@pc33.example.com"[..])
        );
        assert_eq!(
            peek_call_id(b"\r\nBYE x SIP/2.0\nI :  abc  \n\n"),
            Some(&b"abc"[..])
        );
        assert_eq!(
            peek_call_id(b"BYE x SIP/2.0\r\nTo: a\r\n\r\nCall-ID: body"),
            None
        );
        assert_eq!(peek_call_id(b"BYE x SIP/2.0\r\nCall-ID:\r\n\r\n"), None);
        assert_eq!(peek_call_id(b"Call-ID: start-line"), None);
        assert_eq!(peek_call_id(b""), None);
    }
}
