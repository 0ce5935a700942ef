//! Property tests: nothing panics on any bytes, and stream framing gives back
//! exactly the messages that were concatenated.

use pbx_sip::framer::{Frame, next_frame};
use proptest::prelude::*;

const MAX: usize = 4096;

const SEEDS: &[&[u8]] = &[
    b"INVITE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP h:5060 ;branch=z9hG4bK1, SIP/2.0/TCP g\r\nTo :\r\n Bob <sip:bob@example.com>\r\nf: \"A, b\" <sip:a@example.com>;tag=1\r\ni: abc@h\r\nCSeq: 1 INVITE\r\nm: <sip:a@h>, *\r\nl: 4\r\n\r\nbody",
    b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    b"\r\n\r\nREGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\nTo: <sip:a@example.com>\nFrom: <sip:a@example.com>;tag=3\nCall-ID: r\nCSeq: 2 REGISTER\nContact: *\nContent-Length: 0\n\n",
];

/// Calls every entry point and checks the invariants that hold for any input.
fn exercise(raw: &[u8]) {
    if let Ok(message) = pbx_sip::parse(raw) {
        // Whatever parses, its canonical form parses to the same message.
        let canonical = pbx_sip::normalize::normalize(raw).expect("parse implies normalize");
        assert_eq!(pbx_sip::parse(canonical.as_bytes()).as_ref(), Ok(&message));
    }
    if let Err(e) = pbx_sip::parse(raw) {
        let (status, reason) = e.status();
        assert!((400..=599).contains(&status));
        if let Some(reply) = pbx_sip::error_response(raw, status, reason) {
            assert!(reply.starts_with(format!("SIP/2.0 {status} ").as_bytes()));
            assert!(reply.ends_with(b"Content-Length: 0\r\n\r\n"));
            assert!(!reply.contains(&0));
        }
    }
    let _ = pbx_sip::normalize::normalize(raw);
    match next_frame(raw, MAX) {
        Ok(Frame::Message(n)) => assert!(n > 0 && n <= raw.len() && n <= MAX),
        Ok(Frame::KeepAlive(n)) => assert!((1..=4).contains(&n) && n <= raw.len()),
        Ok(Frame::Incomplete) | Err(_) => {}
    }
    if let Some(id) = pbx_sip::peek_call_id(raw) {
        assert!(!id.is_empty());
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        b"\r\n".to_vec(),
        b"\r\n ".to_vec(),
        b",".to_vec(),
        b"\"".to_vec(),
        b"<".to_vec(),
        b">".to_vec(),
        b";".to_vec(),
        b":".to_vec(),
        b"\0".to_vec(),
        b"\r".to_vec(),
        b"\n\n".to_vec(),
        b" ".to_vec(),
        b"\\".to_vec(),
        b"\xff".to_vec(),
        b"9999999999".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![interesting, prop::collection::vec(any::<u8>(), 1..8)]
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut raw: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = raw.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if let Some(x) = raw.get_mut(i % len) {
                    *x = *b;
                }
            }
            Mutation::Insert(i, v) => {
                let at = i % (raw.len() + 1);
                raw.splice(at..at, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(raw.len());
                if at < end {
                    raw.drain(at..end);
                }
            }
            Mutation::Truncate(i) => raw.truncate(i % len),
        }
    }
    raw
}

/// One stream message with a random body, in random header spellings.
fn stream_message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["INVITE", "BYE", "OPTIONS", "MESSAGE"]),
        "[a-z0-9]{1,12}",
        prop::collection::vec(any::<u8>(), 0..200),
        prop::sample::select(vec!["Content-Length: ", "l:", "content-length :  "]),
        any::<bool>(),
    )
        .prop_map(|(method, call_id, body, cl, lf)| {
            let eol = if lf { "\n" } else { "\r\n" };
            let mut m = format!(
                "{method} sip:x@example.com SIP/2.0{eol}Via: SIP/2.0/TCP h;branch=z9hG4bK{call_id}{eol}\
                 i: {call_id}{eol}CSeq: 1 {method}{eol}{cl}{}{eol}{eol}",
                body.len()
            )
            .into_bytes();
            m.extend_from_slice(&body);
            m
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&raw);
    }

    #[test]
    fn sip_looking_bytes_never_panic(raw in "[A-Za-z :;,<>\"\\\\@./=\r\n\t0-9-]{0,400}") {
        exercise(raw.as_bytes());
    }

    #[test]
    fn mutated_messages_never_panic(
        seed in prop::sample::select(SEEDS.to_vec()),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        exercise(&apply(seed.to_vec(), &mutations));
    }

    #[test]
    fn framing_returns_the_concatenated_messages(
        messages in prop::collection::vec((stream_message(), 0usize..3), 1..6),
        chunk in 1usize..64,
    ) {
        let mut stream = Vec::new();
        for (m, keepalives) in &messages {
            for _ in 0..*keepalives {
                stream.extend_from_slice(b"\r\n\r\n");
            }
            stream.extend_from_slice(m);
        }

        // Feed the stream in chunks as a socket would, framing as we go.
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut pings = 0;
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match next_frame(&buf, MAX).expect("valid stream") {
                    Frame::Message(n) => {
                        got.push(buf.drain(..n).collect::<Vec<u8>>());
                    }
                    Frame::KeepAlive(n) => {
                        if Frame::KeepAlive(n).is_ping() {
                            pings += 1;
                        }
                        buf.drain(..n);
                    }
                    Frame::Incomplete => break,
                }
            }
        }
        prop_assert!(buf.is_empty());
        let want: Vec<Vec<u8>> = messages.iter().map(|(m, _)| m.clone()).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(pings, messages.iter().map(|(_, k)| k).sum::<usize>());
    }
}
