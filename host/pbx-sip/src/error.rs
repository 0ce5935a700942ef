//! The one error type of this crate and its mapping to a SIP status line.

/// Why a SIP message was refused, sorted by fault.
///
/// Every variant maps to the status a UAS answers with ([`Error::status`]); the
/// transport decides whether an answer is possible at all (see
/// [`error_response`](crate::error_response)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- the peer sent garbage: 400 ---
    /// The bytes are not a well-formed SIP message; the text says what was wrong.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A header every message of this kind must carry is absent or repeated.
    #[error("missing or repeated mandatory header {0}")]
    MissingHeader(&'static str),
    /// A header is present but its value does not parse.
    #[error("invalid {0} header")]
    InvalidHeader(&'static str),
    /// The method in CSeq differs from the method in the request line.
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    /// The body is shorter than the Content-Length header announces.
    #[error("body shorter than Content-Length")]
    Truncated,

    // --- the message exceeds what we accept: 513 ---
    /// A size or count limit was exceeded; the text names the limit.
    #[error("message too large: {0}")]
    TooLarge(&'static str),

    // --- well-formed, but we do not support it ---
    /// The SIP version is not SIP/2.0.
    #[error("SIP version not supported")]
    VersionNotSupported,
    /// The request method is a valid token that this host does not implement.
    #[error("request method not implemented")]
    UnknownMethod,
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The status code and reason phrase a UAS answers this error with.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Malformed(_)
            | Self::MissingHeader(_)
            | Self::InvalidHeader(_)
            | Self::CSeqMismatch
            | Self::Truncated => (400, "Bad Request"),
            Self::TooLarge(_) => (513, "Message Too Large"),
            Self::VersionNotSupported => (505, "Version Not Supported"),
            Self::UnknownMethod => (501, "Not Implemented"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_fault() {
        assert_eq!(Error::Malformed("x").status(), (400, "Bad Request"));
        assert_eq!(Error::MissingHeader("To").status().0, 400);
        assert_eq!(Error::InvalidHeader("Via").status().0, 400);
        assert_eq!(Error::CSeqMismatch.status().0, 400);
        assert_eq!(Error::Truncated.status().0, 400);
        assert_eq!(Error::TooLarge("x").status(), (513, "Message Too Large"));
        assert_eq!(
            Error::VersionNotSupported.status(),
            (505, "Version Not Supported")
        );
        assert_eq!(Error::UnknownMethod.status(), (501, "Not Implemented"));
    }

    #[test]
    fn display_names_the_detail() {
        assert_eq!(
            Error::InvalidHeader("CSeq").to_string(),
            "invalid CSeq header"
        );
    }
}
