//! The crate's one error type.

/// Everything that can go wrong in media anchoring.
///
/// Variants are grouped by fault: the peer sent something malformed (`Sdp`,
/// `Crypto`), we do not support what was asked or the policy forbids it
/// (`NotAcceptable`, `EncryptionRequired`), the caller used the API out of
/// order (`Protocol`), or a local resource failed (`PortsExhausted`, `Io`,
/// `Srtp`, `Config`). A SIP layer maps the first group to `400`/`488`, the
/// second to `488` and the rest to `500`. `Prompt` and `Wav` concern audio the
/// host was asked to play (an operator's file, a tone), never the peer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SDP body is malformed; `line` is 1-based.
    #[error("malformed SDP at line {line}: {reason}")]
    Sdp {
        /// 1-based line number of the offending line (0 for the body as a whole).
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `a=crypto` attribute is malformed.
    #[error("malformed a=crypto: {0}")]
    Crypto(&'static str),
    /// The SDP asks for something we do not support (no usable audio stream,
    /// an unsupported transport, SRTP that cannot be honoured).
    #[error("not acceptable: {0}")]
    NotAcceptable(&'static str),
    /// The policy requires SRTP on both legs and this offer or answer does not
    /// allow it.
    #[error("encryption required: {0}")]
    EncryptionRequired(&'static str),
    /// Offer/answer calls made out of order (an answer without an offer).
    #[error("offer/answer out of order: {0}")]
    Protocol(&'static str),
    /// Every port pair of the configured range is in use.
    #[error("no free media ports")]
    PortsExhausted,
    /// The relay configuration is invalid.
    #[error("invalid media configuration: {0}")]
    Config(&'static str),
    /// Creating an SRTP context failed.
    #[error("SRTP: {0}")]
    Srtp(#[from] webrtc_srtp::Error),
    /// A prompt cannot be played: an unsupported WAV format, a malformed or
    /// oversized file, an empty or too long prompt, or a full play queue.
    #[error("prompt: {0}")]
    Prompt(String),
    /// `hound` could not read a WAV file.
    #[error("WAV: {0}")]
    Wav(#[from] hound::Error),
    /// A socket operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The error type under the name the call path uses.
pub type MediaError = Error;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn sdp_err(line: usize, reason: &'static str) -> Error {
    Error::Sdp { line, reason }
}
