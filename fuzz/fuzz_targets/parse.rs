//! Feeds arbitrary bytes to everything in pbx-sip that sees network input.
//!
//! Run with `cargo fuzz run parse` from `fuzz/` (nightly toolchain); seed
//! the corpus from `host/pbx-sip/tests/corpus/good`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbx_sip::framer::{Frame, next_frame};

fuzz_target!(|data: &[u8]| {
    match pbx_sip::parse(data) {
        Ok(message) => {
            let canonical = pbx_sip::normalize::normalize(data).expect("parse implies normalize");
            assert_eq!(pbx_sip::parse(canonical.as_bytes()).as_ref(), Ok(&message));
        }
        Err(e) => {
            let (status, reason) = e.status();
            if let Some(reply) = pbx_sip::error_response(data, status, reason) {
                assert!(reply.ends_with(b"Content-Length: 0\r\n\r\n"));
            }
        }
    }
    let _ = pbx_sip::peek_call_id(data);

    // Frame the input as a stream until it runs out or breaks.
    let mut rest = data;
    while let Ok(frame) = next_frame(rest, 65_536) {
        let n = match frame {
            Frame::Message(n) | Frame::KeepAlive(n) => n,
            Frame::Incomplete => break,
        };
        assert!(n > 0 && n <= rest.len());
        rest = &rest[n..];
    }
});
