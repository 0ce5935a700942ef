//! Answers to requests that could not be parsed, built textually from the
//! bytes received (RFC 3261 §8.2.6: copy Via, From, To, Call-ID and CSeq).

use crate::scan;

/// Builds `SIP/2.0 <status> <reason>` for a request that failed to parse, by
/// copying its Via (all, in order), From, To, Call-ID and CSeq lines (compact
/// names kept, folds unfolded). A To without a tag gets one derived from the
/// request, so a retransmission gets the same answer.
///
/// Returns `None` — the caller then drops the message — when the bytes are a
/// response, an ACK, do not look like a request, lack one of those headers,
/// or when `status` is outside 300..=699 (error answers only). Only complete
/// lines are used, so a truncated datagram still gets an answer. Control
/// characters in `reason` are replaced by spaces.
pub fn error_response(raw: &[u8], status: u16, reason: &str) -> Option<Vec<u8>> {
    error_response_with(raw, status, reason, &[])
}

/// Like [`error_response`], with `extra` header lines (e.g. `Retry-After` on a
/// `503`) before `Content-Length`. A name that is not a token, or control
/// characters in a value, drop that header rather than break the message.
pub fn error_response_with(
    raw: &[u8],
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
) -> Option<Vec<u8>> {
    if !(300..=699).contains(&status) {
        return None;
    }
    let raw = raw.get(scan::leading_crlf(raw)..)?;
    let head = match scan::header_end(raw) {
        Some((head_end, _)) => raw.get(..head_end)?,
        // No end of headers: keep only the lines that ended.
        None => raw.get(..memchr::memrchr(b'\n', raw)?)?,
    };
    let (start_line, section) = scan::split_start_line(head);
    if !looks_like_request(start_line) {
        return None;
    }

    let mut vias: Vec<scan::RawHeader<'_>> = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    // Lines that are not headers cannot be copied but do not stop the answer.
    for header in scan::Headers::new(section).flatten() {
        // Values with control bytes (NUL, bare CR, ...) are not echoed back.
        if header
            .segments()
            .flatten()
            .any(|&b| b.is_ascii_control() && b != b'\t')
        {
            continue;
        }
        if header.is("Via", Some(b'v')) {
            vias.push(header);
        } else if header.is("From", Some(b'f')) {
            from.get_or_insert(header);
        } else if header.is("To", Some(b't')) {
            to.get_or_insert(header);
        } else if header.is("Call-ID", Some(b'i')) {
            call_id.get_or_insert(header);
        } else if header.is("CSeq", None) {
            cseq.get_or_insert(header);
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if vias.is_empty()
        || [from, to, call_id, cseq]
            .iter()
            .any(|h| h.segments().next().is_none())
    {
        return None;
    }

    let size = 64 + reason.len() + vias.iter().map(|h| h.raw.len() + 2).sum::<usize>();
    let mut out = Vec::with_capacity(size + head.len().min(1024));
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend(
        reason
            .bytes()
            .map(|b| if b.is_ascii_control() { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
    for via in &vias {
        copy_line(&mut out, via);
    }
    copy_line(&mut out, &from);
    copy_line(&mut out, &to);
    if !has_tag(&to) {
        out.truncate(out.len() - 2);
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(
            format!("{:016x}", fnv1a(&[call_id.raw, cseq.raw, from.raw])).as_bytes(),
        );
        out.extend_from_slice(b"\r\n");
    }
    copy_line(&mut out, &call_id);
    copy_line(&mut out, &cseq);
    for (name, value) in extra {
        let name_ok = !name.is_empty() && name.bytes().all(scan::is_token);
        if !name_ok || value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(out)
}

/// `METHOD SP ... SP SIP/...` where METHOD is a token other than ACK (ACKs
/// are never answered). The middle may be a broken Request-URI with spaces.
fn looks_like_request(line: &[u8]) -> bool {
    let mut words = line.split(|&b| scan::is_ws(b)).filter(|w| !w.is_empty());
    let (Some(method), Some(_uri), Some(version)) = (words.next(), words.next(), words.next_back())
    else {
        return false;
    };
    method.iter().all(|&b| scan::is_token(b))
        && method != b"ACK"
        && version
            .get(..4)
            .is_some_and(|v| v.eq_ignore_ascii_case(b"SIP/"))
}

/// Appends `Name: value\r\n` with the name as written and the value unfolded.
fn copy_line(out: &mut Vec<u8>, header: &scan::RawHeader<'_>) {
    out.extend_from_slice(header.name);
    out.extend_from_slice(b": ");
    header.unfold_into(out);
    out.extend_from_slice(b"\r\n");
}

/// Whether a To value carries a `tag` parameter, read as a name-addr
/// ([`crate::NameAddr`]); a value that is not text has none.
fn has_tag(to: &scan::RawHeader<'_>) -> bool {
    let mut value = Vec::with_capacity(to.value.len());
    to.unfold_into(&mut value);
    std::str::from_utf8(&value).is_ok_and(|v| crate::NameAddr::parse(v).param("tag").is_some())
}

/// FNV-1a over several slices: a stable, cheap tag for stateless answers.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
        Via: SIP/2.0/TCP c.example.com;branch=z9hG4bK3\r\n\
        t: Bob\r\n <sip:bob@example.com>\r\n\
        f: <sip:alice@example.com>;tag=88\r\n\
        i: call-1\r\n\
        CSeq: 7 INVITE\r\n\
        Content-Length: banana\r\n\r\n";

    fn text(v: Option<Vec<u8>>) -> String {
        String::from_utf8(v.expect("an answer")).unwrap()
    }

    #[test]
    fn copies_the_dialog_headers() {
        let out = text(error_response(BAD.as_bytes(), 400, "Bad Request"));
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines[0], "SIP/2.0 400 Bad Request");
        assert_eq!(
            lines[1],
            "v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2"
        );
        assert_eq!(lines[2], "Via: SIP/2.0/TCP c.example.com;branch=z9hG4bK3");
        assert_eq!(lines[3], "f: <sip:alice@example.com>;tag=88");
        assert!(
            lines[4].starts_with("t: Bob <sip:bob@example.com>;tag="),
            "{}",
            lines[4]
        );
        assert_eq!(lines[5], "i: call-1");
        assert_eq!(lines[6], "CSeq: 7 INVITE");
        assert_eq!(lines[7], "Content-Length: 0");
        assert!(out.ends_with("\r\n\r\n"));
        // The parser accepts our own answer.
        assert!(crate::parse(out.as_bytes()).is_ok(), "{out}");
    }

    #[test]
    fn tag_is_stable_and_existing_tag_is_kept() {
        let a = error_response(BAD.as_bytes(), 400, "Bad Request");
        assert_eq!(a, error_response(BAD.as_bytes(), 400, "Bad Request"));
        let tagged = BAD.replace(
            "t: Bob\r\n <sip:bob@example.com>",
            "To: <sip:bob@example.com> ; TAG = x",
        );
        let out = text(error_response(tagged.as_bytes(), 400, "Bad Request"));
        assert!(
            out.contains("\r\nTo: <sip:bob@example.com> ; TAG = x\r\n"),
            "{out}"
        );
        let quoted = BAD.replace("t: Bob\r\n", "t: \";tag=no\"\r\n");
        let out = text(error_response(quoted.as_bytes(), 400, "Bad Request"));
        assert!(out.contains("<sip:bob@example.com>;tag="), "{out}");
    }

    #[test]
    fn no_answer_cases() {
        let ack = BAD.replacen("INVITE sip", "ACK sip", 1);
        assert_eq!(error_response(ack.as_bytes(), 400, "x"), None);
        let resp = BAD.replacen("INVITE sip:bob@example.com SIP/2.0", "SIP/2.0 200 OK", 1);
        assert_eq!(error_response(resp.as_bytes(), 400, "x"), None);
        for name in ["v: ", "Via: ", "f: ", "t: ", "i: ", "CSeq: "] {
            let lacking = BAD
                .lines()
                .filter(|l| !l.starts_with(name))
                .collect::<Vec<_>>()
                .join("\r\n");
            if name == "v: " || name == "Via: " {
                // One Via form is enough.
                assert!(error_response(lacking.as_bytes(), 400, "x").is_some());
            } else {
                assert_eq!(error_response(lacking.as_bytes(), 400, "x"), None, "{name}");
            }
        }
        assert_eq!(error_response(BAD.as_bytes(), 200, "OK"), None);
        assert_eq!(error_response(b"", 400, "x"), None);
        assert_eq!(error_response(b"\x00\xff garbage", 400, "x"), None);
    }

    #[test]
    fn truncated_request_still_answered_from_complete_lines() {
        let cut = &BAD.as_bytes()[..BAD.find("Content-Length").unwrap() + 5];
        let out = text(error_response(cut, 400, "Bad Request"));
        assert!(out.contains("\r\nCSeq: 7 INVITE\r\n"));
        assert!(!out.contains("Conte\r\n"));
    }

    #[test]
    fn extra_headers_are_added_and_checked() {
        let out = text(error_response_with(
            BAD.as_bytes(),
            503,
            "Service Unavailable",
            &[
                ("Retry-After", "5"),
                ("Bad Name", "x"),
                ("X-Evil", "a\r\nB: c"),
            ],
        ));
        assert!(out.starts_with("SIP/2.0 503 Service Unavailable\r\n"));
        assert!(
            out.ends_with("\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n"),
            "{out}"
        );
        assert!(
            !out.contains("Bad Name") && !out.contains("X-Evil"),
            "{out}"
        );
        assert!(crate::parse(out.as_bytes()).is_ok(), "{out}");
        assert_eq!(
            error_response_with(BAD.as_bytes(), 400, "Bad Request", &[]),
            error_response(BAD.as_bytes(), 400, "Bad Request")
        );
    }

    #[test]
    fn reason_cannot_inject_lines() {
        let out = text(error_response(BAD.as_bytes(), 400, "Bad\r\nX: y"));
        assert!(out.starts_with("SIP/2.0 400 Bad  X: y\r\n"));
    }
}
