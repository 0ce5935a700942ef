//! Rewrites one received SIP message into the canonical text rsip parses
//! correctly.
//!
//! rsip 0.4 reads `Name: value` lines separated by CRLF and nothing else. Real
//! traffic (and RFC 4475) also has folded lines, compact names, whitespace
//! before the colon, comma-joined header values, bare LF line ends and
//! datagrams with trailing bytes after the body. [`normalize`] turns all of
//! that into one canonical form:
//!
//! - the start line with single spaces and `SIP/2.0` upper case;
//! - one `Name: value` line per header, folds unfolded to one SP, compact
//!   names expanded, value trimmed;
//! - Via, Contact, Route and Record-Route split at top-level commas (commas in
//!   quoted strings and inside `<...>` stay);
//! - the body cut to Content-Length (bytes beyond it are dropped, as RFC 3261
//!   §18.3 asks for datagrams; too few bytes is an error).
//!
//! It refuses, before any parsing, NUL bytes and bare CRs in the header
//! section and anything over [`MAX_MESSAGE_LEN`], [`MAX_HEADER_LINE`] or
//! [`MAX_HEADERS`]. One output buffer, sized from the input, is allocated.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::scan::{self, RawHeader};

/// Largest message accepted, in bytes (fits the largest UDP datagram).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Longest logical header (with its folds), in bytes.
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// Most headers in one message, counted after splitting comma lists.
pub const MAX_HEADERS: usize = 256;

/// Compact header forms (RFC 3261 §7.3.3 and later RFCs) and their full names.
const COMPACT: &[(u8, &str)] = &[
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
];

/// The full name for a compact one-letter header name, if it is one.
pub(crate) fn expand_compact(name: &[u8]) -> Option<&'static str> {
    match name {
        [c] => COMPACT
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(c))
            .map(|&(_, full)| full),
        _ => None,
    }
}

/// What the start line says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    Request { method: Range<usize> },
    Response { code: u16 },
}

/// A message in canonical form, ready for rsip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    bytes: Vec<u8>,
    body_start: usize,
    start: Start,
}

impl Normalized {
    /// The canonical message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The canonical message bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The body, cut to Content-Length.
    pub fn body(&self) -> &[u8] {
        self.bytes.get(self.body_start..).unwrap_or_default()
    }

    /// The request method as written, or `None` for a response.
    pub fn method(&self) -> Option<&[u8]> {
        match &self.start {
            Start::Request { method } => self.bytes.get(method.clone()),
            Start::Response { .. } => None,
        }
    }

    /// The status code, or `None` for a request.
    pub fn status_code(&self) -> Option<u16> {
        match self.start {
            Start::Response { code } => Some(code),
            Start::Request { .. } => None,
        }
    }
}

/// Normalises one message (a datagram, or one frame cut by
/// [`next_frame`](crate::framer::next_frame)).
///
/// # Errors
///
/// [`Error::TooLarge`] over a limit, [`Error::VersionNotSupported`] for a
/// well-formed version other than 2.0, [`Error::Truncated`] when the body is
/// shorter than Content-Length, [`Error::Malformed`] for everything else.
pub fn normalize(raw: &[u8]) -> Result<Normalized> {
    if raw.len() > MAX_MESSAGE_LEN {
        return Err(Error::TooLarge("message length"));
    }
    let raw = raw.get(scan::leading_crlf(raw)..).unwrap_or_default();
    if raw.is_empty() {
        return Err(Error::Malformed("empty message"));
    }
    let (head_end, body_start) =
        scan::header_end(raw).ok_or(Error::Malformed("no end of header section"))?;
    let head = raw.get(..head_end).unwrap_or_default();
    check_bytes(raw, head_end)?;

    let (start_line, section) = scan::split_start_line(head);
    let mut out = Vec::with_capacity(raw.len() + 64);
    let start = write_start_line(start_line, &mut out)?;

    let mut content_length: Option<usize> = None;
    let mut scratch = Vec::new();
    let mut emitted = 0usize;
    for header in scan::Headers::new(section) {
        let header = header?;
        if header.raw.len() > MAX_HEADER_LINE {
            return Err(Error::TooLarge("header line length"));
        }
        let name: &[u8] = expand_compact(header.name).map_or(header.name, str::as_bytes);
        let value = if header.is_folded() {
            scratch.clear();
            header.unfold_into(&mut scratch);
            &scratch[..]
        } else {
            scan::trim(header.value)
        };

        if header.is("Content-Length", Some(b'l')) {
            let n = scan::parse_content_length(value)
                .ok_or(Error::Malformed("invalid Content-Length"))?;
            if content_length.is_some_and(|seen| seen != n) {
                return Err(Error::Malformed("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        }

        let layout = layout_of(&header);
        if is_list_header(&header) {
            for_each_element(value, |element| {
                emit(&mut out, &mut emitted, name, element, layout)
            })?;
        } else {
            emit(&mut out, &mut emitted, name, value, layout)?;
        }
    }
    out.extend_from_slice(b"\r\n");

    let body = raw.get(body_start..).unwrap_or_default();
    let body = match content_length {
        Some(n) => body.get(..n).ok_or(Error::Truncated)?,
        None => body,
    };
    let body_start = out.len();
    out.extend_from_slice(body);
    Ok(Normalized {
        bytes: out,
        body_start,
        start,
    })
}

/// No NUL and no CR without LF in the start line and header section.
fn check_bytes(raw: &[u8], head_end: usize) -> Result<()> {
    let head = raw.get(..head_end).unwrap_or_default();
    for i in memchr::memchr2_iter(b'\0', b'\r', head) {
        if head.get(i) == Some(&b'\0') {
            return Err(Error::Malformed("NUL byte in header section"));
        }
        if raw.get(i + 1) != Some(&b'\n') {
            return Err(Error::Malformed("bare CR in header section"));
        }
    }
    Ok(())
}

fn is_list_header(header: &RawHeader<'_>) -> bool {
    header.is("Via", Some(b'v'))
        || header.is("Contact", Some(b'm'))
        || header.is("Route", None)
        || header.is("Record-Route", None)
}

/// How a header value is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// As received (after unfolding and trimming).
    Verbatim,
    /// Name-addr or Via: whitespace around `;` and `=` removed (and around
    /// `/` when `slash`), outside quoted strings and `<...>`. RFC 3261 allows
    /// it there (SEMI, EQUAL, SLASH), but rsip misreads it: it fails on
    /// `<sip:a@b> ;tag=1` and silently drops Via parameters after `host ;`.
    Tight { slash: bool },
}

fn layout_of(header: &RawHeader<'_>) -> Layout {
    if header.is("Via", Some(b'v')) {
        Layout::Tight { slash: true }
    } else if header.is("From", Some(b'f'))
        || header.is("To", Some(b't'))
        || header.is("Contact", Some(b'm'))
        || header.is("Route", None)
        || header.is("Record-Route", None)
    {
        Layout::Tight { slash: false }
    } else {
        Layout::Verbatim
    }
}

fn emit(
    out: &mut Vec<u8>,
    emitted: &mut usize,
    name: &[u8],
    value: &[u8],
    layout: Layout,
) -> Result<()> {
    *emitted += 1;
    if *emitted > MAX_HEADERS {
        return Err(Error::TooLarge("header count"));
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    match layout {
        Layout::Verbatim => out.extend_from_slice(value),
        Layout::Tight { slash } => push_tight(out, value, slash),
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Appends `value` with the whitespace next to separators removed; see
/// [`Layout::Tight`].
fn push_tight(out: &mut Vec<u8>, value: &[u8], slash: bool) {
    let is_sep = |b: u8| b == b';' || b == b'=' || (slash && b == b'/');
    let (mut in_quotes, mut escaped, mut in_angle) = (false, false, false);
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if in_quotes {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quotes = false,
                _ => {}
            }
        } else if in_angle {
            in_angle = b != b'>';
        } else if scan::is_ws(b) {
            let rest = value.get(i..).unwrap_or_default();
            let run = rest.iter().take_while(|&&c| scan::is_ws(c)).count();
            let next = value.get(i + run).copied();
            let prev = out.last().copied();
            if !(next.is_some_and(is_sep) || prev.is_some_and(is_sep)) {
                out.extend_from_slice(rest.get(..run).unwrap_or_default());
            }
            i += run;
            continue;
        } else {
            match b {
                b'"' => in_quotes = true,
                b'<' => in_angle = true,
                _ => {}
            }
        }
        out.push(b);
        i += 1;
    }
}

/// Calls `f` with each trimmed, non-empty element of a comma-separated header
/// value. Commas inside quoted strings (with `\` escapes) and inside `<...>`
/// do not separate.
fn for_each_element(value: &[u8], mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        if in_quotes {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' if !in_angle => in_quotes = true,
            b'<' if !in_angle => in_angle = true,
            b'>' if in_angle => in_angle = false,
            b',' if !in_angle => {
                let element = scan::trim(value.get(start..i).unwrap_or_default());
                if !element.is_empty() {
                    f(element)?;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes || in_angle {
        return Err(Error::Malformed("unterminated quoted string or <...>"));
    }
    let element = scan::trim(value.get(start..).unwrap_or_default());
    if !element.is_empty() {
        f(element)?;
    }
    Ok(())
}

/// Checks a `SIP/x.y` version: 2.0 is fine, another well-formed one is
/// unsupported, anything else is garbage.
pub(crate) fn check_version(version: &[u8]) -> Result<()> {
    if version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let well_formed = version
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        && version.get(4..).is_some_and(|rest| {
            let mut parts = rest.split(|&b| b == b'.');
            let ok = |p: Option<&[u8]>| {
                p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
            };
            ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
        });
    if well_formed {
        Err(Error::VersionNotSupported)
    } else {
        Err(Error::Malformed("invalid SIP version"))
    }
}

fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| scan::is_ws(b)).filter(|w| !w.is_empty())
}

fn write_start_line(line: &[u8], out: &mut Vec<u8>) -> Result<Start> {
    let mut parts = words(line);
    let first = parts.next().ok_or(Error::Malformed("empty start line"))?;
    if first
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        check_version(first)?;
        let code = parts
            .next()
            .filter(|c| c.len() == 3 && c.iter().all(u8::is_ascii_digit))
            .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u16>().ok())
            .filter(|c| (100..=699).contains(c))
            .ok_or(Error::Malformed("invalid status code"))?;
        // The reason phrase is everything after the code, spaces included.
        let after_version = scan::trim(line.get(first.len()..).unwrap_or_default());
        let reason = scan::trim(after_version.get(3..).unwrap_or_default());
        out.extend_from_slice(b"SIP/2.0 ");
        // `code` is 100..=699: three digits.
        out.extend(
            [code / 100, code / 10 % 10, code % 10]
                .iter()
                .map(|&d| b'0' + d as u8),
        );
        out.push(b' ');
        out.extend_from_slice(reason);
        out.extend_from_slice(b"\r\n");
        return Ok(Start::Response { code });
    }

    let method = first;
    let (Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::Malformed("request line is not METHOD URI VERSION"));
    };
    // The version decides 505 before anything else about the request is judged.
    check_version(version)?;
    if !method.iter().all(|&b| scan::is_token(b)) {
        return Err(Error::Malformed("invalid method"));
    }
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    Ok(Start::Request {
        method: 0..method.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        String::from_utf8(normalize(s.as_bytes()).unwrap().into_bytes()).unwrap()
    }

    #[test]
    fn canonical_input_is_unchanged() {
        let m = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(norm(m), m);
    }

    #[test]
    fn unfolds_and_expands_and_trims() {
        let m = "OPTIONS  sip:a@b   sip/2.0\r\nSubject: I know you're there,\r\n     pull up a chair  \r\nTo : <sip:a@b>\r\ni:abc\r\nl: 0\r\n\r\n";
        assert_eq!(
            norm(m),
            "OPTIONS sip:a@b SIP/2.0\r\nSubject: I know you're there, pull up a chair\r\nTo: <sip:a@b>\r\nCall-ID: abc\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn splits_lists_but_not_quoted_or_bracketed_commas() {
        let m = "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP a, SIP/2.0/TCP b;x=1\r\nm: \"Doe, J\" <sip:a@b;p=a,b>;q=1, <sip:c@d>\r\nRoute: <sip:r1;lr>,<sip:r2;lr>\r\nRecord-Route: <sip:rr>\r\n\r\n";
        assert_eq!(
            norm(m),
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nVia: SIP/2.0/TCP b;x=1\r\nContact: \"Doe, J\" <sip:a@b;p=a,b>;q=1\r\nContact: <sip:c@d>\r\nRoute: <sip:r1;lr>\r\nRoute: <sip:r2;lr>\r\nRecord-Route: <sip:rr>\r\n\r\n"
        );
    }

    #[test]
    fn whitespace_around_separators_is_removed_outside_quotes() {
        let m = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP / 2.0 / UDP h:5060 ; branch = z9hG4bK1 ;rport\r\nFrom: \"A ; b = c\" <sip:a@b ; x> ; tag = 9\r\nSubject: a ; b\r\n\r\n";
        assert_eq!(
            norm(m),
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport\r\nFrom: \"A ; b = c\" <sip:a@b ; x>;tag=9\r\nSubject: a ; b\r\n\r\n"
        );
    }

    #[test]
    fn escaped_quote_does_not_end_a_quoted_string() {
        let m = "OPTIONS sip:a@b SIP/2.0\r\nContact: \"a\\\", b\" <sip:a@b>\r\n\r\n";
        assert_eq!(
            norm(m),
            "OPTIONS sip:a@b SIP/2.0\r\nContact: \"a\\\", b\" <sip:a@b>\r\n\r\n"
        );
    }

    #[test]
    fn unterminated_list_element_is_malformed() {
        let m = "OPTIONS sip:a@b SIP/2.0\r\nContact: \"a, <sip:a@b>\r\n\r\n";
        assert!(matches!(normalize(m.as_bytes()), Err(Error::Malformed(_))));
    }

    #[test]
    fn body_is_cut_to_content_length() {
        let n = normalize(b"MESSAGE sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabcdef").unwrap();
        assert_eq!(n.body(), b"abc");
        let n = normalize(b"MESSAGE sip:a@b SIP/2.0\r\n\r\nabcdef").unwrap();
        assert_eq!(n.body(), b"abcdef");
        assert_eq!(
            normalize(b"MESSAGE sip:a@b SIP/2.0\r\nl: 30\r\n\r\nabcdef"),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn bare_lf_and_leading_crlf() {
        assert_eq!(
            norm("\r\n\r\nOPTIONS sip:a@b SIP/2.0\nTo: x\n\n"),
            "OPTIONS sip:a@b SIP/2.0\r\nTo: x\r\n\r\n"
        );
    }

    #[test]
    fn start_line_facts() {
        let n = normalize(b"INFO sip:a@b SIP/2.0\r\n\r\n").unwrap();
        assert_eq!(n.method(), Some(&b"INFO"[..]));
        assert_eq!(n.status_code(), None);
        let n = normalize(b"SIP/2.0 180  Ringing  now\r\n\r\n").unwrap();
        assert_eq!(n.status_code(), Some(180));
        assert_eq!(n.method(), None);
        assert!(n.as_bytes().starts_with(b"SIP/2.0 180 Ringing  now\r\n"));
    }

    #[test]
    fn versions() {
        assert_eq!(
            normalize(b"INVITE sip:a@b SIP/3.0\r\n\r\n"),
            Err(Error::VersionNotSupported)
        );
        assert_eq!(
            normalize(b"SIP/7.0 200 OK\r\n\r\n"),
            Err(Error::VersionNotSupported)
        );
        assert!(matches!(
            normalize(b"INVITE sip:a@b HTTP/1.1\r\n\r\n"),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn rejects_bad_bytes_and_lines() {
        for bad in [
            &b"INVITE sip:a@b SIP/2.0\r\nTo: a\0b\r\n\r\n"[..],
            b"INVITE sip:a@b SIP/2.0\r\nTo: a\rb\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\n folded\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nl: x\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab",
            b"INVITE sip:a @b SIP/2.0\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n",
            b"SIP/2.0 99 Low\r\n\r\n",
            b"SIP/2.0 2000 OK\r\n\r\n",
            b"IN(VITE sip:a@b SIP/2.0\r\n\r\n",
            b"\r\n\r\n",
            b"",
        ] {
            let got = normalize(bad);
            assert!(
                matches!(got, Err(Error::Malformed(_))),
                "{got:?} for {bad:?}"
            );
        }
    }

    #[test]
    fn limits() {
        let long = format!(
            "INVITE sip:a@b SIP/2.0\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_LINE)
        );
        assert_eq!(
            normalize(long.as_bytes()),
            Err(Error::TooLarge("header line length"))
        );
        let many = format!(
            "INVITE sip:a@b SIP/2.0\r\n{}\r\n",
            "X: a\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            normalize(many.as_bytes()),
            Err(Error::TooLarge("header count"))
        );
        let list = format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: {}\r\n\r\n",
            "a,".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            normalize(list.as_bytes()),
            Err(Error::TooLarge("header count"))
        );
        let huge = vec![b'a'; MAX_MESSAGE_LEN + 1];
        assert_eq!(normalize(&huge), Err(Error::TooLarge("message length")));
    }

    #[test]
    fn compact_table() {
        assert_eq!(expand_compact(b"v"), Some("Via"));
        assert_eq!(expand_compact(b"I"), Some("Call-ID"));
        assert_eq!(expand_compact(b"z"), None);
        assert_eq!(expand_compact(b"Via"), None);
    }
}
