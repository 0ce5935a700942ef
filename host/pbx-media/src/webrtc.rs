//! What makes a leg a browser's (WebRTC) in SDP, and the SDP the host writes
//! to one: `UDP/TLS/RTP/SAVPF` with DTLS-SRTP keying (RFC 5763/5764), ICE-lite
//! (RFC 8445 §2.5, RFC 8839) and RTCP on the RTP port (RFC 5761). Pure
//! functions over [`Sdp`]; the session ([`crate::session`]) decides when to
//! call them, and [`crate::dtls`] runs the handshake.
//!
//! # What a browser gets from us
//! Session level: `a=ice-lite`, and `a=group:BUNDLE <mid>` when its offer
//! bundled. On the audio section: our address and the leg's port, `a=mid`
//! (the browser's, or `0` in our own offer), `a=ice-ufrag`/`a=ice-pwd`,
//! `a=fingerprint:sha-256` of the host's certificate, `a=setup` (`actpass` in
//! an offer, else our role), `a=rtcp-mux`, one host `a=candidate` and
//! `a=end-of-candidates`; G.711 and `telephone-event` only, no `a=crypto`.
//! Chromium refuses an answer without mid, ICE credentials, fingerprint or
//! setup, so each is always written.
//!
//! # What the other leg gets from a browser
//! The ordinary RTP/AVP (or SDES) SDP: `strip_browser_lines` removes what
//! only means something between WebRTC endpoints (mid, BUNDLE, rtcp-fb,
//! extmap, ssrc, msid), and `keep_g711` the formats the relay cannot pass to
//! a SIP phone without transcoding (Opus, RED, G.722, CN, telephone-event at
//! 48 kHz).

use std::fmt::Write as _;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::g711::G711;
use crate::ice::IceCredentials;
use crate::sdp::{Line, Media, Sdp};

/// The transport of a browser's audio (RFC 5764 §8).
pub const WEBRTC_PROTO: &str = "UDP/TLS/RTP/SAVPF";

/// Priority of our one host candidate (RFC 8445 §5.1.2.1: type preference
/// 126, local preference 65535, component 1).
const HOST_PRIORITY: u32 = (126 << 24) | (65535 << 8) | 255;

/// Attributes only WebRTC endpoints understand, removed from what a browser
/// sends before it goes to a SIP leg.
const BROWSER_ATTRS: &[&str] = &[
    "mid",
    "group",
    "msid",
    "msid-semantic",
    "extmap",
    "extmap-allow-mixed",
    "rtcp-fb",
    "rtcp-rsize",
    "rtcp-xr",
    "ssrc",
    "ssrc-group",
    "ice-options",
    "ice-ufrag",
    "ice-pwd",
    "ice-lite",
    "fingerprint",
    "setup",
    "candidate",
    "end-of-candidates",
    "rtcp-mux",
    "rtcp-mux-only",
    "rtcp",
    "sctp-port",
    "max-message-size",
];

/// What a datagram on a WebRTC leg's port is, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    /// 0–3: STUN (ICE connectivity checks).
    Stun,
    /// 20–63: DTLS records.
    Dtls,
    /// 128–191: RTP or RTCP (told apart by their header, RFC 5761).
    Rtp,
    /// Anything else (ZRTP, TURN channels, garbage): dropped.
    Other,
}

/// Classifies a datagram by its first byte (RFC 7983).
pub fn demux(data: &[u8]) -> Demux {
    match data.first() {
        Some(0..=3) => Demux::Stun,
        Some(20..=63) => Demux::Dtls,
        Some(128..=191) => Demux::Rtp,
        _ => Demux::Other,
    }
}

/// Which side of the DTLS handshake the host takes on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// We send the ClientHello (`a=setup:active` on our side).
    Client,
    /// We wait for it (`a=setup:passive` on our side).
    Server,
}

impl DtlsRole {
    /// Our `a=setup` value once the role is settled.
    pub fn setup(self) -> &'static str {
        match self {
            DtlsRole::Client => "active",
            DtlsRole::Server => "passive",
        }
    }

    /// Our role when answering an offer whose `a=setup` is `theirs`: passive
    /// (server) unless the offerer insists on being passive. RFC 5763 §5
    /// lets the answerer choose with `actpass`; being the server means we
    /// need not know the browser's address before it sends.
    fn answering(theirs: &str) -> Result<Self> {
        match theirs {
            "actpass" | "active" => Ok(DtlsRole::Server),
            "passive" => Ok(DtlsRole::Client),
            _ => Err(Error::NotAcceptable(
                "a=setup must be actpass, active or passive",
            )),
        }
    }

    /// Our role after an answer to our `actpass` offer said `theirs`.
    fn offered(theirs: &str) -> Result<Self> {
        match theirs {
            "active" => Ok(DtlsRole::Server),
            "passive" => Ok(DtlsRole::Client),
            _ => Err(Error::NotAcceptable(
                "an answer's a=setup must be active or passive",
            )),
        }
    }
}

/// A SHA-256 certificate fingerprint (RFC 8122 §5), the only hash browsers use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_value())
    }
}

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Parses an `a=fingerprint` value; `None` for another hash or bad hex.
    pub fn parse(value: &str) -> Option<Self> {
        let (hash, hex) = value.trim().split_once(' ')?;
        if !hash.eq_ignore_ascii_case("sha-256") {
            return None;
        }
        let mut out = [0u8; 32];
        let mut parts = hex.trim().split(':');
        for byte in &mut out {
            let p = parts.next()?;
            if p.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(Self(out))
    }

    /// The `a=fingerprint` value: `sha-256 AB:CD:...`.
    pub fn to_value(&self) -> String {
        let mut s = String::from("sha-256 ");
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            let _ = write!(s, "{b:02X}");
        }
        s
    }
}

/// What a browser's SDP (offer or answer) says about its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrowserSdp {
    /// Its certificate's fingerprint, checked against the handshake.
    pub fingerprint: Fingerprint,
    /// Its `a=setup`.
    pub setup: String,
    /// The `a=mid` of every media section (in order), for our answer.
    pub mids: Vec<Option<String>>,
    /// Whether the session bundles its media (`a=group:BUNDLE`).
    pub bundle: bool,
}

/// Whether `m` is a WebRTC (DTLS-SRTP) media section.
pub(crate) fn is_webrtc(m: &Media) -> bool {
    is_webrtc_proto(&m.proto)
}

/// Whether `proto` is a DTLS-SRTP transport.
pub(crate) fn is_webrtc_proto(proto: &str) -> bool {
    matches!(proto, "UDP/TLS/RTP/SAVPF" | "UDP/TLS/RTP/SAVP")
}

/// The value of attribute `name` on media `m`, else at session level.
fn attr<'a>(sdp: &'a Sdp, m: &'a Media, name: &str) -> Option<&'a str> {
    m.attr(name).flatten().or_else(|| {
        sdp.session
            .iter()
            .filter_map(Line::attr)
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v)
    })
}

impl BrowserSdp {
    /// Reads the browser's transport from media section `index` of `sdp`.
    pub(crate) fn read(sdp: &Sdp, index: usize) -> Result<Self> {
        let m = sdp
            .media
            .get(index)
            .ok_or(Error::NotAcceptable("stream missing"))?;
        let fingerprint = attr(sdp, m, "fingerprint")
            .ok_or(Error::NotAcceptable("DTLS-SRTP without a=fingerprint"))?;
        let fingerprint = Fingerprint::parse(fingerprint).ok_or(Error::NotAcceptable(
            "a=fingerprint is not a sha-256 fingerprint",
        ))?;
        let setup = attr(sdp, m, "setup").unwrap_or("actpass").trim().to_owned();
        if attr(sdp, m, "ice-ufrag").is_none() || attr(sdp, m, "ice-pwd").is_none() {
            return Err(Error::NotAcceptable("DTLS-SRTP without ICE credentials"));
        }
        let mids = sdp
            .media
            .iter()
            .map(|m| m.attr("mid").flatten().map(str::to_owned))
            .collect();
        let bundle = sdp
            .session
            .iter()
            .filter_map(Line::attr)
            .any(|(n, v)| n == "group" && v.is_some_and(|v| v.starts_with("BUNDLE")));
        Ok(Self {
            fingerprint,
            setup,
            mids,
            bundle,
        })
    }

    /// Our DTLS role answering this offer.
    pub(crate) fn answering_role(&self) -> Result<DtlsRole> {
        DtlsRole::answering(&self.setup)
    }

    /// Our DTLS role when this is the answer to our `actpass` offer.
    pub(crate) fn answered_role(&self) -> Result<DtlsRole> {
        DtlsRole::offered(&self.setup)
    }
}

/// The encoding and rate of format `pt` of `m` (`a=rtpmap`, else static).
fn encoding(m: &Media, pt: &str) -> Option<(String, u32)> {
    let mapped = m.lines.iter().find_map(|l| match l.attr() {
        Some(("rtpmap", Some(v))) => {
            let (p, enc) = v.split_once(' ')?;
            let mut parts = enc.trim().split('/');
            let name = parts.next()?.to_owned();
            let rate = parts.next()?.parse().ok()?;
            (p == pt).then_some((name, rate))
        }
        _ => None,
    });
    mapped.or(match pt {
        "0" => Some(("PCMU".to_owned(), 8000)),
        "8" => Some(("PCMA".to_owned(), 8000)),
        _ => None,
    })
}

/// Keeps the formats of `m` the relay can pass between a browser and a SIP
/// phone without transcoding — PCMU, PCMA and `telephone-event`, all at
/// 8000 Hz — with their `a=rtpmap`/`a=fmtp`/`a=rtcp-fb` lines. Errors when no
/// G.711 format is left.
pub(crate) fn keep_g711(m: &mut Media) -> Result<()> {
    let keep: Vec<String> = m
        .formats
        .iter()
        .filter(|pt| {
            encoding(m, pt).is_some_and(|(name, rate)| {
                rate == 8000
                    && (G711::from_encoding(&name).is_some()
                        || name.eq_ignore_ascii_case("telephone-event"))
            })
        })
        .cloned()
        .collect();
    let audio = keep
        .iter()
        .any(|pt| encoding(m, pt).is_some_and(|(n, _)| G711::from_encoding(&n).is_some()));
    if !audio {
        return Err(Error::NotAcceptable(
            "a WebRTC leg needs PCMU or PCMA (no transcoding)",
        ));
    }
    m.lines.retain(|l| match l.attr() {
        Some(("rtpmap" | "fmtp" | "rtcp-fb", Some(v))) => {
            let pt = v.split(' ').next().unwrap_or("");
            keep.iter().any(|k| k == pt)
        }
        _ => true,
    });
    m.formats = keep;
    Ok(())
}

/// Removes the WebRTC-only lines of a browser's SDP (session and media level).
pub(crate) fn strip_browser_lines(sdp: &mut Sdp) {
    sdp.session
        .retain(|l| !l.attr().is_some_and(|(n, _)| BROWSER_ATTRS.contains(&n)));
    for m in &mut sdp.media {
        m.remove_attrs(BROWSER_ATTRS);
    }
}

/// What the host writes about itself to a browser leg.
#[derive(Debug, Clone)]
pub(crate) struct OurTransport<'a> {
    pub ice: &'a IceCredentials,
    pub fingerprint: Fingerprint,
    /// `actpass`, `active` or `passive`.
    pub setup: &'a str,
    pub mid: &'a str,
    pub ip: IpAddr,
    pub port: u16,
}

/// Turns media section `index` of `sdp` into what a browser leg gets (see the
/// module docs); the other sections are left to the caller.
pub(crate) fn write_browser_media(sdp: &mut Sdp, index: usize, ours: &OurTransport<'_>) {
    sdp.session
        .retain(|l| !l.attr().is_some_and(|(n, _)| BROWSER_ATTRS.contains(&n)));
    let at = sdp
        .session
        .iter()
        .position(|l| l.kind == 'a')
        .unwrap_or(sdp.session.len());
    sdp.session.insert(
        at,
        Line {
            kind: 'a',
            value: "ice-lite".to_owned(),
        },
    );
    let Some(m) = sdp.media.get_mut(index) else {
        return;
    };
    m.remove_attrs(BROWSER_ATTRS);
    m.remove_attrs(&["crypto"]);
    m.proto = WEBRTC_PROTO.to_owned();
    m.port = ours.port;
    m.port_count = None;
    let ip = ours.ip;
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let attrs = [
        format!("mid:{}", ours.mid),
        format!("ice-ufrag:{}", ours.ice.ufrag),
        format!("ice-pwd:{}", ours.ice.pwd),
        format!("fingerprint:{}", ours.fingerprint.to_value()),
        format!("setup:{}", ours.setup),
        "rtcp-mux".to_owned(),
        format!("rtcp:{} IN {family} {ip}", ours.port),
        format!(
            "candidate:1 1 udp {HOST_PRIORITY} {ip} {} typ host",
            ours.port
        ),
        "end-of-candidates".to_owned(),
    ];
    m.lines
        .extend(attrs.into_iter().map(|value| Line { kind: 'a', value }));
}

/// Adds `a=group:BUNDLE <mid>` at session level (after `a=ice-lite`).
pub(crate) fn write_bundle(sdp: &mut Sdp, mid: &str) {
    let at = sdp
        .session
        .iter()
        .position(|l| l.kind == 'a')
        .map_or(sdp.session.len(), |p| p + 1);
    sdp.session.insert(
        at,
        Line {
            kind: 'a',
            value: format!("group:BUNDLE {mid}"),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_follows_rfc7983() {
        assert_eq!(demux(&[0x00, 0x01]), Demux::Stun);
        assert_eq!(demux(&[3]), Demux::Stun);
        assert_eq!(demux(&[22, 0xfe, 0xfd]), Demux::Dtls);
        assert_eq!(demux(&[63]), Demux::Dtls);
        assert_eq!(demux(&[0x80, 0]), Demux::Rtp);
        assert_eq!(demux(&[191]), Demux::Rtp);
        for b in [4u8, 16, 19, 64, 79, 127, 192, 255] {
            assert_eq!(demux(&[b]), Demux::Other, "{b}");
        }
        assert_eq!(demux(&[]), Demux::Other);
    }

    #[test]
    fn fingerprints_round_trip_and_reject_other_hashes() {
        let fp = Fingerprint::of_der(b"certificate");
        let v = fp.to_value();
        assert!(v.starts_with("sha-256 "));
        assert_eq!(v.len(), 8 + 32 * 3 - 1);
        assert_eq!(Fingerprint::parse(&v), Some(fp));
        assert_eq!(
            Fingerprint::parse(&v.to_lowercase().replace("sha-256", "SHA-256")),
            Some(fp)
        );
        assert_eq!(Fingerprint::parse(&v.replace("sha-256", "sha-1")), None);
        assert_eq!(Fingerprint::parse(&v[..v.len() - 3]), None);
        assert_eq!(Fingerprint::parse(&format!("{v}:00")), None);
        assert_eq!(Fingerprint::parse("sha-256 zz"), None);
    }

    #[test]
    fn roles_follow_rfc5763() {
        assert_eq!(DtlsRole::answering("actpass").unwrap(), DtlsRole::Server);
        assert_eq!(DtlsRole::answering("active").unwrap(), DtlsRole::Server);
        assert_eq!(DtlsRole::answering("passive").unwrap(), DtlsRole::Client);
        assert!(DtlsRole::answering("holdconn").is_err());
        assert_eq!(DtlsRole::offered("active").unwrap(), DtlsRole::Server);
        assert_eq!(DtlsRole::offered("passive").unwrap(), DtlsRole::Client);
        assert!(DtlsRole::offered("actpass").is_err());
    }
}
