//! A parsed SIP message in the shape the core reads it, and a writer for the messages
//! the core sends.
//!
//! Parsing is `pbx_sip::parse` (our normaliser in front of `rsip`); this module moves
//! the parsed headers into a flat list of `(name, value)` pairs, one value per header
//! line, and offers the few structured reads the registrar and B2BUA need (top Via,
//! From/To tags and URIs, CSeq, Contact list).

use std::fmt::Write as _;
use std::net::SocketAddr;

use rsip::SipMessage;

use crate::TransportKind;

/// Why an inbound message is refused after it parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) &'static str);

/// Request line or status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request { method: String, uri: String },
    Response { status: u16, reason: String },
}

/// A parsed message with headers flattened to canonical names.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) start: StartLine,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// The fields of a Via header value that routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Via<'a> {
    pub(crate) transport: &'a str,
    pub(crate) sent_by: &'a str,
    pub(crate) branch: Option<&'a str>,
    pub(crate) rport: bool,
}

/// A From/To/Contact value: `"Name" <uri>;params` or `uri;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameAddr<'a> {
    /// The value without its header parameters (keeps display name and brackets).
    pub(crate) addr: &'a str,
    pub(crate) uri: &'a str,
    pub(crate) params: &'a str,
}

impl<'a> NameAddr<'a> {
    pub(crate) fn parse(value: &'a str) -> NameAddr<'a> {
        let value = value.trim();
        if let Some(open) = find_unquoted(value, b'<')
            && let Some(close_rel) = value[open..].find('>')
        {
            let close = open + close_rel;
            return NameAddr {
                addr: value[..=close].trim(),
                uri: value[open + 1..close].trim(),
                params: &value[close + 1..],
            };
        }
        // addr-spec form: URI parameters cannot be told from header parameters, so
        // (RFC 3261 §20) everything after the first ';' is a header parameter.
        match value.find(';') {
            Some(i) => NameAddr {
                addr: value[..i].trim(),
                uri: value[..i].trim(),
                params: &value[i..],
            },
            None => NameAddr {
                addr: value,
                uri: value,
                params: "",
            },
        }
    }

    pub(crate) fn param(&self, name: &str) -> Option<&'a str> {
        param(self.params, name)
    }

    pub(crate) fn tag(&self) -> Option<&'a str> {
        self.param("tag").filter(|t| !t.is_empty())
    }
}

/// Finds a byte outside double quotes.
fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Reads `;name=value` (or a bare `;name`, giving "") from a parameter list.
pub(crate) fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (p.trim(), ""),
        };
        k.eq_ignore_ascii_case(name).then_some(v.trim_matches('"'))
    })
}

/// The user and host parts of a `sip:`/`sips:` URI (host lower-cased by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UriParts<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
}

pub(crate) fn uri_parts(uri: &str) -> Option<UriParts<'_>> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("SIP:"))
        .or_else(|| uri.strip_prefix("SIPS:"))?;
    let rest = rest.split([';', '?']).next().unwrap_or(rest);
    let (user, hostport) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let user = user.map(|u| u.split(':').next().unwrap_or(u));
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return None;
    }
    Some(UriParts { user, host, port })
}

/// Splits `host[:port]`, `[v6]:port`.
pub(crate) fn split_host_port(hp: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p.parse().ok()?))),
        _ => Some((hp, None)),
    }
}

impl Msg {
    /// Parses raw bytes (normaliser + rsip) and flattens the headers.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Msg, sip::Error> {
        let parsed = sip::parse(bytes)?;
        let mut msg = Msg::from_rsip(parsed);
        // rsip keeps only the status code's canonical name; the phrase on the
        // wire is what gets relayed.
        if let StartLine::Response { reason, .. } = &mut msg.start
            && let Some(phrase) = wire_reason(bytes)
        {
            *reason = phrase;
        }
        Ok(msg)
    }

    fn from_rsip(m: SipMessage) -> Msg {
        let (start, headers, body) = match m {
            SipMessage::Request(r) => (
                StartLine::Request {
                    method: r.method.to_string(),
                    uri: r.uri.to_string(),
                },
                r.headers,
                r.body,
            ),
            SipMessage::Response(r) => (
                StartLine::Response {
                    status: r.status_code.code(),
                    reason: r.status_code.to_string(),
                },
                r.headers,
                r.body,
            ),
        };
        let headers = headers
            .into_iter()
            .filter_map(|h| {
                let line = h.to_string();
                let (name, value) = line.split_once(':')?;
                Some((name.trim().to_string(), value.trim().to_string()))
            })
            .collect();
        Msg {
            start,
            headers,
            body,
        }
    }

    pub(crate) fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    pub(crate) fn reason(&self) -> &str {
        match &self.start {
            StartLine::Response { reason, .. } => reason_phrase(reason),
            StartLine::Request { .. } => "",
        }
    }

    pub(crate) fn request_uri(&self) -> &str {
        match &self.start {
            StartLine::Request { uri, .. } => uri,
            StartLine::Response { .. } => "",
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or("")
    }

    pub(crate) fn cseq(&self) -> Result<(u32, &str), Invalid> {
        let v = self.header("CSeq").ok_or(Invalid("missing CSeq"))?;
        let mut it = v.split_whitespace();
        let n = it
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or(Invalid("bad CSeq"))?;
        let m = it.next().ok_or(Invalid("bad CSeq"))?;
        Ok((n, m))
    }

    pub(crate) fn top_via(&self) -> Result<Via<'_>, Invalid> {
        let v = self.header("Via").ok_or(Invalid("missing Via"))?;
        parse_via(v).ok_or(Invalid("bad Via"))
    }

    pub(crate) fn from(&self) -> Result<NameAddr<'_>, Invalid> {
        self.header("From")
            .map(NameAddr::parse)
            .ok_or(Invalid("missing From"))
    }

    pub(crate) fn to(&self) -> Result<NameAddr<'_>, Invalid> {
        self.header("To")
            .map(NameAddr::parse)
            .ok_or(Invalid("missing To"))
    }

    /// The body with its Content-Type, when the message carries one.
    pub(crate) fn content(&self) -> Option<(&str, &[u8])> {
        self.header("Content-Type").map(|ct| (ct, &self.body[..]))
    }

    pub(crate) fn expires(&self) -> Option<u32> {
        self.header("Expires").and_then(|v| v.trim().parse().ok())
    }

    pub(crate) fn max_forwards(&self) -> Option<u32> {
        self.header("Max-Forwards")
            .and_then(|v| v.trim().parse().ok())
    }
}

/// The reason phrase of a status line as sent (`SIP/2.0 486 Busy Here`).
fn wire_reason(bytes: &[u8]) -> Option<String> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = std::str::from_utf8(&bytes[..end]).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    let (_version, _code) = (parts.next()?, parts.next()?);
    let phrase = parts.next().unwrap_or("").trim();
    Some(phrase.chars().filter(|c| !c.is_control()).collect())
}

/// rsip renders a status as "180 Ringing"; keep the phrase only.
fn reason_phrase(s: &str) -> &str {
    match s.split_once(' ') {
        Some((code, rest)) if code.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => s,
    }
}

pub(crate) fn parse_via(v: &str) -> Option<Via<'_>> {
    let (proto, rest) = v.trim().split_once(char::is_whitespace)?;
    let transport = proto.rsplit('/').next()?;
    let rest = rest.trim_start();
    let (sent_by, params) = match rest.find(';') {
        Some(i) => (rest[..i].trim(), &rest[i..]),
        None => (rest.trim(), ""),
    };
    Some(Via {
        transport,
        sent_by,
        branch: param(params, "branch"),
        rport: param(params, "rport").is_some(),
    })
}

/// Writes a message line by line.
pub(crate) struct Writer {
    buf: String,
}

impl Writer {
    pub(crate) fn request(method: &str, uri: &str) -> Writer {
        let mut buf = String::with_capacity(640);
        let _ = write!(buf, "{method} {uri} SIP/2.0\r\n");
        Writer { buf }
    }

    pub(crate) fn response(status: u16, reason: &str) -> Writer {
        let mut buf = String::with_capacity(640);
        let _ = write!(buf, "SIP/2.0 {status} {reason}\r\n");
        Writer { buf }
    }

    pub(crate) fn header(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.buf, "{name}: {value}\r\n");
        self
    }

    /// Ends the header section (Content-Type when there is a body, Content-Length
    /// always) and appends the body.
    pub(crate) fn finish(mut self, content: Option<(&str, &[u8])>) -> bytes::Bytes {
        let body = content.map_or(&b""[..], |(_, b)| b);
        if let Some((ct, b)) = content
            && !b.is_empty()
        {
            let _ = write!(self.buf, "Content-Type: {ct}\r\n");
        }
        let _ = write!(self.buf, "Content-Length: {}\r\n\r\n", body.len());
        let mut out = self.buf.into_bytes();
        out.extend_from_slice(body);
        bytes::Bytes::from(out)
    }
}

/// FNV-1a: a cheap, stable hash for spreading Call-IDs over shards and deriving
/// stateless tags (not a defence against chosen inputs; nothing depends on that).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The Via token for a transport.
pub(crate) fn via_transport(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "UDP",
        TransportKind::Tcp => "TCP",
        TransportKind::Tls => "TLS",
    }
}

/// `host:port` with IPv6 brackets.
pub(crate) fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The top Via as it goes back in a response: `received` and `rport` filled in
/// (RFC 3261 §18.2.1, RFC 3581 §4) from where the request came from.
pub(crate) fn via_for_response(top: &str, source: SocketAddr) -> String {
    let Some(via) = parse_via(top) else {
        return top.to_string();
    };
    let host = split_host_port(via.sent_by).map(|(h, _)| h).unwrap_or("");
    let ip = source.ip().to_string();
    let mut out = String::with_capacity(top.len() + 40);
    let mut has_received = false;
    for (i, part) in top.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        let key = part.split('=').next().unwrap_or("").trim();
        if i > 0 && key.eq_ignore_ascii_case("rport") {
            let _ = write!(out, "rport={}", source.port());
        } else if i > 0 && key.eq_ignore_ascii_case("received") {
            has_received = true;
            let _ = write!(out, "received={ip}");
        } else {
            out.push_str(part);
        }
    }
    if !has_received && (via.rport || host != ip) {
        let _ = write!(out, ";received={ip}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"Doe; J <x>\" <sip:1000@acme.example;transport=tcp>;tag=abc");
        assert_eq!(n.uri, "sip:1000@acme.example;transport=tcp");
        assert_eq!(n.tag(), Some("abc"));
        let n = NameAddr::parse("sip:1000@acme.example;tag=zz");
        assert_eq!(n.uri, "sip:1000@acme.example");
        assert_eq!(n.tag(), Some("zz"));
        let n = NameAddr::parse("<sip:1000@acme.example>");
        assert_eq!(n.tag(), None);
    }

    #[test]
    fn uri_parts_forms() {
        let p = uri_parts("sip:1000@Acme.Example:5070;transport=udp").unwrap();
        assert_eq!(p.user, Some("1000"));
        assert_eq!(p.host, "Acme.Example");
        assert_eq!(p.port, Some(5070));
        let p = uri_parts("sip:[::1]:5060").unwrap();
        assert_eq!((p.user, p.host, p.port), (None, "::1", Some(5060)));
        let p = uri_parts("sips:alice:secret@example.com").unwrap();
        assert_eq!(p.user, Some("alice"));
        assert!(uri_parts("tel:+123").is_none());
        assert!(uri_parts("sip:@").is_none());
    }

    #[test]
    fn via_fields_and_response_rewrite() {
        let v = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by, "10.0.0.1:5060");
        assert_eq!(v.branch, Some("z9hG4bK1"));
        assert!(v.rport);
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let out = via_for_response("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport", src);
        assert_eq!(
            out,
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=40000;received=192.0.2.7"
        );
        let same: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let out = via_for_response("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", same);
        assert_eq!(out, "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1");
    }

    #[test]
    fn writer_sets_length() {
        let mut w = Writer::response(200, "OK");
        w.header("Call-ID", "x");
        let b = w.finish(Some(("application/sdp", b"v=0\r\n")));
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.starts_with("SIP/2.0 200 OK\r\nCall-ID: x\r\n"));
        assert!(s.contains("Content-Length: 5\r\n\r\nv=0\r\n"));
    }
}
