//! Recorded calls: N relayed calls at once, every one recording both legs,
//! through the real relay on loopback.
//!
//! Run: `cargo bench -p pbx-media --bench call_recording` (the call counts
//! default to 100, 300 and 500; name others after `--`, e.g. `-- 50 1000`).
//!
//! For each N the bench opens N calls whose two legs are loopback sockets,
//! starts recording each (`CallMedia::record_call`), and has one thread send a
//! 20 ms PCMU packet from every leg every 20 ms for 5 s (2·N·50 packets a
//! second into the relay, each relayed to the other leg and mixed into the
//! call's recording). It prints the packets the legs sent and got back, the
//! recorded seconds per call (5 when every packet was mixed in), the memory
//! the recordings hold, and the process's CPU time over the run (the sending
//! thread included) as a share of one core. Loopback only.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use pbx_media::{CallMedia, EncryptionPolicy, Leg, MediaConfig, MediaRelay, Security};

const RUN: Duration = Duration::from_secs(5);
const PLAIN: Security = Security {
    from_secure: false,
    to_secure: false,
    to_webrtc: false,
};

fn cpu_time() -> Option<Duration> {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn sdp(port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    .into_bytes()
}

struct Call {
    media: CallMedia,
    legs: [(UdpSocket, u16); 2],
}

fn run(rt: &tokio::runtime::Runtime, calls: usize, port_min: u16) {
    let (relay, _events) = MediaRelay::new(MediaConfig {
        bind_ip: "127.0.0.1".parse().expect("ip"),
        advertise_ip: None,
        port_min,
        port_max: port_min + (4 * calls + 16) as u16,
        idle_timeout: Duration::from_secs(3600),
    })
    .expect("relay");
    let _guard = rt.enter();
    let mut open = Vec::with_capacity(calls);
    for _ in 0..calls {
        let a = UdpSocket::bind("127.0.0.2:0").expect("socket");
        let b = UdpSocket::bind("127.0.0.2:0").expect("socket");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        let media = relay.open_call().expect("call (raise `ulimit -n`?)");
        let port = |s: &UdpSocket| s.local_addr().expect("addr").port();
        media
            .offer_from(Leg::A, &sdp(port(&a)), PLAIN, EncryptionPolicy::Optional)
            .expect("offer");
        media
            .answer_from(Leg::B, &sdp(port(&b)), PLAIN, EncryptionPolicy::Optional)
            .expect("answer");
        media.record_call(Duration::from_secs(3600));
        let local = media.local();
        open.push(Call {
            media,
            legs: [(a, local.a), (b, local.b)],
        });
    }

    let cpu_before = cpu_time();
    let wall = Instant::now();
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut buf = [0u8; 2048];
    let mut next = Instant::now();
    let mut seq = 0u16;
    while wall.elapsed() < RUN {
        for (i, call) in open.iter().enumerate() {
            for (leg, (socket, relay_port)) in call.legs.iter().enumerate() {
                let mut packet = vec![0x80, 0x00];
                packet.extend_from_slice(&seq.to_be_bytes());
                packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                packet.extend_from_slice(&((i * 2 + leg) as u32).to_be_bytes());
                packet.resize(12 + 160, 0x55);
                if socket.send_to(&packet, ("127.0.0.1", *relay_port)).is_ok() {
                    sent += 1;
                }
                while socket.recv_from(&mut buf).is_ok() {
                    received += 1;
                }
            }
        }
        seq = seq.wrapping_add(1);
        next += Duration::from_millis(20);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let wall = wall.elapsed();
    let cpu = match (cpu_before, cpu_time()) {
        (Some(a), Some(b)) => format!("{:.0}%", (b - a).as_secs_f64() / wall.as_secs_f64() * 100.0),
        _ => "-".into(),
    };
    for call in &open {
        for (socket, _) in &call.legs {
            while socket.recv_from(&mut buf).is_ok() {
                received += 1;
            }
        }
    }
    let recorded: Vec<f64> = open
        .iter()
        .filter_map(|c| c.media.take_call_recording())
        .map(|r| r.duration().as_secs_f64())
        .collect();
    let mean = recorded.iter().sum::<f64>() / recorded.len().max(1) as f64;
    let min = recorded.iter().copied().fold(f64::INFINITY, f64::min);
    let held = recorded.iter().sum::<f64>() * 16_000.0 / f64::from(1 << 20);
    println!(
        "{calls:>5}  {sent:>8}  {received:>8}  {mean:>6.2} s  {min:>6.2} s  {held:>7.1} MiB  {cpu:>5}"
    );
}

fn main() {
    let mut counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .filter(|n| *n > 0 && *n <= 2000)
        .collect();
    if counts.is_empty() {
        counts = vec![100, 300, 500];
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "recorded calls: both legs sending 20 ms PCMU for {} s, {workers} worker threads; load average at start: {}",
        RUN.as_secs(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("calls      sent  received  recorded/call (mean, min)  memory held    CPU");
    for (i, calls) in counts.into_iter().enumerate() {
        run(&rt, calls, 40_000 + (i as u16) * 4_100);
    }
}
