//! SDES key exchange for SRTP (RFC 4568): crypto suites, key material in
//! `a=crypto` lines, fresh keys per leg, and choosing a suite from an offer.
//!
//! SDES is accepted on `RTP/SAVP(F)` m-lines and also on `RTP/AVP(F)` m-lines that
//! carry `a=crypto` (best-effort SRTP as some softphones offer it). Key lines with
//! an MKI, several keys, or session parameters are not supported and are skipped
//! when negotiating, so an offer that has only such lines gets no SRTP.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::error::{Error, Result};
use crate::sdp::CryptoAttr;

/// Decoder that accepts key material with or without `=` padding.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An SRTP crypto suite we can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `AES_CM_128_HMAC_SHA1_80` (RFC 4568), the mandatory one.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32` (RFC 4568).
    AesCm128HmacSha1_32,
    /// `AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm,
}

impl Suite {
    /// Every supported suite, in our order of preference when we offer.
    pub const ALL: [Suite; 3] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AeadAes128Gcm,
        Suite::AesCm128HmacSha1_32,
    ];

    /// The name used in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// Looks a suite up by its `a=crypto` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes.
    pub fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    pub(crate) fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }
}

/// A master key and salt for one suite. `Debug` does not print the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    suite: Suite,
    /// key || salt
    bytes: Vec<u8>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// Fresh random key and salt from the operating system's CSPRNG-seeded generator.
    pub fn generate(suite: Suite) -> Self {
        let mut bytes = vec![0u8; suite.key_len() + suite.salt_len()];
        rand::fill(&mut bytes[..]);
        Self { suite, bytes }
    }

    /// Builds key material from raw key and salt, checking their lengths.
    pub fn from_parts(suite: Suite, key: &[u8], salt: &[u8]) -> Result<Self> {
        if key.len() != suite.key_len() || salt.len() != suite.salt_len() {
            return Err(Error::Crypto("wrong key or salt length for the suite"));
        }
        let mut bytes = key.to_vec();
        bytes.extend_from_slice(salt);
        Ok(Self { suite, bytes })
    }

    /// Reads the key of a supported `a=crypto` line. `Ok(None)` for a suite we do
    /// not support or a form we skip (MKI, several keys, session parameters).
    pub fn from_attr(attr: &CryptoAttr) -> Result<Option<Self>> {
        let Some(suite) = Suite::from_name(&attr.suite) else {
            return Ok(None);
        };
        if !attr.session_params.is_empty() || attr.key_params.contains(';') {
            return Ok(None);
        }
        let inline = attr
            .key_params
            .strip_prefix("inline:")
            .ok_or(Error::Crypto("key method is not inline"))?;
        let mut fields = inline.split('|');
        let b64 = fields.next().unwrap_or("");
        let lifetime = fields.next();
        let mki = fields.next();
        if fields.next().is_some() {
            return Err(Error::Crypto("too many key fields"));
        }
        if let Some(lt) = lifetime {
            if lt.contains(':') {
                // Only `|MKI:len` given, without lifetime.
                return Ok(None);
            }
            let valid = match lt.strip_prefix("2^") {
                Some(exp) => exp.parse::<u8>().is_ok_and(|e| e <= 64),
                None => !lt.is_empty() && lt.bytes().all(|b| b.is_ascii_digit()),
            };
            if !valid {
                return Err(Error::Crypto("bad key lifetime"));
            }
        }
        if mki.is_some() {
            return Ok(None);
        }
        let bytes = LENIENT_B64
            .decode(b64)
            .map_err(|_| Error::Crypto("key is not base64"))?;
        if bytes.len() != suite.key_len() + suite.salt_len() {
            return Err(Error::Crypto("wrong key length for the suite"));
        }
        Ok(Some(Self { suite, bytes }))
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The master key.
    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.suite.key_len()]
    }

    /// The master salt.
    pub fn salt(&self) -> &[u8] {
        &self.bytes[self.suite.key_len()..]
    }

    /// The `a=crypto` attribute carrying this key under `tag`.
    pub fn to_attr(&self, tag: u32) -> CryptoAttr {
        CryptoAttr {
            tag,
            suite: self.suite.name().to_owned(),
            key_params: format!("inline:{}", STANDARD.encode(&self.bytes)),
            session_params: Vec::new(),
        }
    }
}

/// The crypto line chosen from an offer: its tag and the offerer's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The offer's tag, to be echoed in the answer.
    pub tag: u32,
    /// The offerer's sending key.
    pub remote: KeyMaterial,
}

/// Picks the first `a=crypto` line of an offer whose suite and form we support.
/// A supported line with a malformed key is an error.
pub fn negotiate(offer: &[CryptoAttr]) -> Result<Option<Chosen>> {
    for attr in offer {
        if let Some(remote) = KeyMaterial::from_attr(attr)? {
            return Ok(Some(Chosen {
                tag: attr.tag,
                remote,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(v: &str) -> CryptoAttr {
        CryptoAttr::parse(v).unwrap()
    }

    #[test]
    fn generated_keys_round_trip_through_sdp_and_differ() {
        for suite in Suite::ALL {
            let k = KeyMaterial::generate(suite);
            assert_eq!(k.key().len(), 16);
            assert_eq!(k.salt().len(), suite.salt_len());
            let back = KeyMaterial::from_attr(&k.to_attr(3)).unwrap().unwrap();
            assert_eq!(back, k);
            assert_ne!(KeyMaterial::generate(suite), k);
            assert!(!format!("{k:?}").contains(&STANDARD.encode(k.key())));
        }
    }

    #[test]
    fn negotiation_skips_unsupported_lines() {
        let offer = [
            attr(
                "1 AES_256_CM_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
            attr(
                "2 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
            ),
            attr("3 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^31"),
            attr("4 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"),
        ];
        let chosen = negotiate(&offer).unwrap().unwrap();
        assert_eq!(chosen.tag, 3);
        assert_eq!(chosen.remote.suite(), Suite::AesCm128HmacSha1_32);
        assert_eq!(negotiate(&offer[..2]).unwrap(), None);
        assert_eq!(negotiate(&[]).unwrap(), None);
    }

    #[test]
    fn gcm_key_with_or_without_padding() {
        let k = KeyMaterial::generate(Suite::AeadAes128Gcm);
        let a = k.to_attr(1);
        let unpadded = CryptoAttr {
            key_params: a.key_params.trim_end_matches('=').to_owned(),
            ..a.clone()
        };
        assert_eq!(KeyMaterial::from_attr(&unpadded).unwrap().unwrap(), k);
    }

    #[test]
    fn malformed_supported_keys_are_errors() {
        for v in [
            "1 AES_CM_128_HMAC_SHA1_80 inline:short",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^x",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1|2|3",
        ] {
            assert!(negotiate(&[attr(v)]).is_err(), "{v}");
        }
        assert!(KeyMaterial::from_parts(Suite::AeadAes128Gcm, &[0; 16], &[0; 14]).is_err());
    }
}
