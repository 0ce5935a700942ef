//! ICE-lite (RFC 8445 §2.5) on a WebRTC leg: the host has one host candidate per
//! leg and never sends checks; it answers the browser's STUN Binding requests
//! (RFC 5389) and learns the browser's address from them.
//!
//! [`answer_binding`] is a pure function of the request bytes, the source
//! address and the leg's credentials: a request whose USERNAME starts with our
//! ufrag, whose FINGERPRINT is right and whose MESSAGE-INTEGRITY checks with
//! our password gets a Binding success response with
//! XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY (our password) and FINGERPRINT;
//! anything else gets nothing, so the port tells an attacker nothing. Only the
//! few attributes ICE needs are read; the codec is small enough to keep here
//! rather than pull in a STUN crate built on another I/O model.

use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use rand::Rng;
use sha1::Sha1;

/// The STUN magic cookie (RFC 5389 §6).
const MAGIC: u32 = 0x2112_A442;
const HEADER: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const USE_CANDIDATE: u16 = 0x0025;
const FINGERPRINT: u16 = 0x8028;
/// XORed into the CRC-32 of FINGERPRINT (RFC 5389 §15.5).
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Length of an HMAC-SHA1 MESSAGE-INTEGRITY value.
const INTEGRITY_LEN: usize = 20;

/// Characters of an `ice-char` (RFC 8839 §5.4).
const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Our ICE credentials on one leg, sent in `a=ice-ufrag`/`a=ice-pwd`.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// Username fragment: 8 `ice-char`s (RFC 8839 asks for at least 4 and
    /// 24 bits of randomness).
    pub ufrag: String,
    /// Password: 24 `ice-char`s (at least 22 and 128 bits of randomness).
    pub pwd: String,
}

impl std::fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

impl IceCredentials {
    /// Fresh random credentials.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut word = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ICE_CHARS[rng.random_range(0..ICE_CHARS.len())]))
                .collect()
        };
        Self {
            ufrag: word(8),
            pwd: word(24),
        }
    }
}

/// A Binding request that checked, and the response to send back to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The Binding success response.
    pub response: Vec<u8>,
    /// Whether the request carried USE-CANDIDATE (the browser nominated this
    /// address).
    pub nominated: bool,
}

/// The answer to one STUN datagram on a leg with credentials `ours`: `Some`
/// for a Binding request whose USERNAME is `<our ufrag>:<theirs>` and whose
/// FINGERPRINT and MESSAGE-INTEGRITY check; `None` for anything else.
pub fn answer_binding(request: &[u8], from: SocketAddr, ours: &IceCredentials) -> Option<Checked> {
    let msg = Message::parse(request)?;
    if msg.kind != BINDING_REQUEST {
        return None;
    }
    let username = msg.attr(USERNAME)?;
    let (ufrag, _theirs) = std::str::from_utf8(username).ok()?.split_once(':')?;
    if ufrag != ours.ufrag {
        return None;
    }
    // RFC 8445 §7.2.2: checks carry FINGERPRINT; one without is not ICE.
    if msg.attr(FINGERPRINT).is_none()
        || !msg.fingerprint_ok()
        || !msg.integrity_ok(ours.pwd.as_bytes())
    {
        return None;
    }
    let mut out = Builder::new(BINDING_SUCCESS, msg.transaction);
    out.attr(XOR_MAPPED_ADDRESS, &xor_address(from, msg.transaction));
    Some(Checked {
        response: out.finish(ours.pwd.as_bytes()),
        nominated: msg.attr(USE_CANDIDATE).is_some(),
    })
}

/// Whether a Binding success `response` is signed with `pwd` and carries a
/// correct FINGERPRINT; returns the XOR-MAPPED-ADDRESS it reports. What a
/// browser checks of our answers (used by the tests).
pub fn verify_success(response: &[u8], pwd: &str) -> Option<SocketAddr> {
    let msg = Message::parse(response)?;
    if msg.kind != BINDING_SUCCESS
        || !msg.integrity_ok(pwd.as_bytes())
        || msg.attr(FINGERPRINT).is_none()
        || !msg.fingerprint_ok()
    {
        return None;
    }
    unxor_address(msg.attr(XOR_MAPPED_ADDRESS)?, msg.transaction)
}

/// A Binding request as a browser sends it: USERNAME `<ufrag>:<their ufrag>`,
/// USE-CANDIDATE when `nominate`, MESSAGE-INTEGRITY with `pwd`, FINGERPRINT.
pub fn binding_request(
    username: &str,
    pwd: &str,
    transaction: [u8; 12],
    nominate: bool,
) -> Vec<u8> {
    let mut out = Builder::new(BINDING_REQUEST, transaction);
    out.attr(USERNAME, username.as_bytes());
    if nominate {
        out.attr(USE_CANDIDATE, &[]);
    }
    out.finish(pwd.as_bytes())
}

/// A STUN message read just enough: its type, transaction id and attributes
/// by offset.
struct Message<'a> {
    bytes: &'a [u8],
    kind: u16,
    transaction: [u8; 12],
    /// (type, offset of the attribute header) in order.
    attrs: Vec<(u16, usize)>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl<'a> Message<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() < HEADER || bytes[0] & 0xC0 != 0 {
            return None;
        }
        let kind = be16(bytes, 0)?;
        let len = usize::from(be16(bytes, 2)?);
        if len % 4 != 0 || HEADER + len != bytes.len() {
            return None;
        }
        if u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) != MAGIC {
            return None;
        }
        let mut transaction = [0u8; 12];
        transaction.copy_from_slice(&bytes[8..HEADER]);
        let mut attrs = Vec::new();
        let mut at = HEADER;
        while at < bytes.len() {
            let t = be16(bytes, at)?;
            let l = usize::from(be16(bytes, at + 2)?);
            let end = at + 4 + l;
            if end > bytes.len() || attrs.len() >= 32 {
                return None;
            }
            attrs.push((t, at));
            at = end + (4 - l % 4) % 4;
        }
        Some(Self {
            bytes,
            kind,
            transaction,
            attrs,
        })
    }

    /// The value of the first attribute of type `t` before MESSAGE-INTEGRITY
    /// (attributes after it are not covered by it and are ignored, RFC 5389
    /// §15.4), except FINGERPRINT itself.
    fn attr(&self, t: u16) -> Option<&'a [u8]> {
        let covered = self
            .attrs
            .iter()
            .take_while(|(a, _)| *a != MESSAGE_INTEGRITY || t == MESSAGE_INTEGRITY);
        let at = covered
            .chain(self.attrs.iter().filter(|(a, _)| *a == FINGERPRINT))
            .find(|(a, _)| *a == t)?
            .1;
        let len = usize::from(be16(self.bytes, at + 2)?);
        self.bytes.get(at + 4..at + 4 + len)
    }

    /// The message up to `at` with its length field set as if it ended at
    /// `end`: the input of MESSAGE-INTEGRITY and FINGERPRINT.
    fn prefix(&self, at: usize, end: usize) -> Vec<u8> {
        let mut v = self.bytes[..at].to_vec();
        let len = (end - HEADER) as u16;
        v[2..4].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn integrity_ok(&self, key: &[u8]) -> bool {
        let Some(&(_, at)) = self.attrs.iter().find(|(a, _)| *a == MESSAGE_INTEGRITY) else {
            return false;
        };
        let Some(value) = self.attr(MESSAGE_INTEGRITY) else {
            return false;
        };
        if value.len() != INTEGRITY_LEN {
            return false;
        }
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
            return false;
        };
        mac.update(&self.prefix(at, at + 4 + INTEGRITY_LEN));
        mac.verify_slice(value).is_ok()
    }

    /// True when there is no FINGERPRINT or it is right; it must be last.
    fn fingerprint_ok(&self) -> bool {
        let Some(&(_, at)) = self.attrs.iter().find(|(a, _)| *a == FINGERPRINT) else {
            return true;
        };
        if at + 8 != self.bytes.len() {
            return false;
        }
        let crc = crc32(&self.prefix(at, at + 8)) ^ FINGERPRINT_XOR;
        self.bytes[at + 4..at + 8] == crc.to_be_bytes()
    }
}

/// Writes a STUN message: header, attributes, then MESSAGE-INTEGRITY and
/// FINGERPRINT.
struct Builder {
    bytes: Vec<u8>,
}

impl Builder {
    fn new(kind: u16, transaction: [u8; 12]) -> Self {
        let mut bytes = Vec::with_capacity(96);
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&MAGIC.to_be_bytes());
        bytes.extend_from_slice(&transaction);
        Self { bytes }
    }

    fn attr(&mut self, t: u16, value: &[u8]) {
        self.bytes.extend_from_slice(&t.to_be_bytes());
        self.bytes
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.bytes.extend_from_slice(value);
        let pad = (4 - value.len() % 4) % 4;
        self.bytes.extend(std::iter::repeat_n(0, pad));
    }

    fn set_len(&mut self, end: usize) {
        let len = (end - HEADER) as u16;
        self.bytes[2..4].copy_from_slice(&len.to_be_bytes());
    }

    fn finish(mut self, key: &[u8]) -> Vec<u8> {
        let at = self.bytes.len();
        self.set_len(at + 4 + INTEGRITY_LEN);
        let tag = match Hmac::<Sha1>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(&self.bytes);
                mac.finalize().into_bytes().to_vec()
            }
            // HMAC takes keys of any length; this arm is never taken.
            Err(_) => vec![0; INTEGRITY_LEN],
        };
        self.attr(MESSAGE_INTEGRITY, &tag);
        let at = self.bytes.len();
        self.set_len(at + 8);
        let crc = crc32(&self.bytes) ^ FINGERPRINT_XOR;
        self.attr(FINGERPRINT, &crc.to_be_bytes());
        self.bytes
    }
}

/// XOR-MAPPED-ADDRESS value (RFC 5389 §15.2).
fn xor_address(addr: SocketAddr, transaction: [u8; 12]) -> Vec<u8> {
    let mut mask = MAGIC.to_be_bytes().to_vec();
    mask.extend_from_slice(&transaction);
    let port = addr.port() ^ (MAGIC >> 16) as u16;
    let (family, ip): (u8, Vec<u8>) = match addr.ip() {
        IpAddr::V4(ip) => (1, ip.octets().to_vec()),
        IpAddr::V6(ip) => (2, ip.octets().to_vec()),
    };
    let mut v = vec![0, family];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend(ip.iter().zip(&mask).map(|(a, m)| a ^ m));
    v
}

fn unxor_address(value: &[u8], transaction: [u8; 12]) -> Option<SocketAddr> {
    let mut mask = MAGIC.to_be_bytes().to_vec();
    mask.extend_from_slice(&transaction);
    let port = be16(value, 2)? ^ (MAGIC >> 16) as u16;
    let raw: Vec<u8> = value
        .get(4..)?
        .iter()
        .zip(&mask)
        .map(|(a, m)| a ^ m)
        .collect();
    let ip = match (value.get(1)?, raw.len()) {
        (1, 4) => IpAddr::from(<[u8; 4]>::try_from(raw.as_slice()).ok()?),
        (2, 16) => IpAddr::from(<[u8; 16]>::try_from(raw.as_slice()).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// CRC-32 (ISO-HDLC, the one of zlib), bit by bit: STUN messages are short.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> IceCredentials {
        IceCredentials {
            ufrag: "pbxU".into(),
            pwd: "0123456789abcdefghijklmn".into(),
        }
    }

    const FROM: &str = "192.0.2.33:51234";

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// RFC 5769 §2.2: a sample Binding success response over IPv4, whose
    /// MESSAGE-INTEGRITY and FINGERPRINT were computed by another
    /// implementation.
    #[test]
    fn rfc5769_sample_response_verifies() {
        let sample: [u8; 80] = [
            0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
            0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
            0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
            0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
        ];
        assert_eq!(
            verify_success(&sample, "VOkJxbRl1RmTxUk/WvJxBt"),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert_eq!(verify_success(&sample, "VOkJxbRl1RmTxUk/WvJxBT"), None);
    }

    #[test]
    fn a_valid_check_is_answered_with_a_signed_mapped_address() {
        let ours = creds();
        let from: SocketAddr = FROM.parse().unwrap();
        let req = binding_request("pbxU:brws", &ours.pwd, [7; 12], true);
        let checked = answer_binding(&req, from, &ours).expect("answered");
        assert!(checked.nominated);
        assert_eq!(&checked.response[8..20], &[7; 12], "same transaction");
        assert_eq!(verify_success(&checked.response, &ours.pwd), Some(from));
        assert_eq!(verify_success(&checked.response, "another password"), None);
        let v6: SocketAddr = "[2001:db8::5]:4000".parse().unwrap();
        let checked = answer_binding(&req, v6, &ours).unwrap();
        assert_eq!(verify_success(&checked.response, &ours.pwd), Some(v6));
        let plain = binding_request("pbxU:brws", &ours.pwd, [8; 12], false);
        assert!(!answer_binding(&plain, from, &ours).unwrap().nominated);
    }

    #[test]
    fn wrong_credentials_or_damage_get_nothing() {
        let ours = creds();
        let from: SocketAddr = FROM.parse().unwrap();
        let wrong_pwd = binding_request("pbxU:brws", "0123456789abcdefghijklmX", [1; 12], false);
        assert_eq!(answer_binding(&wrong_pwd, from, &ours), None);
        let wrong_ufrag = binding_request("pbxV:brws", &ours.pwd, [1; 12], false);
        assert_eq!(answer_binding(&wrong_ufrag, from, &ours), None);
        let no_colon = binding_request("pbxU", &ours.pwd, [1; 12], false);
        assert_eq!(answer_binding(&no_colon, from, &ours), None);
        let good = binding_request("pbxU:brws", &ours.pwd, [1; 12], false);
        assert!(answer_binding(&good, from, &ours).is_some());
        // Any flipped bit breaks the integrity or the fingerprint.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert_eq!(answer_binding(&bad, from, &ours), None, "byte {i}");
        }
        for n in 0..good.len() {
            assert_eq!(answer_binding(&good[..n], from, &ours), None);
        }
        // A response is not a request.
        let resp = answer_binding(&good, from, &ours).unwrap().response;
        assert_eq!(answer_binding(&resp, from, &ours), None);
    }

    #[test]
    fn credentials_have_rfc8839_lengths_and_charset() {
        let a = IceCredentials::generate();
        let b = IceCredentials::generate();
        assert_eq!((a.ufrag.len(), a.pwd.len()), (8, 24));
        assert!(
            (a.ufrag.clone() + &a.pwd)
                .bytes()
                .all(|c| ICE_CHARS.contains(&c))
        );
        assert_ne!(a, b);
        assert!(
            !format!("{a:?}").contains(&a.pwd),
            "the password is not logged"
        );
    }
}
