//! Fixture corpus: every `good/*.sip` parses with the expected key fields,
//! every `bad/NNN-*.sip` fails with status NNN.

use std::path::{Path, PathBuf};

use pbx_sip::framer::{Frame, next_frame};
use pbx_sip::rsip::prelude::{HasHeaders, HeadersExt, UntypedHeader};
use pbx_sip::rsip::{self, Header, Method, SipMessage};

#[derive(Debug)]
enum Start {
    Request(Method),
    Response(u16),
}

struct Good {
    file: &'static str,
    start: Start,
    call_id: &'static str,
    vias: usize,
    contacts: usize,
    body: &'static [u8],
}

const GOOD: &[Good] = &[
    Good {
        file: "ack-no-max-forwards",
        start: Start::Request(Method::Ack),
        call_id: "a84b4c76e66710@pc33.example.com",
        vias: 1,
        contacts: 0,
        body: b"",
    },
    Good {
        file: "compact-forms",
        start: Start::Request(Method::Message),
        call_id: "compact-1@pc33.example.com",
        vias: 1,
        contacts: 1,
        body: b"hello",
    },
    Good {
        file: "escaped-chars",
        start: Start::Request(Method::Invite),
        call_id: "esc01.239409asdfakjkn23onasd0-3234",
        vias: 1,
        contacts: 1,
        body: b"",
    },
    Good {
        file: "folded-headers",
        start: Start::Request(Method::Invite),
        call_id: "folded-1@pc33.example.com",
        vias: 1,
        contacts: 0,
        body: b"",
    },
    Good {
        file: "invite-basic",
        start: Start::Request(Method::Invite),
        call_id: "a84b4c76e66710@pc33.example.com",
        vias: 1,
        contacts: 1,
        body: b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.example.com\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    },
    Good {
        file: "leading-crlf",
        start: Start::Request(Method::Options),
        call_id: "lead-1@pc33.example.com",
        vias: 1,
        contacts: 0,
        body: b"",
    },
    Good {
        file: "many-unknown-headers",
        start: Start::Request(Method::Notify),
        call_id: "unknown-1@example.com",
        vias: 1,
        contacts: 0,
        body: b"",
    },
    Good {
        file: "mixed-case-names",
        start: Start::Request(Method::Bye),
        call_id: "case-1@pc33.example.com",
        vias: 1,
        contacts: 0,
        body: b"",
    },
    Good {
        file: "multi-value-via",
        start: Start::Request(Method::Invite),
        call_id: "multi-1@pc33.example.com",
        vias: 4,
        contacts: 2,
        body: b"",
    },
    Good {
        file: "no-content-length-datagram",
        start: Start::Request(Method::Message),
        call_id: "nocl-1@pc33.example.com",
        vias: 1,
        contacts: 0,
        body: b"whole rest",
    },
    Good {
        file: "register-star",
        start: Start::Request(Method::Register),
        call_id: "reg-star-1@pc33.example.com",
        vias: 1,
        contacts: 1,
        body: b"",
    },
    Good {
        file: "response-200",
        start: Start::Response(200),
        call_id: "a84b4c76e66710@pc33.example.com",
        vias: 2,
        contacts: 1,
        body: b"",
    },
    Good {
        file: "space-before-colon",
        start: Start::Request(Method::Options),
        call_id: "space-1@pc33.example.com",
        vias: 1,
        contacts: 0,
        body: b"",
    },
    Good {
        file: "trailing-bytes-after-body",
        start: Start::Request(Method::Message),
        call_id: "trail-1@pc33.example.com",
        vias: 1,
        contacts: 0,
        body: b"hello",
    },
];

/// Bad fixtures that must not get an answer (not a request, or the headers
/// needed to address an answer are missing or unusable).
const NO_ANSWER: &[&str] = &[
    "400-garbage-bytes",
    "400-missing-call-id",
    "400-missing-cseq",
    "400-missing-from",
    "400-missing-to",
    "400-missing-via",
    "400-nul-in-header",
    "400-bare-cr",
    "400-empty-call-id",
];

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("fixture"))
        })
        .collect()
}

fn count(message: &SipMessage, pick: fn(&Header) -> bool) -> usize {
    message.headers().iter().filter(|h| pick(h)).count()
}

#[test]
fn good_fixtures_parse_with_expected_fields() {
    let files = corpus("good");
    assert_eq!(files.len(), GOOD.len(), "every good fixture is described");
    for (name, raw) in &files {
        let want = GOOD
            .iter()
            .find(|g| g.file == name)
            .unwrap_or_else(|| panic!("{name} has no expectations"));
        let message = pbx_sip::parse(raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        match (&want.start, &message) {
            (Start::Request(m), SipMessage::Request(r)) => assert_eq!(&r.method, m, "{name}"),
            (Start::Response(c), SipMessage::Response(r)) => {
                assert_eq!(r.status_code.code(), *c, "{name}");
            }
            (want, _) => panic!("{name}: expected {want:?}"),
        }
        assert_eq!(
            message.call_id_header().unwrap().value(),
            want.call_id,
            "{name}"
        );
        assert_eq!(
            pbx_sip::peek_call_id(raw),
            Some(want.call_id.as_bytes()),
            "{name}"
        );
        assert_eq!(
            count(&message, |h| matches!(h, Header::Via(_))),
            want.vias,
            "{name}"
        );
        assert_eq!(
            count(&message, |h| matches!(h, Header::Contact(_))),
            want.contacts,
            "{name}"
        );
        assert_eq!(message.body(), want.body, "{name}");

        // Normalising is idempotent: the canonical form parses to the same message.
        let canonical = pbx_sip::normalize::normalize(raw).unwrap();
        assert_eq!(
            pbx_sip::parse(canonical.as_bytes()).as_ref(),
            Ok(&message),
            "{name}"
        );
    }
}

#[test]
fn good_fixture_details() {
    let get = |file: &str| {
        let raw = corpus("good")
            .into_iter()
            .find(|(n, _)| n == file)
            .unwrap()
            .1;
        pbx_sip::parse(&raw).unwrap()
    };
    let folded = get("folded-headers");
    let subject = folded.headers().iter().find_map(|h| match h {
        Header::Subject(s) => Some(s.value().to_owned()),
        _ => None,
    });
    assert_eq!(
        subject.as_deref(),
        Some("I know you're there, pull up a chair")
    );
    assert_eq!(folded.cseq_header().unwrap().value(), "1 INVITE");
    let to = rsip::prelude::ToTypedHeader::typed(folded.to_header().unwrap()).unwrap();
    assert_eq!(to.display_name.as_deref(), Some("Bob"));

    let multi = get("multi-value-via");
    let contacts: Vec<String> = multi
        .headers()
        .iter()
        .filter_map(|h| match h {
            Header::Contact(c) => Some(c.value().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        contacts,
        [
            "\"Doe, J\" <sip:alice@pc33.example.com>;q=0.7",
            "<sip:alice@192.0.2.5;transport=tcp>;q=0.3"
        ]
    );
    assert_eq!(count(&multi, |h| matches!(h, Header::Route(_))), 2);
    assert_eq!(count(&multi, |h| matches!(h, Header::RecordRoute(_))), 2);

    let compact = get("compact-forms");
    assert_eq!(
        compact.from_header().unwrap().value(),
        "<sip:alice@example.com>;tag=1"
    );
    assert!(compact.headers().iter().any(
        |h| matches!(h, Header::Other(n, v) if n == "Session-Expires" && v == "1800;refresher=uac")
    ));
}

#[test]
fn stream_framing_of_good_fixtures() {
    for (name, raw) in corpus("good") {
        let raw = &raw[..];
        match name.as_str() {
            "no-content-length-datagram" => assert!(next_frame(raw, 65_536).is_err(), "{name}"),
            "trailing-bytes-after-body" => {
                let Ok(Frame::Message(n)) = next_frame(raw, 65_536) else {
                    panic!("{name}")
                };
                assert!(raw[..n].ends_with(b"\r\n\r\nhello"), "{name}");
            }
            "leading-crlf" => {
                assert_eq!(next_frame(raw, 65_536), Ok(Frame::KeepAlive(4)), "{name}");
                assert_eq!(
                    next_frame(&raw[4..], 65_536),
                    Ok(Frame::Message(raw.len() - 4))
                );
            }
            _ => assert_eq!(
                next_frame(raw, 65_536),
                Ok(Frame::Message(raw.len())),
                "{name}"
            ),
        }
    }
}

#[test]
fn bad_fixtures_fail_with_expected_status() {
    let files = corpus("bad");
    assert!(files.len() >= 25);
    for (name, raw) in &files {
        let want: u16 = name[..3].parse().expect("NNN- prefix");
        let err = pbx_sip::parse(raw).expect_err(name);
        assert_eq!(err.status().0, want, "{name}: {err}");

        let reply = pbx_sip::error_response(raw, want, err.status().1);
        if NO_ANSWER.contains(&name.as_str()) {
            assert_eq!(reply, None, "{name}");
        } else {
            let reply = reply.unwrap_or_else(|| panic!("{name} gets an answer"));
            let head = format!("SIP/2.0 {} {}\r\n", want, err.status().1);
            assert!(reply.starts_with(head.as_bytes()), "{name}");
            assert!(reply.ends_with(b"\r\nContent-Length: 0\r\n\r\n"), "{name}");
        }
    }
}
