//! `srtp-load`: the SRTP load generator of `bench/media.sh --srtp`.
//!
//! One process plays both ends of N calls through a SIP server that anchors
//! media (the PBX, or Kamailio + rtpengine): it registers the callees, places
//! the calls at a steady rate with an `RTP/SAVP` PCMA offer carrying a fresh
//! SDES key (RFC 4568, AES_CM_128_HMAC_SHA1_80) per leg, answers them the
//! same way, streams SRTP both ways (50 packets/s, 160-byte A-law), hangs up
//! after the hold time and writes a JSON summary.
//!
//! # Layout
//!
//! - [`sip`]: message parsing, framing and building (no I/O);
//! - [`sdp`]: the offer/answer and the relay's address and key (no I/O);
//! - [`transport`]: one SIP flow per side (UDP socket or TLS connection) and
//!   routing by Call-ID;
//! - [`ua`]: REGISTER, the calling and the answering user agent;
//! - [`media`]: SRTP streams on one UDP socket per leg, paced by a few tasks.
//!
//! This is a loopback bench tool: over TLS it accepts any server certificate
//! (the bench's PBX uses a self-signed one made for the run).

mod media;
mod sdp;
mod sip;
mod transport;
mod ua;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::media::{LegStats, Media};
use crate::sdp::Suite;
use crate::transport::{Flow, Kind};
use crate::ua::{Binding, CallResult, Shared};

/// Places N SIP calls with SDES-SRTP on both legs through a media-anchoring
/// server and plays both ends; writes a JSON summary (calls, packets, loss,
/// SRTP authentication failures, jitter). Loopback bench tool: over TLS the
/// server's certificate is not verified.
///
/// Call k (0-based) is from user CALLERS_FROM+k to user CALLEES_FROM+k; the
/// callees are registered first (digest, password PASSWORD_PREFIX<user>) and
/// unregistered at the end. Callers' media sockets are on --uac-media-ip,
/// callees' on --uas-media-ip, one UDP socket (any port) per leg, so a capture
/// tells the ends apart by address. SSRCs: call k's caller stream has k+1,
/// its callee stream k+1 with the top bit set (equal low bits).
#[derive(Parser, Debug)]
#[command(
    name = "srtp-load",
    version,
    after_help = "Examples (bench/media.sh --srtp runs these per step):\n  \
        srtp-load --target 127.0.0.1:5061 --transport tls --calls 50 --rate 20 --hold 20 --report pbx.json\n  \
        srtp-load --target 127.0.0.1:5070 --transport udp --sip-port 6010 --calls 50 --rate 20 --hold 20 \\\n      \
        --callee-suite AES_CM_128_HMAC_SHA1_32 --clear-bindings --report kamailio.json\n\n\
        It exits when every call has ended (or at --deadline) and prints the JSON summary."
)]
struct Args {
    /// The server's SIP address (TLS or UDP).
    #[arg(long)]
    target: SocketAddr,
    /// SIP transport: tls (the PBX's --sip-tls) or udp.
    #[arg(long, value_enum, default_value = "tls")]
    transport: Kind,
    /// SIP domain of the users.
    #[arg(long, default_value = "bench.example")]
    domain: String,
    /// First calling user.
    #[arg(long, default_value_t = 1000)]
    callers_from: u64,
    /// First called user.
    #[arg(long, default_value_t = 11000)]
    callees_from: u64,
    /// Passwords are this prefix followed by the user.
    #[arg(long, default_value = "pw")]
    password_prefix: String,
    /// Calls to place.
    #[arg(long, default_value_t = 10)]
    calls: u64,
    /// Calls placed per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds each call is held after its ACK.
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Address of the SIP sockets (UDP) and of TLS connections.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// UDP only: the callees' SIP port; the callers use the next one.
    #[arg(long, default_value_t = 5999)]
    sip_port: u16,
    /// Address of the callers' media sockets.
    #[arg(long, default_value = "127.0.3.1")]
    uac_media_ip: IpAddr,
    /// Address of the callees' media sockets.
    #[arg(long, default_value = "127.0.3.2")]
    uas_media_ip: IpAddr,
    /// Raw A-law to send, looped (default: silence).
    #[arg(long)]
    audio: Option<std::path::PathBuf>,
    /// Suites a callee accepts from the relay's offer, in order of preference
    /// (comma-separated). Callers always offer AES_CM_128_HMAC_SHA1_80 only.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "AES_CM_128_HMAC_SHA1_80"
    )]
    callee_suite: Vec<Suite>,
    /// Pacer tasks sending the streams.
    #[arg(long, default_value_t = 2)]
    pacers: usize,
    /// Remove every binding of each callee (`Contact: *`) before registering
    /// it, so that no other contact (an earlier bench's) is rung too.
    #[arg(long)]
    clear_bindings: bool,
    /// Callee registrations in flight at once.
    #[arg(long, default_value_t = 200)]
    register_window: usize,
    /// Overall limit in seconds (default: ramp + hold + 90).
    #[arg(long)]
    deadline: Option<f64>,
    /// Write the JSON summary here too (it always goes to standard output).
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Rewrite this file every second with {"placed", "up", "ended"}.
    #[arg(long)]
    status: Option<std::path::PathBuf>,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.calls >= 1, "--calls must be at least 1");
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let audio = match &args.audio {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => Vec::new(),
    };
    let ramp = args.calls as f64 / args.rate;
    let deadline =
        started + Duration::from_secs_f64(args.deadline.unwrap_or(ramp + args.hold + 90.0));
    let shared = Arc::new(Shared {
        domain: args.domain.clone(),
        password_prefix: args.password_prefix.clone(),
        uac_media_ip: args.uac_media_ip,
        uas_media_ip: args.uas_media_ip,
        callees_from: args.callees_from,
        hold: Duration::from_secs_f64(args.hold),
        media: Media::start(args.pacers, audio),
        up: AtomicUsize::new(0),
        callee_suites: args.callee_suite.clone(),
        keys: Default::default(),
    });

    let port = |p: u16| match args.transport {
        Kind::Udp => SocketAddr::new(args.local_ip, p),
        Kind::Tls => SocketAddr::new(args.local_ip, 0),
    };
    let (incoming_tx, mut incoming) = mpsc::unbounded_channel();
    let uas = Flow::open(
        args.transport,
        port(args.sip_port),
        args.target,
        Some(incoming_tx),
    )
    .await?;
    let uac = Flow::open(
        args.transport,
        port(args.sip_port.wrapping_add(1)),
        args.target,
        None,
    )
    .await?;

    // 1. the callees register (after clearing what others bound to them)
    let callees: Vec<u64> = (0..args.calls).map(|k| args.callees_from + k).collect();
    let window = args.register_window;
    if args.clear_bindings {
        let (_, failures) = register_all(&uas, &shared, &callees, Binding::RemoveAll, window).await;
        if !failures.is_empty() {
            eprintln!("srtp-load: clearing bindings failed: {failures:?}");
        }
    }
    let (reg_ok, reg_failures) =
        register_all(&uas, &shared, &callees, Binding::Contact(3600), window).await;
    eprintln!(
        "srtp-load: {reg_ok} of {} callees registered ({:.1} s)",
        callees.len(),
        started.elapsed().as_secs_f64()
    );

    // 2. the callees answer
    let (answered_tx, mut answered_rx) = mpsc::unbounded_channel::<CallResult>();
    {
        let (uas, shared) = (uas.clone(), shared.clone());
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            while let Some(invite) = incoming.recv().await {
                let Some(call_id) = invite.call_id().map(str::to_owned) else {
                    continue;
                };
                if !seen.insert(call_id.clone()) {
                    continue; // a retransmission queued before the call was claimed
                }
                let rx = uas.claim(&call_id);
                let (uas, shared, done) = (uas.clone(), shared.clone(), answered_tx.clone());
                tokio::spawn(async move {
                    let _ = done.send(ua::answer(uas, shared, invite, rx).await);
                });
            }
        });
    }

    // 3. the calls, at the rate asked
    let ended = Arc::new(AtomicUsize::new(0));
    let placed = Arc::new(AtomicUsize::new(0));
    if let Some(path) = args.status.clone() {
        let (shared, ended, placed) = (shared.clone(), ended.clone(), placed.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let line = json!({
                    "elapsed_s": started.elapsed().as_secs_f64().round(),
                    "placed": placed.load(Ordering::Relaxed),
                    "up": shared.up.load(Ordering::Relaxed),
                    "ended": ended.load(Ordering::Relaxed),
                });
                let tmp = path.with_extension("tmp");
                if std::fs::write(&tmp, line.to_string()).is_ok() {
                    let _ = std::fs::rename(&tmp, &path);
                }
            }
        });
    }
    let ramp_start = Instant::now();
    let mut calls = Vec::with_capacity(args.calls as usize);
    for k in 0..args.calls {
        let at = ramp_start + Duration::from_secs_f64(k as f64 / args.rate);
        tokio::time::sleep_until(at).await;
        let (uac, shared, ended) = (uac.clone(), shared.clone(), ended.clone());
        let (caller, callee) = (args.callers_from + k, args.callees_from + k);
        placed.fetch_add(1, Ordering::Relaxed);
        calls.push(tokio::spawn(async move {
            let r = ua::call(uac, shared, k, caller, callee).await;
            ended.fetch_add(1, Ordering::Relaxed);
            r
        }));
    }
    let ramp_s = ramp_start.elapsed().as_secs_f64();
    let mut results = Vec::with_capacity(calls.len());
    for call in calls {
        let r = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => CallResult::failed("call task failed"),
            Err(_) => CallResult::failed("overall deadline"),
        };
        results.push(r);
    }
    // The callees' ends close with the BYEs; give the last ones a moment.
    let mut answers = Vec::new();
    let grace = (Instant::now() + Duration::from_secs(5)).min(deadline.max(Instant::now()));
    while answers.len() < results.len() {
        match tokio::time::timeout_at(grace, answered_rx.recv()).await {
            Ok(Some(a)) => answers.push(a),
            _ => break,
        }
    }

    // 4. the callees unregister
    let (unreg_ok, _) = register_all(&uas, &shared, &callees, Binding::Contact(0), window).await;

    let report = summary(
        &args,
        &results,
        &answers,
        reg_ok,
        &reg_failures,
        unreg_ok,
        ramp_s,
        started,
    );
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Registers (or unregisters) `users` with at most `window` in flight; the
/// number done and the failures by reason.
async fn register_all(
    flow: &Arc<Flow>,
    shared: &Arc<Shared>,
    users: &[u64],
    binding: Binding,
    window: usize,
) -> (u64, BTreeMap<String, u64>) {
    let gate = Arc::new(Semaphore::new(window.max(1)));
    let mut tasks = Vec::with_capacity(users.len());
    for &user in users {
        let permit = gate.clone().acquire_owned().await.expect("open semaphore");
        let (flow, shared) = (flow.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let r = ua::register(&flow, &shared, user, binding).await;
            drop(permit);
            r
        }));
    }
    let mut ok = 0;
    let mut failures = BTreeMap::new();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => ok += 1,
            Ok(Err(why)) => *failures.entry(why).or_default() += 1,
            Err(_) => *failures.entry("task failed".to_owned()).or_default() += 1,
        }
    }
    (ok, failures)
}

fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    Some((values[i.min(values.len() - 1)] * 1000.0).round() / 1000.0)
}

/// Sums the figures of one side's streams.
fn side(results: &[CallResult]) -> serde_json::Value {
    let legs = results.iter().filter_map(|r| r.media.as_ref());
    let passed_through = results.iter().filter(|r| r.key_passed_through).count();
    let mut t = LegStats::default();
    let mut jitter = Vec::new();
    let mut streams = 0;
    for l in legs {
        streams += 1;
        t.sent += l.sent;
        t.send_errors += l.send_errors;
        t.received += l.received;
        t.lost += l.lost;
        t.auth_failures += l.auth_failures;
        t.other_ssrc += l.other_ssrc;
        t.rtcp += l.rtcp;
        jitter.extend(l.jitter_ms);
    }
    let expected = t.received + t.lost;
    json!({
        "streams": streams,
        "packets_sent": t.sent,
        "send_errors": t.send_errors,
        "packets_received": t.received,
        "packets_lost": t.lost,
        "loss_pct": (expected > 0).then(|| (t.lost as f64 * 1e5 / expected as f64).round() / 1e3),
        "auth_failures": t.auth_failures,
        "peer_key_in_sdp": passed_through,
        "other_ssrc": t.other_ssrc,
        "rtcp_ignored": t.rtcp,
        "jitter_p50_ms": percentile(&mut jitter.clone(), 50.0),
        "jitter_p99_ms": percentile(&mut jitter, 99.0),
    })
}

#[allow(clippy::too_many_arguments)] // the run's figures, gathered once
fn summary(
    args: &Args,
    results: &[CallResult],
    answers: &[CallResult],
    reg_ok: u64,
    reg_failures: &BTreeMap<String, u64>,
    unreg_ok: u64,
    ramp_s: f64,
    started: Instant,
) -> serde_json::Value {
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for why in results.iter().filter_map(|r| r.failure.clone()) {
        *failures.entry(why).or_default() += 1;
    }
    let mut callee_failures: BTreeMap<String, u64> = BTreeMap::new();
    for why in answers.iter().filter_map(|a| a.failure.clone()) {
        *callee_failures.entry(why).or_default() += 1;
    }
    let ok = results.iter().filter(|r| r.failure.is_none()).count();
    json!({
        "transport": format!("{:?}", args.transport).to_lowercase(),
        "target": args.target.to_string(),
        "calls": {
            "attempted": results.len(),
            "ok": ok,
            "failed": results.len() - ok,
            "failures": failures,
            "callee_failures": callee_failures,
            "rate_asked": args.rate,
            "ramp_s": (ramp_s * 10.0).round() / 10.0,
            "hold_s": args.hold,
        },
        "registrations": { "ok": reg_ok, "failures": reg_failures, "unregistered": unreg_ok },
        "uac": side(results),
        "uas": side(answers),
        "elapsed_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}
