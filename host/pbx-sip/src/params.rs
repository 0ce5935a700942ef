//! Header and URI parameters (`;name[=value]`), the header values built from
//! them (name-addr, Via), read by their grammar (RFC 3261 §20, §25.1).
//!
//! Values reaching these readers have passed [`crate::parse`], so the readers
//! never fail on structure; they only answer "absent" when a part is missing.

use std::net::SocketAddr;

/// Finds a byte outside double quotes (backslash escapes inside quotes kept).
fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
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

/// Splits `;a=1;b="x;y";c` into its parameters, honouring quotes.
fn split(params: &str) -> impl Iterator<Item = &str> {
    let mut rest = params;
    std::iter::from_fn(move || {
        loop {
            let start = find_unquoted(rest, b';')?;
            let after = &rest[start + 1..];
            let end = find_unquoted(after, b';').unwrap_or(after.len());
            rest = &after[end..];
            let item = after[..end].trim();
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

/// The value of parameter `name` (case-insensitive) in a `;name=value` list:
/// `Some("")` for a bare `;name`, quotes removed from a quoted value.
pub fn find<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    split(params).find_map(|p| {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (p, ""),
        };
        k.eq_ignore_ascii_case(name).then(|| unquote(v))
    })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// A From, To or Contact value: `"Name" <uri>;params` or `uri;params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The value without its header parameters (display name and brackets kept).
    pub addr: &'a str,
    /// The URI inside the brackets (or the whole addr-spec).
    pub uri: &'a str,
    /// The header parameters, each with its leading `;` (or "").
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Splits a value. In the addr-spec form (no `<...>`) URI parameters
    /// cannot be told from header parameters, so (RFC 3261 §20) everything
    /// after the first `;` is a header parameter.
    pub fn parse(value: &'a str) -> NameAddr<'a> {
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
        let end = value.find(';').unwrap_or(value.len());
        NameAddr {
            addr: value[..end].trim(),
            uri: value[..end].trim(),
            params: &value[end..],
        }
    }

    /// The URI, read by its grammar ([`crate::SipUri`]); `None` for other schemes.
    pub fn sip_uri(&self) -> Option<crate::SipUri<'a>> {
        crate::SipUri::parse(self.uri)
    }

    /// Header parameter `name` (see [`find`]).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        find(self.params, name)
    }

    /// The `tag` parameter, when present and not empty.
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").filter(|t| !t.is_empty())
    }

    /// The Contact `expires` parameter as a number.
    pub fn expires(&self) -> Option<u32> {
        self.param("expires").and_then(|e| e.parse().ok())
    }

    /// The Contact `+sip.instance` parameter (RFC 5626), quotes removed.
    pub fn instance(&self) -> Option<&'a str> {
        self.param("+sip.instance")
    }
}

/// The fields of one Via value (`SIP/2.0/UDP host:port;branch=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The transport token (`UDP`, `TCP`, `TLS`, ...).
    pub transport: &'a str,
    /// `host[:port]` as written.
    pub sent_by: &'a str,
    /// The parameters, each with its leading `;` (or "").
    pub params: &'a str,
}

impl<'a> Via<'a> {
    /// Reads one Via value; `None` when it lacks protocol or sent-by.
    pub fn parse(value: &'a str) -> Option<Via<'a>> {
        let (proto, rest) = value.trim().split_once(char::is_whitespace)?;
        let transport = proto.rsplit('/').next()?;
        let rest = rest.trim_start();
        let end = rest.find(';').unwrap_or(rest.len());
        let sent_by = rest[..end].trim();
        if sent_by.is_empty() {
            return None;
        }
        Some(Via {
            transport,
            sent_by,
            params: &rest[end..],
        })
    }

    /// The sent-by host (IPv6 without brackets) and port.
    pub fn host_port(&self) -> Option<(&'a str, Option<u16>)> {
        crate::uri::host_port(self.sent_by)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        find(self.params, "branch")
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a str> {
        find(self.params, "received")
    }

    /// Whether `rport` is present (with or without a value).
    pub fn rport(&self) -> bool {
        find(self.params, "rport").is_some()
    }

    /// The `rport` value, when one is filled in.
    pub fn rport_value(&self) -> Option<u16> {
        find(self.params, "rport").and_then(|p| p.parse().ok())
    }

    /// A request's top Via `value` as it goes back in the response (RFC 3261
    /// §18.2.1, RFC 3581 §4): `rport` filled in with the source port,
    /// `received` set to the source address when it was present, when `rport`
    /// was asked for, or when sent-by names another address; everything else
    /// as sent. `None` when `value` is not a Via.
    pub fn for_response(value: &str, source: SocketAddr) -> Option<String> {
        use std::fmt::Write as _;
        let via = Via::parse(value)?;
        let host = via.host_port().map_or("", |(h, _)| h);
        let ip = source.ip().to_string();
        let (head, mut rest) = match value.find(';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        };
        let mut out = String::with_capacity(value.len() + 40);
        out.push_str(head);
        let mut has_received = false;
        while let Some(after) = rest.strip_prefix(';') {
            let end = find_unquoted(after, b';').unwrap_or(after.len());
            let (part, tail) = after.split_at(end);
            rest = tail;
            out.push(';');
            let key = part.split('=').next().unwrap_or("").trim();
            if key.eq_ignore_ascii_case("rport") {
                let _ = write!(out, "rport={}", source.port());
            } else if key.eq_ignore_ascii_case("received") {
                has_received = true;
                let _ = write!(out, "received={ip}");
            } else {
                out.push_str(part);
            }
        }
        if !has_received && (via.rport() || host != ip) {
            let _ = write!(out, ";received={ip}");
        }
        Some(out)
    }
}

/// A CSeq value (`314159 INVITE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method, spelled as RFC 3261 requires (methods are case-sensitive).
    pub method: rsip::Method,
}

impl CSeq {
    /// Reads a CSeq value; `None` unless it is a number and a known method
    /// written in capitals.
    pub fn parse(value: &str) -> Option<CSeq> {
        let mut parts = value.split_ascii_whitespace();
        let (seq, name) = (parts.next()?, parts.next()?);
        if parts.next().is_some() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let method: rsip::Method = name.parse().ok()?;
        // rsip reads methods case-insensitively; its Display is the RFC spelling.
        (method.to_string() == name).then_some(CSeq {
            seq: seq.parse().ok()?,
            method,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"Doe; J <x>\" <sip:1000@acme.example;transport=tcp>;tag=abc");
        assert_eq!(n.uri, "sip:1000@acme.example;transport=tcp");
        assert_eq!(
            n.addr,
            "\"Doe; J <x>\" <sip:1000@acme.example;transport=tcp>"
        );
        assert_eq!(n.tag(), Some("abc"));
        let n = NameAddr::parse("sip:1000@acme.example;tag=zz");
        assert_eq!(n.uri, "sip:1000@acme.example");
        assert_eq!(n.tag(), Some("zz"));
        let n = NameAddr::parse("<sip:1000@acme.example>");
        assert_eq!(n.tag(), None);
        let n = NameAddr::parse("<sip:1000@acme.example> ; TAG = x");
        assert_eq!(n.tag(), Some("x"));
    }

    #[test]
    fn contact_params_with_quotes() {
        let n = NameAddr::parse(
            "<sip:1000@10.0.0.5:5062;ob>;+sip.instance=\"<urn:uuid:a;b>\";expires=300;reg-id=1",
        );
        assert_eq!(n.instance(), Some("<urn:uuid:a;b>"));
        assert_eq!(n.expires(), Some(300));
        assert_eq!(n.param("reg-id"), Some("1"));
        assert_eq!(
            n.sip_uri().map(|u| (u.host, u.port)),
            Some(("10.0.0.5", Some(5062)))
        );
        assert_eq!(NameAddr::parse("<sip:a@b>;expires=soon").expires(), None);
    }

    #[test]
    fn cseq_values() {
        assert_eq!(
            CSeq::parse(" 314159  INVITE "),
            Some(CSeq {
                seq: 314_159,
                method: rsip::Method::Invite
            })
        );
        assert_eq!(
            CSeq::parse("2 PRACK").map(|c| c.method),
            Some(rsip::Method::PRack)
        );
        for bad in [
            "1 invite",
            "x INVITE",
            "1",
            "1 FOO",
            "1 INVITE x",
            "-1 BYE",
            "99999999999 BYE",
        ] {
            assert_eq!(CSeq::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn via_fields() {
        let v =
            Via::parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport;received=1.2.3.4").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by, "10.0.0.1:5060");
        assert_eq!(v.host_port(), Some(("10.0.0.1", Some(5060))));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        assert_eq!(v.received(), Some("1.2.3.4"));
        assert!(v.rport());
        assert_eq!(v.rport_value(), None);
        let v = Via::parse("SIP/2.0/TCP [2001:db8::1]:5070 ; branch=x;rport=4000").unwrap();
        assert_eq!(v.host_port(), Some(("2001:db8::1", Some(5070))));
        assert_eq!(v.rport_value(), Some(4000));
        assert_eq!(v.branch(), Some("x"));
        assert!(Via::parse("SIP/2.0/UDP").is_none());
    }

    #[test]
    fn via_for_response() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let out = Via::for_response("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport", src);
        assert_eq!(
            out.as_deref(),
            Some("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=40000;received=192.0.2.7")
        );
        let same: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let out = Via::for_response("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", same);
        assert_eq!(
            out.as_deref(),
            Some("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1")
        );
        // A stale received is replaced; a quoted ';' stays inside its parameter.
        let out = Via::for_response(
            "SIP/2.0/TCP [2001:db8::1]:5070;received=1.1.1.1;x=\"a;rport\";branch=b",
            "[2001:db8::1]:5070".parse().unwrap(),
        );
        assert_eq!(
            out.as_deref(),
            Some("SIP/2.0/TCP [2001:db8::1]:5070;received=2001:db8::1;x=\"a;rport\";branch=b")
        );
        assert_eq!(Via::for_response("garbage", src), None);
    }
}
