//! SDP for one PCMA audio stream on `RTP/SAVP` with one SDES key (RFC 4568):
//! the offer and answer we send, and the address and keys we read from the relay.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The SDES suites we use: AES-128 counter mode with HMAC-SHA1, a 80- or 32-bit tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Suite {
    /// `AES_CM_128_HMAC_SHA1_80`
    #[value(name = "AES_CM_128_HMAC_SHA1_80")]
    Sha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`
    #[value(name = "AES_CM_128_HMAC_SHA1_32")]
    Sha1_32,
}

impl Suite {
    /// The name in `a=crypto`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Suite::Sha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::Sha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The SRTP protection profile.
    pub(crate) fn profile(self) -> webrtc_srtp::protection_profile::ProtectionProfile {
        use webrtc_srtp::protection_profile::ProtectionProfile as P;
        match self {
            Suite::Sha1_80 => P::Aes128CmHmacSha1_80,
            Suite::Sha1_32 => P::Aes128CmHmacSha1_32,
        }
    }

    fn from_name(name: &str) -> Option<Suite> {
        [Suite::Sha1_80, Suite::Sha1_32]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// An AES_CM_128_HMAC_SHA1_80 master key (16 bytes) and salt (14 bytes).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key(pub [u8; 30]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh random key.
    pub(crate) fn generate() -> Key {
        use rand::RngCore as _;
        let mut k = [0u8; 30];
        rand::rng().fill_bytes(&mut k);
        Key(k)
    }

    /// The master key.
    pub(crate) fn master(&self) -> &[u8] {
        &self.0[..16]
    }

    /// The master salt.
    pub(crate) fn salt(&self) -> &[u8] {
        &self.0[16..]
    }

    /// The `a=crypto` value carrying this key for `suite` under `tag`.
    pub(crate) fn attr(&self, tag: u32, suite: Suite) -> String {
        format!("{tag} {} inline:{}", suite.name(), STANDARD.encode(self.0))
    }
}

/// What we read from the relay's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remote {
    /// Where to send RTP.
    pub(crate) addr: SocketAddr,
    /// Its `a=crypto` lines of the suites we know: tag, suite, key.
    pub(crate) cryptos: Vec<(u32, Suite, Key)>,
    /// The transport of the audio line (`RTP/SAVP`, ...).
    pub(crate) proto: String,
}

impl Remote {
    /// The first line of the first suite of `preference` offered.
    pub(crate) fn choose(&self, preference: &[Suite]) -> Option<(u32, Suite, Key)> {
        preference
            .iter()
            .find_map(|p| self.cryptos.iter().find(|c| c.1 == *p))
            .cloned()
    }
}

/// Reads the first audio stream's address and its keys.
pub(crate) fn parse(sdp: &str) -> Option<Remote> {
    let (mut session_ip, mut media_ip, mut port, mut proto) = (None, None, None, None);
    let mut cryptos = Vec::new();
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if port.is_some() {
                break; // only the first audio stream
            }
            let f: Vec<&str> = m.split(' ').collect();
            in_audio = f.first() == Some(&"audio");
            if in_audio {
                port = f.get(1).and_then(|p| p.parse::<u16>().ok());
                proto = f.get(2).map(|p| p.to_string());
            }
        } else if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            let ip = c.split('/').next().and_then(|a| a.parse::<IpAddr>().ok());
            if in_audio {
                media_ip = ip;
            } else if port.is_none() {
                session_ip = ip;
            }
        } else if let Some(a) = line.strip_prefix("a=crypto:")
            && in_audio
        {
            cryptos.extend(parse_crypto(a));
        }
    }
    Some(Remote {
        addr: SocketAddr::new(media_ip.or(session_ip)?, port?),
        cryptos,
        proto: proto?,
    })
}

/// `TAG SUITE inline:KEY[|lifetime][|mki]`; suites we do not use are `None`.
fn parse_crypto(value: &str) -> Option<(u32, Suite, Key)> {
    let mut f = value.split_whitespace();
    let tag = f.next()?.parse().ok()?;
    let suite = Suite::from_name(f.next()?)?;
    let inline = f.next()?.strip_prefix("inline:")?;
    let b64 = inline.split('|').next()?;
    let bytes = STANDARD
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
        .ok()?;
    Some((tag, suite, Key(bytes.try_into().ok()?)))
}

/// Our offer or answer: PCMA on `RTP/SAVP` at `addr`, with `key` for `suite` under `tag`.
pub(crate) fn body(session: u64, addr: SocketAddr, tag: u32, suite: Suite, key: &Key) -> String {
    let ip = addr.ip();
    format!(
        "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n\
         a=crypto:{}\r\na=sendrecv\r\n",
        addr.port(),
        key.attr(tag, suite)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_body_reads_back() {
        let key = Key::generate();
        let addr: SocketAddr = "127.0.0.2:7000".parse().unwrap();
        let r = parse(&body(1, addr, 3, Suite::Sha1_32, &key)).expect("parses");
        assert_eq!(r.addr, addr);
        assert_eq!(r.cryptos, [(3, Suite::Sha1_32, key.clone())]);
        assert_eq!(r.proto, "RTP/SAVP");
    }

    #[test]
    fn picks_by_preference_among_several() {
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 8 101\r\n\
            a=crypto:1 AEAD_AES_256_GCM inline:AAAA\r\n\
            a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk|2^31\r\n\
            a=crypto:8 AES_CM_128_HMAC_SHA1_32 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk\r\n\
            m=video 0 RTP/AVP 96\r\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:x\r\n";
        let r = parse(sdp).expect("parses");
        assert_eq!(r.addr, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(r.cryptos.len(), 2);
        let (tag, suite, key) = r.choose(&[Suite::Sha1_80]).expect("a key");
        assert_eq!((tag, suite), (2, Suite::Sha1_80));
        assert_eq!(&key.0[..4], b"ABCD");
        let (tag, _, _) = r.choose(&[Suite::Sha1_32, Suite::Sha1_80]).unwrap();
        assert_eq!(tag, 8);
    }
}
