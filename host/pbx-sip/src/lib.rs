//! SIP message framing, normalising and parsing for the PBX host.
//!
//! Everything that turns received bytes into a trusted [`rsip::SipMessage`]
//! lives here, and nothing else: no sockets, no clocks, no state. The
//! transport calls, per unit of input:
//!
//! 1. streams only: [`framer::next_frame`] to cut the byte stream into
//!    messages and keep-alives;
//! 2. [`peek_call_id`] to pick the shard that owns the call, and
//!    [`peek_header`] for other cheap looks (abuse checks), without parsing;
//! 3. [`parse`] on that shard; on error, [`error_response`] with
//!    [`Error::status`] to build the answer, or drop the message when it
//!    returns `None` ([`error_response_with`] adds headers such as
//!    `Retry-After` to a stateless `503`).
//!
//! ```
//! let raw = b"OPTIONS sip:pbx.example.com SIP/2.0\r\n\
//!     v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK7\r\n\
//!     f: <sip:alice@example.com>;tag=1\r\n\
//!     t: <sip:pbx.example.com>\r\n\
//!     i: ping-1\r\n\
//!     CSeq: 1 OPTIONS\r\n\
//!     l: 0\r\n\r\n";
//! assert_eq!(pbx_sip::peek_call_id(raw), Some(&b"ping-1"[..]));
//! let message = pbx_sip::parse(raw).expect("valid");
//! assert!(message.is_request());
//! ```
//!
//! # Design
//!
//! rsip 0.4 does the grammar, but it is unmaintained and strict about layout:
//! it ignores Content-Length, does not unfold continuation lines, does not
//! know compact header names, treats `To :` as an unknown header and does not
//! split `Via: a, b`. So parsing is three steps:
//! [`normalize`](normalize::normalize) rewrites the message into canonical
//! text (one pass, one output buffer, hard limits checked first), rsip parses
//! that, and [`parse`] validates what RFC 3261 §8.1.1 requires, forcing the
//! typed form of Via, From, To, CSeq and Contact so later code can rely on it.
//! Version and method are judged from the request line before rsip sees it,
//! so they map to 505 and 501 rather than a generic 400.
//!
//! Once parsed, headers are read with the typed accessors here rather than by
//! hand: [`SipUri`] (RFC 3261 §19.1, where rsip's reader is wrong about users
//! with dots or parameters and IPv6 hosts), [`NameAddr`] (From/To/Contact with
//! tag, `expires`, `+sip.instance`), [`Via`] (branch, received, rport) and
//! [`CSeq`].
//!
//! Errors are values sorted by fault ([`Error`]); no input makes any function
//! here panic (property tests and a fuzz target check that).

pub mod error;
pub mod framer;
mod message;
pub mod normalize;
pub mod params;
pub mod peek;
mod reply;
mod scan;
pub mod uri;

pub use error::{Error, Result};
pub use message::{parse, peek_call_id, peek_header};
pub use params::{CSeq, NameAddr, Via};
pub use peek::{RequestPeek, relayed_from};
pub use reply::{error_response, error_response_with};
pub use rsip;
pub use uri::SipUri;
