//! Hostile and broken input over real sockets: every message gets a clear answer or
//! is dropped, and the server keeps serving.

mod common;

use common::{ACME, Pbx};
use pbx_e2e::{SipMsg, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const VIA: &str = "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbad1";
const DIALOG: &str =
    "From: <sip:1000@acme.example>;tag=1\r\nTo: <sip:1001@acme.example>\r\nCall-ID: bad-1\r\n";

fn cases() -> Vec<(&'static str, Vec<u8>, Option<u16>)> {
    let big = "a".repeat(64 * 1024);
    vec![
        ("garbage", b"\x00\x01\xffhello there\r\n\r\n".to_vec(), None),
        ("truncated", b"INVITE sip:1001@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP".to_vec(), None),
        (
            "bad content-length",
            format!("OPTIONS sip:acme.example SIP/2.0\r\n{VIA}\r\n{DIALOG}CSeq: 1 OPTIONS\r\nContent-Length: 900\r\n\r\nshort").into_bytes(),
            Some(400),
        ),
        (
            "missing CSeq",
            format!("OPTIONS sip:acme.example SIP/2.0\r\n{VIA}\r\n{DIALOG}Content-Length: 0\r\n\r\n").into_bytes(),
            None,
        ),
        (
            "64 KiB header",
            format!("OPTIONS sip:acme.example SIP/2.0\r\n{VIA}\r\n{DIALOG}CSeq: 1 OPTIONS\r\nX-Big: {big}\r\nContent-Length: 0\r\n\r\n").into_bytes(),
            None,
        ),
        (
            "unknown method",
            format!("FROBNICATE sip:acme.example SIP/2.0\r\n{VIA}\r\n{DIALOG}CSeq: 1 FROBNICATE\r\nContent-Length: 0\r\n\r\n").into_bytes(),
            Some(501),
        ),
        (
            "wrong version",
            format!("OPTIONS sip:acme.example SIP/3.0\r\n{VIA}\r\n{DIALOG}CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").into_bytes(),
            Some(505),
        ),
    ]
}

async fn still_serving(pbx: &Pbx) {
    let mut p = pbx.phone(Transport::Udp, ACME, "1000").await;
    let r = p.register(300).await.expect("server still answers");
    assert_eq!(r.status(), Some(200));
}

#[tokio::test]
async fn broken_datagrams_get_an_answer_or_are_dropped() {
    let mut pbx = Pbx::start().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (name, bytes, expected) in cases() {
        // A 64 KiB datagram may exceed what loopback carries; that is a drop too.
        if sock.send_to(&bytes, pbx.udp).await.is_err() {
            continue;
        }
        if let Some(status) = expected {
            let mut buf = vec![0u8; 65536];
            let (n, _) = tokio::time::timeout(pbx_e2e::WAIT, sock.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{name}: no answer"))
                .unwrap();
            let m = SipMsg::parse(&String::from_utf8_lossy(&buf[..n])).unwrap();
            assert_eq!(m.status(), Some(status), "{name}: {}", m.raw);
            assert_eq!(m.call_id(), "bad-1", "{name}: answer copies the Call-ID");
        }
    }
    still_serving(&pbx).await;
    pbx.stop().await;
}

#[tokio::test]
async fn broken_stream_is_closed_without_harm() {
    let mut pbx = Pbx::start().await;
    for (name, bytes, _) in cases() {
        let mut s = TcpStream::connect(pbx.tcp).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        // Half-close so a truncated message can never be completed.
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(pbx_e2e::WAIT, s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "{name}: the server ends the stream");
    }
    still_serving(&pbx).await;
    pbx.stop().await;
}
