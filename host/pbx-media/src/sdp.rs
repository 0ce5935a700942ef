//! A small, strict SDP parser and writer (RFC 8866, formerly RFC 4566) for what a
//! PBX anchoring media needs.
//!
//! The model keeps every line: the session section and each media section are
//! lists of `x=value` lines, and the parts we act on (connection addresses, media
//! ports and transports, `a=rtcp`, `a=crypto`, direction attributes) are read and
//! rewritten through typed helpers. Lines we do not understand are written back
//! verbatim. Input may use CRLF or bare LF; output always uses CRLF.

use std::net::IpAddr;

use crate::error::{Result, sdp_err};

/// Largest SDP body accepted.
pub const MAX_SDP_LEN: usize = 64 * 1024;

/// One `x=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The type letter (`v`, `o`, `c`, `a`, ...).
    pub kind: char,
    /// Everything after `=`.
    pub value: String,
}

impl Line {
    fn new(kind: char, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }

    /// For an `a=` line, its name and optional value (`a=rtcp:9` -> `("rtcp", Some("9"))`).
    pub fn attr(&self) -> Option<(&str, Option<&str>)> {
        if self.kind != 'a' {
            return None;
        }
        Some(match self.value.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (self.value.as_str(), None),
        })
    }
}

/// One media section: the `m=` line's fields and the lines that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Media type (`audio`, `video`, ...).
    pub kind: String,
    /// Transport port; 0 means the stream is disabled or rejected.
    pub port: u16,
    /// The optional `/<number of ports>` suffix.
    pub port_count: Option<u16>,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, ...).
    pub proto: String,
    /// Media formats (payload types for RTP).
    pub formats: Vec<String>,
    /// The lines after `m=` up to the next `m=`.
    pub lines: Vec<Line>,
}

/// Media direction attribute (RFC 8866 §6.7); `sendrecv` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`
    SendRecv,
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

/// A parsed `a=rtcp` attribute (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp {
    /// RTCP port.
    pub port: u16,
    /// RTCP address, when given.
    pub addr: Option<IpAddr>,
}

/// A structurally parsed `a=crypto` attribute (RFC 4568 §9.1). The key itself is
/// interpreted by [`crate::sdes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttr {
    /// The tag (1..=999999999).
    pub tag: u32,
    /// The crypto-suite name as written.
    pub suite: String,
    /// The key parameters (`inline:...`, possibly several separated by `;`).
    pub key_params: String,
    /// Session parameters, if any.
    pub session_params: Vec<String>,
}

impl CryptoAttr {
    /// Parses the value of an `a=crypto:` attribute.
    pub fn parse(value: &str) -> Result<Self> {
        let mut parts = value.split(' ').filter(|p| !p.is_empty());
        let tag = parts.next().ok_or(crate::Error::Crypto("missing tag"))?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(crate::Error::Crypto("bad tag"));
        }
        let tag: u32 = tag.parse().map_err(|_| crate::Error::Crypto("bad tag"))?;
        let suite = parts.next().ok_or(crate::Error::Crypto("missing suite"))?;
        if !suite
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(crate::Error::Crypto("bad suite name"));
        }
        let key_params = parts.next().ok_or(crate::Error::Crypto("missing key"))?;
        if !key_params.starts_with("inline:") {
            return Err(crate::Error::Crypto("key method is not inline"));
        }
        Ok(Self {
            tag,
            suite: suite.to_owned(),
            key_params: key_params.to_owned(),
            session_params: parts.map(str::to_owned).collect(),
        })
    }

    /// The attribute value, as written after `a=crypto:`.
    pub fn to_value(&self) -> String {
        let mut out = format!("{} {} {}", self.tag, self.suite, self.key_params);
        for p in &self.session_params {
            out.push(' ');
            out.push_str(p);
        }
        out
    }
}

impl Media {
    /// The media-level connection address, if there is a `c=` line.
    pub fn connection(&self) -> Option<IpAddr> {
        self.lines
            .iter()
            .find(|l| l.kind == 'c')
            .and_then(|l| parse_connection(&l.value).ok())
    }

    /// Rewrites the media-level `c=` line, adding one when `add` is set and there is none.
    pub fn set_connection(&mut self, addr: IpAddr, add: bool) {
        let value = connection_value(addr);
        if let Some(l) = self.lines.iter_mut().find(|l| l.kind == 'c') {
            l.value = value;
        } else if add {
            // c= comes after i= and before b=, k= and a=.
            let at = self
                .lines
                .iter()
                .position(|l| l.kind != 'i')
                .unwrap_or(self.lines.len());
            self.lines.insert(at, Line::new('c', value));
        }
    }

    /// The value of the first attribute called `name` (`Some(None)` for a flag).
    pub fn attr(&self, name: &str) -> Option<Option<&str>> {
        self.lines
            .iter()
            .filter_map(Line::attr)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Removes every attribute whose name is in `names`.
    pub fn remove_attrs(&mut self, names: &[&str]) {
        self.lines
            .retain(|l| !l.attr().is_some_and(|(n, _)| names.contains(&n)));
    }

    /// The parsed `a=rtcp` attribute, if present.
    pub fn rtcp(&self) -> Option<Rtcp> {
        self.attr("rtcp").flatten().and_then(|v| parse_rtcp(v).ok())
    }

    /// The direction attribute (`sendrecv` when none is present).
    pub fn direction(&self) -> Direction {
        for l in &self.lines {
            match l.attr() {
                Some(("sendonly", None)) => return Direction::SendOnly,
                Some(("recvonly", None)) => return Direction::RecvOnly,
                Some(("inactive", None)) => return Direction::Inactive,
                Some(("sendrecv", None)) => return Direction::SendRecv,
                _ => {}
            }
        }
        Direction::SendRecv
    }

    /// All `a=crypto` attributes in order.
    pub fn cryptos(&self) -> Vec<CryptoAttr> {
        self.lines
            .iter()
            .filter_map(Line::attr)
            .filter(|(n, _)| *n == "crypto")
            .filter_map(|(_, v)| v.and_then(|v| CryptoAttr::parse(v).ok()))
            .collect()
    }

    /// Replaces all `a=crypto` attributes with `cryptos` (appended after the
    /// other lines, where attributes belong).
    pub fn set_cryptos(&mut self, cryptos: &[CryptoAttr]) {
        self.remove_attrs(&["crypto"]);
        for c in cryptos {
            self.lines
                .push(Line::new('a', format!("crypto:{}", c.to_value())));
        }
    }

    /// Whether the transport is a secure RTP profile (`RTP/SAVP`, `RTP/SAVPF`).
    pub fn is_savp(&self) -> bool {
        matches!(self.proto.as_str(), "RTP/SAVP" | "RTP/SAVPF")
    }

    /// Whether the transport is plain or SDES-secured RTP, the profiles the relay handles.
    pub fn is_rtp(&self) -> bool {
        matches!(
            self.proto.as_str(),
            "RTP/AVP" | "RTP/AVPF" | "RTP/SAVP" | "RTP/SAVPF"
        )
    }

    fn m_value(&self) -> String {
        let mut out = format!("{} {}", self.kind, self.port);
        if let Some(n) = self.port_count {
            out.push_str(&format!("/{n}"));
        }
        out.push(' ');
        out.push_str(&self.proto);
        for f in &self.formats {
            out.push(' ');
            out.push_str(f);
        }
        out
    }
}

/// A parsed SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// Session-level lines, starting with `v=0`.
    pub session: Vec<Line>,
    /// Media sections in order.
    pub media: Vec<Media>,
}

impl Sdp {
    /// Parses and validates an SDP body.
    pub fn parse(body: &[u8]) -> Result<Self> {
        if body.is_empty() {
            return Err(sdp_err(0, "empty body"));
        }
        if body.len() > MAX_SDP_LEN {
            return Err(sdp_err(0, "body too large"));
        }
        let text = std::str::from_utf8(body).map_err(|_| sdp_err(0, "not UTF-8"))?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut session = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let n = i + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let bytes = raw.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(sdp_err(n, "not a type=value line"));
            }
            if raw.contains('\r') || raw.bytes().any(|b| b == 0) {
                return Err(sdp_err(n, "stray CR or NUL"));
            }
            let kind = char::from(bytes[0]);
            let value = &raw[2..];
            if n == 1 {
                if kind != 'v' || value != "0" {
                    return Err(sdp_err(n, "first line must be v=0"));
                }
            } else if kind == 'v' {
                return Err(sdp_err(n, "repeated v="));
            }
            match kind {
                'c' => {
                    parse_connection(value).map_err(|r| sdp_err(n, r))?;
                }
                'a' => validate_attr(value).map_err(|r| sdp_err(n, r))?,
                _ => {}
            }
            if kind == 'm' {
                media.push(parse_m(value).map_err(|r| sdp_err(n, r))?);
            } else if let Some(m) = media.last_mut() {
                m.lines.push(Line::new(kind, value));
            } else {
                session.push(Line::new(kind, value));
            }
        }
        if !session.iter().any(|l| l.kind == 'o') {
            return Err(sdp_err(0, "missing o="));
        }
        if !session.iter().any(|l| l.kind == 's') {
            return Err(sdp_err(0, "missing s="));
        }
        let has_session_c = session.iter().any(|l| l.kind == 'c');
        for m in &media {
            if m.port != 0 && !has_session_c && !m.lines.iter().any(|l| l.kind == 'c') {
                return Err(sdp_err(0, "media without connection address"));
            }
        }
        Ok(Self { session, media })
    }

    /// Writes the body with CRLF line endings.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512);
        let mut push = |kind: char, value: &str| {
            out.push(kind);
            out.push('=');
            out.push_str(value);
            out.push_str("\r\n");
        };
        for l in &self.session {
            push(l.kind, &l.value);
        }
        for m in &self.media {
            push('m', &m.m_value());
            for l in &m.lines {
                push(l.kind, &l.value);
            }
        }
        out.into_bytes()
    }

    /// The session-level connection address, if any.
    pub fn connection(&self) -> Option<IpAddr> {
        self.session
            .iter()
            .find(|l| l.kind == 'c')
            .and_then(|l| parse_connection(&l.value).ok())
    }

    /// Rewrites the session-level `c=` line, adding one (before `t=`) if missing.
    pub fn set_connection(&mut self, addr: IpAddr) {
        let value = connection_value(addr);
        if let Some(l) = self.session.iter_mut().find(|l| l.kind == 'c') {
            l.value = value;
            return;
        }
        let at = self
            .session
            .iter()
            .position(|l| matches!(l.kind, 'b' | 't' | 'r' | 'z' | 'k' | 'a'))
            .unwrap_or(self.session.len());
        self.session.insert(at, Line::new('c', value));
    }

    /// The effective connection address of media section `index` (its own `c=`,
    /// else the session's).
    pub fn media_connection(&self, index: usize) -> Option<IpAddr> {
        self.media
            .get(index)
            .and_then(Media::connection)
            .or_else(|| self.connection())
    }
}

fn connection_value(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("IN IP4 {a}"),
        IpAddr::V6(a) => format!("IN IP6 {a}"),
    }
}

fn parse_connection(value: &str) -> Result<IpAddr, &'static str> {
    let mut parts = value.split(' ');
    let (Some("IN"), Some(kind), Some(addr), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("c= must be `IN <IP4|IP6> <address>`");
    };
    // Multicast forms carry `/ttl` or `/count`; the address comes first.
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| "c= address is not an IP address")?;
    match (kind, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err("c= address type does not match the address"),
    }
}

fn parse_port(s: &str) -> Result<u16, &'static str> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad port");
    }
    s.parse().map_err(|_| "bad port")
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'(' | b')' | b','))
}

fn parse_m(value: &str) -> Result<Media, &'static str> {
    let mut parts = value.split(' ');
    let kind = parts
        .next()
        .filter(|s| is_token(s))
        .ok_or("bad media type")?;
    let port_field = parts.next().ok_or("missing port")?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, n)) => (parse_port(p)?, Some(parse_port(n)?)),
        None => (parse_port(port_field)?, None),
    };
    let proto = parts.next().filter(|s| is_token(s)).ok_or("bad proto")?;
    let formats: Vec<String> = parts.map(str::to_owned).collect();
    if formats.is_empty() || formats.iter().any(|f| !is_token(f)) {
        return Err("m= needs at least one well-formed format");
    }
    Ok(Media {
        kind: kind.to_owned(),
        port,
        port_count,
        proto: proto.to_owned(),
        formats,
        lines: Vec::new(),
    })
}

fn parse_rtcp(value: &str) -> Result<Rtcp, &'static str> {
    let mut parts = value.split(' ');
    let port = parse_port(parts.next().unwrap_or(""))?;
    let rest: Vec<&str> = parts.collect();
    let addr = match rest.as_slice() {
        [] => None,
        [net, kind, addr] => Some(parse_connection(&format!("{net} {kind} {addr}"))?),
        _ => return Err("a=rtcp must be `<port> [IN <IP4|IP6> <address>]`"),
    };
    Ok(Rtcp { port, addr })
}

fn validate_attr(value: &str) -> Result<(), &'static str> {
    let (name, v) = match value.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (value, None),
    };
    if !is_token(name) {
        return Err("bad attribute name");
    }
    match (name, v) {
        ("rtcp", Some(v)) => parse_rtcp(v).map(|_| ()),
        ("rtcp", None) => Err("a=rtcp needs a port"),
        ("crypto", Some(v)) => CryptoAttr::parse(v).map(|_| ()).map_err(|e| match e {
            crate::Error::Crypto(r) => r,
            _ => "bad a=crypto",
        }),
        ("crypto", None) => Err("a=crypto needs a value"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/SAVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20\r\n\
a=rtcp:49171\r\n\
a=sendrecv\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n";

    #[test]
    fn round_trip_is_byte_exact() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(sdp.to_bytes(), OFFER.as_bytes());
        assert_eq!(sdp.media.len(), 2);
        let m = &sdp.media[0];
        assert_eq!(
            (m.kind.as_str(), m.port, m.proto.as_str()),
            ("audio", 49170, "RTP/SAVP")
        );
        assert_eq!(m.formats, ["0", "8", "101"]);
        assert!(m.is_savp());
        assert_eq!(m.direction(), Direction::SendRecv);
        assert_eq!(
            m.rtcp(),
            Some(Rtcp {
                port: 49171,
                addr: None
            })
        );
        assert_eq!(sdp.media_connection(0), Some("192.0.2.10".parse().unwrap()));
        let c = m.cryptos();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].tag, c[0].suite.as_str()),
            (1, "AES_CM_128_HMAC_SHA1_80")
        );
        assert_eq!(sdp.media[1].port, 0);
    }

    #[test]
    fn bare_lf_input_is_written_as_crlf() {
        let lf = OFFER.replace("\r\n", "\n");
        let sdp = Sdp::parse(lf.as_bytes()).unwrap();
        assert_eq!(sdp.to_bytes(), OFFER.as_bytes());
    }

    #[test]
    fn rewrite_address_port_and_crypto() {
        let mut sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        sdp.set_connection("2001:db8::1".parse().unwrap());
        let m = &mut sdp.media[0];
        m.port = 30000;
        m.remove_attrs(&["rtcp"]);
        m.set_cryptos(&[CryptoAttr {
            tag: 7,
            suite: "AES_CM_128_HMAC_SHA1_32".into(),
            key_params: "inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZn".into(),
            session_params: vec![],
        }]);
        m.direction();
        let out = sdp.to_bytes();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("c=IN IP6 2001:db8::1\r\n"));
        assert!(text.contains("m=audio 30000 RTP/SAVP 0 8 101\r\n"));
        assert!(!text.contains("a=rtcp:"));
        assert!(text.contains(
            "a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZn\r\n"
        ));
        assert!(!text.contains("PS1uQCVe"));
        // The rewritten body parses again to the same model.
        let again = Sdp::parse(&out).unwrap();
        assert_eq!(again, sdp);
    }

    #[test]
    fn connection_is_inserted_when_missing() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.1\r\n";
        let mut sdp = Sdp::parse(body.as_bytes()).unwrap();
        assert_eq!(sdp.connection(), None);
        sdp.set_connection("203.0.113.5".parse().unwrap());
        sdp.media[0].set_connection("203.0.113.5".parse().unwrap(), false);
        let text = String::from_utf8(sdp.to_bytes()).unwrap();
        assert!(text.starts_with(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
        ));
        assert!(text.ends_with("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 203.0.113.5\r\n"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let bad: &[&[u8]] = &[
            b"",
            b"\xff\xfe",
            b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n",
            b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\ns=-\r\n",
            b"v=0\r\ns=-\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n\r\nt=0 0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nX=y\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 example.com\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP6 1.2.3.4\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=crypto:x AES inline:AAAA\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=crypto:1 AES uri:x\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\na=x\rb\r\n",
        ];
        for (i, body) in bad.iter().enumerate() {
            assert!(Sdp::parse(body).is_err(), "case {i} should fail");
        }
        assert!(Sdp::parse(&vec![b'a'; MAX_SDP_LEN + 1]).is_err());
    }

    #[test]
    fn rtcp_with_address_and_directions() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:5001 IN IP4 10.0.0.9\r\na=sendonly\r\n";
        let sdp = Sdp::parse(body.as_bytes()).unwrap();
        assert_eq!(
            sdp.media[0].rtcp(),
            Some(Rtcp {
                port: 5001,
                addr: Some("10.0.0.9".parse().unwrap())
            })
        );
        assert_eq!(sdp.media[0].direction(), Direction::SendOnly);
        assert!(!sdp.media[0].is_savp());
        assert!(sdp.media[0].is_rtp());
    }
}
