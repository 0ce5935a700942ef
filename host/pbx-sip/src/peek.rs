//! What a flood guard reads of a request before it is parsed: the method, the
//! User-Agent and the To header, borrowed from the raw bytes. A banned scanner
//! costs a header scan, not a parse (`benches/guard_read.rs` measures both).
//! The To value is read with the same grammar as everything else
//! ([`NameAddr`], [`crate::SipUri`]).

use std::net::IpAddr;

use crate::message::peek_header;
use crate::{NameAddr, Via, scan};

/// Most Via values looked at for [`relayed_from`].
const MAX_VIAS: usize = 2;

/// The address a proxy received a request from: the `received` address of
/// the Via below the top one (RFC 3261 §18.2.1), else that Via's sent-by
/// when it is an IP address. `None` for a request with a single Via (it came
/// straight from its client), for responses and for unreadable bytes. Only
/// meaningful when the top Via is a proxy the host trusts to fill in
/// `received` (the cluster's front): a client can write any Via of its own.
pub fn relayed_from(bytes: &[u8]) -> Option<IpAddr> {
    RequestPeek::of(bytes)?;
    let start = scan::leading_crlf(bytes);
    let mut lines = bytes
        .get(start..)?
        .split(|&b| b == b'\n')
        .map(scan::strip_cr);
    lines.next()?;
    let mut seen = 0;
    for line in lines {
        if line.is_empty() {
            return None;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if !scan::name_is(scan::trim(&line[..colon]), "Via", Some(b'v')) {
            continue;
        }
        let value = std::str::from_utf8(&line[colon + 1..]).ok()?;
        // One header may carry several Via values, comma-separated.
        for one in value.split(',') {
            seen += 1;
            if seen == MAX_VIAS {
                let via = Via::parse(one)?;
                if let Some(ip) = via.received().and_then(|r| r.trim().parse().ok()) {
                    return Some(ip);
                }
                let (host, _) = via.host_port()?;
                return host.parse().ok();
            }
        }
    }
    None
}

/// A request's method, User-Agent and To, read before any parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPeek<'a> {
    /// The method as written on the request line.
    pub method: &'a str,
    /// The User-Agent value, when present and text.
    pub user_agent: Option<&'a str>,
    /// The To header value, when present and text.
    pub to: Option<&'a str>,
}

impl<'a> RequestPeek<'a> {
    /// `None` for responses and for bytes that do not start like a request.
    pub fn of(bytes: &'a [u8]) -> Option<RequestPeek<'a>> {
        let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n')?;
        let line = bytes.get(start..)?;
        let method_len = line.iter().position(|&b| b == b' ')?;
        let method = std::str::from_utf8(line.get(..method_len)?).ok()?;
        if method.starts_with("SIP/") || method.is_empty() {
            return None;
        }
        let text = |v: &'a [u8]| std::str::from_utf8(v).ok();
        Some(RequestPeek {
            method,
            user_agent: peek_header(bytes, "User-Agent", None).and_then(text),
            to: peek_header(bytes, "To", Some(b't')).and_then(text),
        })
    }

    /// `user@host` of the To URI (`host` without a user part), else the To
    /// value as sent; `None` without a To.
    pub fn callee_target(&self) -> Option<String> {
        let to = self.to?.trim();
        let target = match NameAddr::parse(to).sip_uri() {
            Some(uri) => match uri.user {
                Some(user) => format!("{user}@{}", uri.host),
                None => uri.host.to_owned(),
            },
            None => to.to_owned(),
        };
        (!target.is_empty()).then_some(target)
    }

    /// Whether the To header carries a tag (the request is inside a dialog).
    pub fn has_to_tag(&self) -> bool {
        self.to
            .is_some_and(|to| NameAddr::parse(to).tag().is_some())
    }

    /// Whether the method is one that belongs to something already going on
    /// (ACK, CANCEL, BYE), whatever the To says.
    pub fn is_in_dialog_method(&self) -> bool {
        ["ACK", "CANCEL", "BYE"]
            .iter()
            .any(|m| self.method.eq_ignore_ascii_case(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_a_proxy_is_read_from_the_second_via() {
        let req = |vias: &str| {
            format!(
                "INVITE sip:1001@acme.example SIP/2.0\r\n{vias}To: <sip:1001@acme.example>\r\n\
                 Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let front = "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKfront\r\n";
        let relayed = |vias: &str| relayed_from(req(vias).as_bytes());
        // Straight from the client: nothing relayed.
        assert_eq!(
            relayed("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa\r\n"),
            None
        );
        // The proxy's received wins over what the client wrote.
        assert_eq!(
            relayed(&format!(
                "{front}Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKa;rport=4000;received=198.51.100.7\r\n"
            )),
            Some("198.51.100.7".parse().unwrap())
        );
        // Without received, the sent-by address; a host name is no address.
        assert_eq!(
            relayed(&format!(
                "{front}v: SIP/2.0/TCP [2001:db8::5]:5060;branch=z9hG4bKa\r\n"
            )),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(
            relayed(&format!(
                "{front}Via: SIP/2.0/UDP phone.example;branch=z9hG4bKa\r\n"
            )),
            None
        );
        // Both values in one header.
        assert_eq!(
            relayed(
                "Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKf, SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKa\r\n"
            ),
            Some("203.0.113.9".parse().unwrap())
        );
        // Responses are never attributed.
        assert_eq!(
            relayed_from(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=1\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=2\r\n\r\n"),
            None
        );
    }

    /// A request with `method` and `to`, and a User-Agent `X` when `agent`.
    fn request(method: &str, to: &str, agent: bool) -> Vec<u8> {
        let mut text = format!("{method} sip:acme.example SIP/2.0\r\nTo: {to}\r\n");
        if agent {
            text.push_str("User-Agent: X\r\n");
        }
        text.push_str("Call-ID: c1\r\n\r\n");
        text.into_bytes()
    }

    #[test]
    fn reads_method_agent_and_callee() {
        let req = request(
            "INVITE",
            "\"Bob\" <sip:1001@acme.example:5060;user=phone>",
            true,
        );
        let p = RequestPeek::of(&req).unwrap();
        assert_eq!((p.method, p.user_agent), ("INVITE", Some("X")));
        assert_eq!(p.callee_target().as_deref(), Some("1001@acme.example"));
        assert!(!p.has_to_tag());
        assert!(!p.is_in_dialog_method());
        assert!(
            RequestPeek::of(&request("bye", "<sip:a@b>", false))
                .unwrap()
                .is_in_dialog_method()
        );
        assert_eq!(RequestPeek::of(b"SIP/2.0 200 OK\r\n\r\n"), None);
        assert_eq!(RequestPeek::of(b"\x00\xff"), None);
    }

    #[test]
    fn to_is_read_as_a_name_addr() {
        let to = |value: &'static str| RequestPeek {
            method: "INVITE",
            user_agent: None,
            to: Some(value),
        };
        assert_eq!(to("garbage").callee_target().as_deref(), Some("garbage"));
        assert_eq!(to("<SIP:100@h>").callee_target().as_deref(), Some("100@h"));
        assert_eq!(
            to("<sip:alice;day=tuesday@atlanta.com>")
                .callee_target()
                .as_deref(),
            Some("alice;day=tuesday@atlanta.com")
        );
        assert!(to("<sip:a@b>;tag=1").has_to_tag());
        assert!(to("sip:a@b ; TAG = 1").has_to_tag());
        assert!(!to("<sip:a@b;tag=1>").has_to_tag());
        assert!(!to("<sip:a@b>;tagx").has_to_tag());
        assert!(!to("\";tag=1\" <sip:a@b>").has_to_tag());
    }
}
