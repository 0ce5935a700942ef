//! SRTP and relay throughput.
//!
//! Run: `cargo bench -p pbx-media --bench srtp`. Compare `srtp/protect+unprotect`
//! (160-byte payload, AES_CM_128_HMAC_SHA1_80, replay window on) with
//! `shared/bench/srtp/libsrtp_bench.c`; `relay/plain_pps` forwards RTP between two
//! loopback sockets through one call on a single-threaded runtime.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pbx_media::{
    Channel, EncryptionPolicy, KeyMaterial, Leg, MediaConfig, MediaRelay, Security, SrtpReceiver,
    SrtpSender, Suite,
};

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0xdeadbeef_u32.to_be_bytes());
    p.extend_from_slice(&[0u8; 160]);
    p
}

fn srtp(c: &mut Criterion) {
    let key = KeyMaterial::generate(Suite::AesCm128HmacSha1_80);
    let mut tx = SrtpSender::new(&key).expect("context");
    let mut rx = SrtpReceiver::new(&key).expect("context");
    let mut seq: u16 = 0;
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("protect+unprotect", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let enc = tx.protect(Channel::Rtp, &packet(seq)).expect("protect");
            black_box(rx.unprotect(Channel::Rtp, &enc).expect("unprotect"));
        })
    });
    g.finish();
}

fn sdp(port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
    .into_bytes()
}

fn relay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (relay, _events) = MediaRelay::new(MediaConfig {
        bind_ip: "127.0.0.1".parse().expect("ip"),
        advertise_ip: None,
        port_min: 23000,
        port_max: 23099,
        idle_timeout: Duration::from_secs(3600),
    })
    .expect("relay");
    let (call, a, b) = rt.block_on(async {
        let a = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let b = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let call = relay.open_call().expect("call");
        let plain = Security {
            from_secure: false,
            to_secure: false,
            to_webrtc: false,
        };
        let port = |s: &tokio::net::UdpSocket| s.local_addr().expect("addr").port();
        call.offer_from(Leg::A, &sdp(port(&a)), plain, EncryptionPolicy::Disabled)
            .expect("offer");
        call.answer_from(Leg::B, &sdp(port(&b)), plain, EncryptionPolicy::Disabled)
            .expect("answer");
        (call, a, b)
    });
    let to: SocketAddr = SocketAddr::new(call.local().ip, call.local().a);
    const WINDOW: u16 = 16;
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(u64::from(WINDOW)));
    g.bench_function("plain_pps", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut buf = [0u8; 2048];
                let start = Instant::now();
                for i in 0..iters {
                    for k in 0..WINDOW {
                        let seq = (i as u16).wrapping_mul(WINDOW).wrapping_add(k);
                        a.send_to(&packet(seq), to).await.expect("send");
                    }
                    for _ in 0..WINDOW {
                        black_box(b.recv_from(&mut buf).await.expect("recv"));
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    drop(call);
}

criterion_group!(benches, srtp, relay);
criterion_main!(benches);
