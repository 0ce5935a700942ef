//! Byte-level helpers shared by the framer, the normaliser and the textual
//! scanners: line splitting, header-section boundaries, header names.
//!
//! Nothing here allocates. Lines may end in CRLF or bare LF; a trailing CR is
//! stripped from each line.

use crate::error::{Error, Result};

/// SP or HTAB.
pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 3261 `token` characters (the same set rsip accepts in header names).
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// `s` without leading and trailing SP/HTAB.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ws(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// `line` without one trailing CR.
pub(crate) fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Number of CR and LF bytes before the start line (RFC 3261 §7.5 lets
/// receivers ignore them).
pub(crate) fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

/// Where the header section ends: `(head_end, body_start)`.
///
/// `buf[..head_end]` is the start line plus header lines, without the line
/// break of the last one; `buf[body_start..]` is the body. The terminator is
/// an empty line (CRLF CRLF, LF LF or a mix).
pub(crate) fn header_end(buf: &[u8]) -> Option<(usize, usize)> {
    for i in memchr::memchr_iter(b'\n', buf) {
        let body_start = match buf.get(i + 1..) {
            Some([b'\n', ..]) => i + 2,
            Some([b'\r', b'\n', ..]) => i + 3,
            _ => continue,
        };
        let head_end = if i > 0 && buf.get(i - 1) == Some(&b'\r') {
            i - 1
        } else {
            i
        };
        return Some((head_end, body_start));
    }
    None
}

/// Splits `head` (as given by [`header_end`]) into the start line and the
/// header lines that follow it.
pub(crate) fn split_start_line(head: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', head) {
        Some(i) => (
            strip_cr(head.get(..i).unwrap_or_default()),
            head.get(i + 1..).unwrap_or_default(),
        ),
        None => (strip_cr(head), &[]),
    }
}

/// One logical header: a header line and its folded continuation lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawHeader<'a> {
    /// The name as written, without whitespace before the colon.
    pub(crate) name: &'a [u8],
    /// Everything after the colon, possibly spanning several physical lines.
    pub(crate) value: &'a [u8],
    /// The whole logical header as written (name, colon, value, folds).
    pub(crate) raw: &'a [u8],
}

impl<'a> RawHeader<'a> {
    /// Whether the value spans more than one physical line.
    pub(crate) fn is_folded(&self) -> bool {
        memchr::memchr(b'\n', self.value).is_some()
    }

    /// The trimmed non-empty pieces of the value, one per physical line.
    /// Joined with single spaces they form the unfolded value.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.value
            .split(|&b| b == b'\n')
            .map(|line| trim(strip_cr(line)))
            .filter(|s| !s.is_empty())
    }

    /// The value when it is exactly one non-empty segment (the usual case),
    /// else `None`.
    pub(crate) fn single_segment(&self) -> Option<&'a [u8]> {
        let mut segs = self.segments();
        let first = segs.next()?;
        segs.next().is_none().then_some(first)
    }

    /// Appends the unfolded value (segments joined by one SP) to `out`.
    pub(crate) fn unfold_into(&self, out: &mut Vec<u8>) {
        for (i, seg) in self.segments().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(seg);
        }
    }

    /// Whether this header is `full` (case-insensitive) or its compact form.
    pub(crate) fn is(&self, full: &str, compact: Option<u8>) -> bool {
        name_is(self.name, full, compact)
    }
}

/// Whether `name` is `full` (case-insensitive) or the one-letter `compact` form.
pub(crate) fn name_is(name: &[u8], full: &str, compact: Option<u8>) -> bool {
    name.eq_ignore_ascii_case(full.as_bytes())
        || matches!((name, compact), ([c], Some(k)) if c.eq_ignore_ascii_case(&k))
}

/// Iterator over the logical headers of a header section (the part after the
/// start line). Lines that are not `token *WSP ":" ...` yield an error.
pub(crate) struct Headers<'a> {
    rest: &'a [u8],
}

impl<'a> Headers<'a> {
    pub(crate) fn new(section: &'a [u8]) -> Self {
        Self { rest: section }
    }

    fn take_logical(&mut self) -> &'a [u8] {
        let rest = self.rest;
        let mut end = 0;
        loop {
            match memchr::memchr(b'\n', rest.get(end..).unwrap_or_default()) {
                Some(i) => {
                    let nl = end + i;
                    if rest.get(nl + 1).copied().is_some_and(is_ws) {
                        end = nl + 1;
                        continue;
                    }
                    self.rest = rest.get(nl + 1..).unwrap_or_default();
                    return strip_cr(rest.get(..nl).unwrap_or_default());
                }
                None => {
                    self.rest = &[];
                    return strip_cr(rest);
                }
            }
        }
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Result<RawHeader<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let raw = self.take_logical();
        Some(split_header(raw))
    }
}

fn split_header(raw: &[u8]) -> Result<RawHeader<'_>> {
    if raw.first().copied().is_some_and(is_ws) {
        return Err(Error::Malformed("continuation line without a header"));
    }
    let first_line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let colon =
        memchr::memchr(b':', first_line).ok_or(Error::Malformed("header line without colon"))?;
    let name = trim(first_line.get(..colon).unwrap_or_default());
    if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
        return Err(Error::Malformed("invalid header name"));
    }
    Ok(RawHeader {
        name,
        value: raw.get(colon + 1..).unwrap_or_default(),
        raw,
    })
}

/// Parses a Content-Length value: 1 to 10 ASCII digits fitting in `u32`.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    usize::try_from(u32::try_from(n).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_sp_and_tab_only() {
        assert_eq!(trim(b" \tab c\t "), b"ab c");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
    }

    #[test]
    fn finds_header_end_with_crlf_and_lf() {
        let m = b"A\r\nB: c\r\n\r\nbody";
        let (h, b) = header_end(m).unwrap();
        assert_eq!(&m[..h], b"A\r\nB: c");
        assert_eq!(&m[b..], b"body");
        let m = b"A\nB: c\n\nbody";
        let (h, b) = header_end(m).unwrap();
        assert_eq!(&m[..h], b"A\nB: c");
        assert_eq!(&m[b..], b"body");
        assert_eq!(header_end(b"A\r\nB: c\r\n"), None);
    }

    #[test]
    fn logical_headers_absorb_folds() {
        let hs: Vec<_> = Headers::new(b"Subject: a\r\n  b\r\nTo : x\r\nv:y")
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(hs.len(), 3);
        assert_eq!(hs[0].name, b"Subject");
        assert!(hs[0].is_folded());
        let mut v = Vec::new();
        hs[0].unfold_into(&mut v);
        assert_eq!(v, b"a b");
        assert_eq!(hs[1].name, b"To");
        assert_eq!(hs[1].single_segment(), Some(&b"x"[..]));
        assert!(hs[2].is("Via", Some(b'v')));
    }

    #[test]
    fn rejects_bad_header_lines() {
        assert!(Headers::new(b" folded first").next().unwrap().is_err());
        assert!(Headers::new(b"no colon").next().unwrap().is_err());
        assert!(Headers::new(b"bad name: x").next().unwrap().is_err());
        assert!(Headers::new(b": x").next().unwrap().is_err());
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"0042"), Some(42));
        assert_eq!(parse_content_length(b"4294967295"), Some(4_294_967_295));
        assert_eq!(parse_content_length(b"4294967296"), None);
        assert_eq!(parse_content_length(b"99999999999"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"1 2"), None);
        assert_eq!(parse_content_length(b""), None);
    }
}
