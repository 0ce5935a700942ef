//! Stream framing for SIP over TCP and TLS (RFC 3261 §18.3, RFC 5626 §3.5.1).
//!
//! A stream carries messages back to back; each one's end is known only from
//! its Content-Length header. [`next_frame`] looks at the start of the receive
//! buffer and says how many bytes form the next unit:
//!
//! ```
//! use pbx_sip::framer::{next_frame, Frame};
//!
//! let buf = b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nhi";
//! assert_eq!(next_frame(buf, 65_536), Ok(Frame::KeepAlive(4)));
//! assert_eq!(next_frame(&buf[4..], 65_536), Ok(Frame::Message(buf.len() - 4)));
//! ```
//!
//! # Errors close the stream
//!
//! A [`FrameError`] means the byte stream cannot be resynchronised: without a
//! trustworthy Content-Length nobody knows where the next message starts. The
//! caller closes the connection (after answering with
//! [`FrameError::status`] if it wants to).

use crate::scan;

/// What the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// The first `n` bytes are one whole message, body included.
    Message(usize),
    /// The first `n` bytes are keep-alive line breaks to skip. `n == 4` is a
    /// CRLF CRLF ping (RFC 5626 §3.5.1) which must be answered with [`PONG`];
    /// anything shorter is a pong or stray line break and needs no answer.
    KeepAlive(usize),
    /// More bytes are needed before anything can be said.
    Incomplete,
}

impl Frame {
    /// Whether this is a CRLF CRLF keep-alive ping that must be answered
    /// with [`PONG`].
    pub fn is_ping(&self) -> bool {
        *self == Self::KeepAlive(PING.len())
    }
}

/// The keep-alive ping a client sends (RFC 5626 §3.5.1).
pub const PING: &[u8] = b"\r\n\r\n";
/// The answer to a keep-alive ping.
pub const PONG: &[u8] = b"\r\n";

/// Why a stream cannot be framed. The stream is lost after any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// `max_message` bytes arrived without the end of the header section.
    #[error("header section longer than the message limit")]
    HeadersTooLong,
    /// The message has no Content-Length, which streams require (RFC 3261 §18.3).
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
    /// The Content-Length value is not a decimal number that fits.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several Content-Length headers disagree.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    /// Header section plus announced body exceed `max_message`.
    #[error("message longer than the message limit")]
    TooLarge,
}

impl FrameError {
    /// The status and reason phrase for an answer sent before closing.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::HeadersTooLong | Self::TooLarge => (513, "Message Too Large"),
            Self::MissingContentLength
            | Self::InvalidContentLength
            | Self::ConflictingContentLength => (400, "Bad Request"),
        }
    }
}

/// Finds the next unit in a stream receive buffer.
///
/// `max_message` bounds a whole message (header section and body). Leading
/// line breaks come back as [`Frame::KeepAlive`]; a lone CRLF (or CR) at the
/// end of the buffer is [`Frame::Incomplete`] because it may be the first
/// half of a ping.
///
/// # Errors
///
/// See [`FrameError`]; every error means the stream must be closed.
pub fn next_frame(buf: &[u8], max_message: usize) -> Result<Frame, FrameError> {
    match buf {
        [] => return Ok(Frame::Incomplete),
        [b'\r', b'\n', b'\r', b'\n', ..] => return Ok(Frame::KeepAlive(4)),
        // Possibly the start of a ping: wait for the rest.
        [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => return Ok(Frame::Incomplete),
        [b'\r', b'\n', ..] => return Ok(Frame::KeepAlive(2)),
        [b'\r' | b'\n', ..] => return Ok(Frame::KeepAlive(1)),
        _ => {}
    }

    let window = buf.get(..max_message).unwrap_or(buf);
    let Some((head_end, body_start)) = scan::header_end(window) else {
        return if buf.len() >= max_message {
            Err(FrameError::HeadersTooLong)
        } else {
            Ok(Frame::Incomplete)
        };
    };

    let (_, section) = scan::split_start_line(buf.get(..head_end).unwrap_or_default());
    let mut length: Option<usize> = None;
    // Lines that are not headers are left for the parser to reject; they do
    // not affect where the message ends.
    for header in scan::Headers::new(section).flatten() {
        if !header.is("Content-Length", Some(b'l')) {
            continue;
        }
        let value = header
            .single_segment()
            .and_then(scan::parse_content_length)
            .ok_or(FrameError::InvalidContentLength)?;
        match length {
            Some(seen) if seen != value => return Err(FrameError::ConflictingContentLength),
            _ => length = Some(value),
        }
    }
    let length = length.ok_or(FrameError::MissingContentLength)?;

    let total = body_start
        .checked_add(length)
        .filter(|&t| t <= max_message)
        .ok_or(FrameError::TooLarge)?;
    if buf.len() < total {
        Ok(Frame::Incomplete)
    } else {
        Ok(Frame::Message(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 4096;

    fn msg(headers: &str, body: &str) -> Vec<u8> {
        format!("MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n{headers}\r\n{body}").into_bytes()
    }

    #[test]
    fn whole_message_with_body() {
        let m = msg("Content-Length: 5\r\n", "hello");
        assert_eq!(next_frame(&m, MAX), Ok(Frame::Message(m.len())));
    }

    #[test]
    fn message_followed_by_more_bytes() {
        let mut m = msg("Content-Length: 5\r\n", "hello");
        let len = m.len();
        m.extend_from_slice(b"INVITE sip:x");
        assert_eq!(next_frame(&m, MAX), Ok(Frame::Message(len)));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let m = msg("Content-Length: 5\r\n", "hello");
        for cut in 1..m.len() {
            assert_eq!(
                next_frame(&m[..cut], MAX),
                Ok(Frame::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn compact_and_odd_spacing_of_content_length() {
        let m = msg("l :  3 \r\n", "abc");
        assert_eq!(next_frame(&m, MAX), Ok(Frame::Message(m.len())));
        let m = msg("CONTENT-length:\t3\r\n", "abc");
        assert_eq!(next_frame(&m, MAX), Ok(Frame::Message(m.len())));
        let m = msg("Content-Length:\r\n 3\r\n", "abc");
        assert_eq!(next_frame(&m, MAX), Ok(Frame::Message(m.len())));
    }

    #[test]
    fn bare_lf_line_endings() {
        let m = b"OPTIONS sip:a@b SIP/2.0\nContent-Length: 2\n\nhi";
        assert_eq!(next_frame(m, MAX), Ok(Frame::Message(m.len())));
    }

    #[test]
    fn keep_alives() {
        assert_eq!(next_frame(b"\r\n\r\nINVITE", MAX), Ok(Frame::KeepAlive(4)));
        assert!(next_frame(b"\r\n\r\n", MAX).unwrap().is_ping());
        assert_eq!(next_frame(b"\r\nINVITE", MAX), Ok(Frame::KeepAlive(2)));
        assert!(!Frame::KeepAlive(2).is_ping());
        assert_eq!(next_frame(b"\r\n", MAX), Ok(Frame::Incomplete));
        assert_eq!(next_frame(b"\r\n\r", MAX), Ok(Frame::Incomplete));
        assert_eq!(next_frame(b"\nX", MAX), Ok(Frame::KeepAlive(1)));
        assert_eq!(next_frame(b"", MAX), Ok(Frame::Incomplete));
    }

    #[test]
    fn missing_content_length_is_an_error() {
        let m = msg("", "");
        assert_eq!(next_frame(&m, MAX), Err(FrameError::MissingContentLength));
    }

    #[test]
    fn bad_content_lengths() {
        for bad in ["abc", "-1", "1 2", "", "99999999999", "0x10"] {
            let m = msg(&format!("Content-Length: {bad}\r\n"), "");
            assert_eq!(
                next_frame(&m, MAX),
                Err(FrameError::InvalidContentLength),
                "{bad}"
            );
        }
        let m = msg("Content-Length: 1\r\nl: 2\r\n", "ab");
        assert_eq!(
            next_frame(&m, MAX),
            Err(FrameError::ConflictingContentLength)
        );
        let m = msg("Content-Length: 2\r\nl: 2\r\n", "ab");
        assert_eq!(next_frame(&m, MAX), Ok(Frame::Message(m.len())));
    }

    #[test]
    fn size_limits() {
        let m = msg("Content-Length: 5000\r\n", "");
        assert_eq!(next_frame(&m, MAX), Err(FrameError::TooLarge));
        let m = msg("Content-Length: 4294967295\r\n", "");
        assert_eq!(next_frame(&m, MAX), Err(FrameError::TooLarge));
        let endless = vec![b'a'; MAX];
        assert_eq!(next_frame(&endless, MAX), Err(FrameError::HeadersTooLong));
        assert_eq!(next_frame(&endless[..MAX - 1], MAX), Ok(Frame::Incomplete));
        assert_eq!(FrameError::TooLarge.status().0, 513);
        assert_eq!(FrameError::MissingContentLength.status().0, 400);
    }
}
