//! What the flood guard reads from a raw request before anything is parsed.
//!
//! Run: `cargo bench -p pbx-sip --bench guard_read`. `peek_to_tag` is the
//! guard's per-request cost ([`pbx_sip::RequestPeek`]: the method, the
//! User-Agent and the To header, the To read as a name-addr for a tag);
//! `peek_to_target` is what it does once, when it bans; `byte_scan`
//! is a hand-written tag scan over the raw To bytes (the guard's reading before
//! it used `NameAddr`), kept here only as a yardstick; `full_parse` is the
//! whole normaliser + rsip + validation the guard avoids.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

const INVITE: &[u8] = b"INVITE sip:1001@acme.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: \"Bob\" <sip:1001@acme.example>\r\n\
From: \"Alice\" <sip:1000@acme.example>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:1000@192.0.2.7:5060>\r\n\
User-Agent: friendly-scanner\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

/// A tag parameter after the URI, scanned byte by byte.
fn byte_scan(to: &[u8]) -> bool {
    let params = match to.iter().rposition(|&b| b == b'>') {
        Some(i) => to.get(i + 1..).unwrap_or_default(),
        None => to,
    };
    params.split(|&b| b == b';').skip(1).any(|p| {
        let p = p.trim_ascii_start();
        p.get(..3).is_some_and(|t| t.eq_ignore_ascii_case(b"tag"))
            && p.get(3..)
                .is_some_and(|r| r.trim_ascii_start().starts_with(b"="))
    })
}

fn guard_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("guard_read");
    g.bench_function("peek_to_tag", |b| {
        b.iter(|| {
            let peek = pbx_sip::RequestPeek::of(black_box(INVITE)).expect("a request");
            black_box((peek.user_agent, peek.has_to_tag()))
        })
    });
    g.bench_function("byte_scan", |b| {
        b.iter(|| {
            let to = pbx_sip::peek_header(black_box(INVITE), "To", Some(b't')).unwrap_or_default();
            black_box(byte_scan(to))
        })
    });
    g.bench_function("peek_to_target", |b| {
        b.iter(|| {
            let peek = pbx_sip::RequestPeek::of(black_box(INVITE)).expect("a request");
            black_box(peek.callee_target())
        })
    });
    g.bench_function("full_parse", |b| {
        b.iter(|| black_box(pbx_sip::parse(black_box(INVITE)).expect("parses")))
    });
    g.finish();
}

criterion_group!(benches, guard_read);
criterion_main!(benches);
