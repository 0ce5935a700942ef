//! A parsed SIP message in the shape the core reads it, and a writer for the messages
//! the core sends.
//!
//! Parsing is `pbx_sip::parse` (our normaliser in front of `rsip`); this module moves
//! the parsed headers into a flat list of `(name, value)` pairs, one value per header
//! line, and offers the few structured reads the registrar and B2BUA need (top Via,
//! From/To, CSeq, Contact list). Values are read with `pbx_sip`'s typed
//! accessors ([`SipUri`], [`NameAddr`], [`Via`]); nothing here parses a URI or a
//! parameter list by hand.

use std::fmt::Write as _;
use std::net::SocketAddr;

pub(crate) use rsip::Method;
use rsip::SipMessage;

use crate::TransportKind;

/// Why an inbound message is refused after it parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) &'static str);

/// Request line or status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request { method: Method, uri: String },
    Response { status: u16, reason: String },
}

/// A parsed message with headers flattened to canonical names.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) start: StartLine,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

pub(crate) use sip::{NameAddr, SipUri, Via};

impl Msg {
    /// Parses raw bytes (normaliser + rsip) and flattens the headers.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Msg, sip::Error> {
        let parsed = sip::parse(bytes)?;
        let mut msg = Msg::from_rsip(parsed);
        // rsip keeps only the status code's canonical name; the phrase on the
        // wire is what gets relayed.
        match &mut msg.start {
            StartLine::Response { reason, .. } => {
                if let Some(phrase) = wire_reason(bytes) {
                    *reason = phrase;
                }
            }
            // rsip re-renders the Request-URI from its own (weaker) reading of
            // it; the text as sent is what `SipUri` reads.
            StartLine::Request { uri, .. } => {
                if let Some(sent) = wire_request_uri(bytes) {
                    *uri = sent;
                }
            }
        }
        Ok(msg)
    }

    fn from_rsip(m: SipMessage) -> Msg {
        let (start, headers, body) = match m {
            SipMessage::Request(r) => (
                StartLine::Request {
                    method: r.method,
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

    pub(crate) fn method(&self) -> Option<Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(*method),
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

    pub(crate) fn cseq(&self) -> Result<(u32, Method), Invalid> {
        let v = self.header("CSeq").ok_or(Invalid("missing CSeq"))?;
        let cseq = sip::CSeq::parse(v).ok_or(Invalid("bad CSeq"))?;
        Ok((cseq.seq, cseq.method))
    }

    pub(crate) fn top_via(&self) -> Result<Via<'_>, Invalid> {
        let v = self.header("Via").ok_or(Invalid("missing Via"))?;
        Via::parse(v).ok_or(Invalid("bad Via"))
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

/// The Request-URI of a request line as sent (`INVITE sip:a@b SIP/2.0`).
fn wire_request_uri(bytes: &[u8]) -> Option<String> {
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let rest = &bytes[start..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = std::str::from_utf8(&rest[..end]).ok()?.trim_end();
    let mut parts = line.split_ascii_whitespace();
    let (_method, uri, _version) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then(|| uri.to_owned())
}

/// rsip renders a status as "180 Ringing"; keep the phrase only.
fn reason_phrase(s: &str) -> &str {
    match s.split_once(' ') {
        Some((code, rest)) if code.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => s,
    }
}

/// Writes a message line by line.
pub(crate) struct Writer {
    buf: String,
}

impl Writer {
    pub(crate) fn request(method: Method, uri: &str) -> Writer {
        let mut buf = String::with_capacity(640);
        let _ = write!(buf, "{} {uri} SIP/2.0\r\n", method_name(method));
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
        // Exactly as long as the message: a transaction or call may keep these
        // bytes for 32 s to retransmit them, and a `Bytes` made from a `Vec`
        // with spare room keeps that room (and a block to share it) alive too.
        out.shrink_to_fit();
        bytes::Bytes::from(out)
    }
}

/// The name of a method on the wire (`PRACK`, not rsip's `PRack`).
pub(crate) fn method_name(method: Method) -> &'static str {
    match method {
        Method::Ack => "ACK",
        Method::Bye => "BYE",
        Method::Cancel => "CANCEL",
        Method::Info => "INFO",
        Method::Invite => "INVITE",
        Method::Message => "MESSAGE",
        Method::Notify => "NOTIFY",
        Method::Options => "OPTIONS",
        Method::PRack => "PRACK",
        Method::Publish => "PUBLISH",
        Method::Refer => "REFER",
        Method::Register => "REGISTER",
        Method::Subscribe => "SUBSCRIBE",
        Method::Update => "UPDATE",
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
        TransportKind::Wss => "WSS",
    }
}

/// `host:port` with IPv6 brackets.
pub(crate) fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The top Via as it goes back in a response ([`Via::for_response`]); a value
/// that is not a Via goes back as it came.
pub(crate) fn via_for_response(top: &str, source: SocketAddr) -> String {
    Via::for_response(top, source).unwrap_or_else(|| top.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_response_rewrite() {
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
