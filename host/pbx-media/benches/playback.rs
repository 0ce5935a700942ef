//! Playback pacing: N calls playing at once through the real relay on loopback.
//!
//! Run: `cargo bench -p pbx-media --bench playback` (the session counts default
//! to 100, 300 and 500; name others after `--`, e.g. `-- 50 1000`, and the
//! runtime's worker threads with `workers=N`, one per core by default).
//!
//! For each N the bench opens N calls on a multi-threaded runtime with one
//! worker per core, answers each caller (a loopback socket) at the host, and
//! plays a 3 s prompt on every call: first all started together ("aligned":
//! every call's packets are due at the same instants, the worst case), then
//! started evenly over one 20 ms interval ("spread", as calls that began at
//! random times would be). It prints how late the packets left — the instant
//! `send_to` returned minus the instant the packet was due, from
//! `MediaRelay::pacing` — as p50, p99, p99.9 and max, the packets the callers'
//! sockets received (read after the run, so receiving costs nothing during
//! it), and the process's CPU time over the run as a share of one core.
//! Loopback only; each run ends when every prompt has finished, or after 20 s.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use pbx_media::{CallMedia, EncryptionPolicy, Leg, MediaConfig, MediaEvent, MediaRelay, Prompt};

const PROMPT: Duration = Duration::from_secs(3);

fn cpu_time() -> Option<Duration> {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn offer(port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n"
    )
    .into_bytes()
}

/// Ports one run uses: a pair per leg, two legs a call, and some slack.
fn span(calls: usize) -> u16 {
    (4 * calls + 16) as u16
}

fn fmt(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
}

fn run(rt: &tokio::runtime::Runtime, calls: usize, spread: bool, port_min: u16) {
    let port_max = port_min + span(calls);
    let (relay, mut events) = MediaRelay::with_event_capacity(
        MediaConfig {
            bind_ip: "127.0.0.1".parse().expect("ip"),
            advertise_ip: None,
            port_min,
            port_max,
            idle_timeout: Duration::from_secs(3600),
        },
        4 * calls,
    )
    .expect("relay");
    let _guard = rt.enter();
    let mut open: Vec<(CallMedia, UdpSocket)> = Vec::with_capacity(calls);
    for _ in 0..calls {
        // Callers on another loopback address, so their ephemeral ports never
        // take the relay's.
        let caller = UdpSocket::bind("127.0.0.2:0").expect("caller socket");
        caller.set_nonblocking(true).expect("nonblocking");
        let call = relay.open_call().expect("call (raise `ulimit -n`?)");
        let port = caller.local_addr().expect("addr").port();
        call.answer_here(Leg::A, &offer(port), false, EncryptionPolicy::Optional)
            .expect("answer");
        open.push((call, caller));
    }
    let prompt = Prompt::tone(&[440], -10.0, PROMPT).expect("prompt");

    let cpu_before = cpu_time();
    let wall = Instant::now();
    let finished = rt.block_on(async {
        let start = tokio::time::Instant::now();
        for (i, (call, _)) in open.iter().enumerate() {
            if spread {
                let offset = Duration::from_millis(20) * i as u32 / calls as u32;
                tokio::time::sleep_until(start + offset).await;
            }
            call.play(Leg::A, prompt.clone()).expect("play");
        }
        let deadline = start + PROMPT + Duration::from_secs(17);
        let mut finished = 0;
        while finished < calls {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(MediaEvent::PromptFinished { .. })) => finished += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        finished
    });
    let wall = wall.elapsed();
    let cpu = match (cpu_before, cpu_time()) {
        (Some(a), Some(b)) => format!("{:.0}%", (b - a).as_secs_f64() / wall.as_secs_f64() * 100.0),
        _ => "-".into(),
    };

    let mut received = 0u64;
    let mut buf = [0u8; 2048];
    for (_, caller) in &open {
        while caller.recv_from(&mut buf).is_ok() {
            received += 1;
        }
    }
    let pacing = relay.pacing();
    println!(
        "{calls:>5}  {:<7}  {:>7}  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}  {:>4}  {finished}/{calls} finished, {} events dropped",
        if spread { "spread" } else { "aligned" },
        pacing.packets(),
        fmt(pacing.percentile(0.5)),
        fmt(pacing.percentile(0.99)),
        fmt(pacing.percentile(0.999)),
        fmt(Some(pacing.max())),
        received,
        cpu,
        relay.events_dropped(),
    );
    drop(open);
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
    let workers = std::env::args()
        .find_map(|a| a.strip_prefix("workers=")?.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "playback pacing: lateness of each send (send_to returned - due), {} s prompt per call, {workers} worker threads",
        PROMPT.as_secs()
    );
    // Other work on the machine shows in the tail: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("calls  start    packets        p50        p99      p99.9        max  received   cpu");
    // Each run on ports of its own, so none waits for the last run's sockets to close.
    let mut port = 30000u16;
    for &n in &counts {
        for spread in [false, true] {
            if u32::from(port) + u32::from(span(n)) > 65000 {
                port = 30000;
            }
            run(&rt, n, spread, port);
            port += span(n) + 16;
        }
    }
}
