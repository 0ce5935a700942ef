//! Call recording end to end, real SIP and RTP over sockets: with the
//! tenant's `call_recording` on, both phones of an answered call hear the
//! recording notice before they hear each other, the call is recorded (both
//! directions, mixed), the recording downloads through the API as a WAV of
//! about the bridged talk, is encrypted on disk and is 404 to another
//! tenant; a tenant with the option off gets no recording.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ACME, BETA, Pbx, files_under, get_raw, http, tenant_admin_token};
use pbx_e2e::{Phone, SipMsg, Transport};
use tokio::net::UdpSocket;

/// How long each phone talks after the answer.
const TALK: Duration = Duration::from_secs(4);

/// The relay's `(address, port)` an SDP body points at.
fn media_target(msg: &SipMsg) -> SocketAddr {
    let body = msg.raw.split("\r\n\r\n").nth(1).expect("SDP");
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line");
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("m= line");
    format!("{}:{port}", ip.trim()).parse().expect("address")
}

/// What one phone's media socket saw.
#[derive(Debug, Default)]
struct Heard {
    /// Packets before the first one from the other phone (the host's own).
    before_peer: usize,
    /// Packets from the other phone.
    from_peer: usize,
    /// When the first packet from the other phone came.
    first_peer: Option<Instant>,
}

/// The tone each phone sends: its own frequency, so that the recording can
/// be checked for each (two equal tones could cancel out in the mix).
fn tone_hz(ssrc: u32) -> f64 {
    if ssrc == 0xA { 500.0 } else { 1100.0 }
}

/// How strongly `samples` (8 kHz) carry a tone of `hz`: about half the
/// tone's amplitude where it is present throughout, near zero where absent.
fn tone_level(samples: &[i16], hz: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (i, s) in samples.iter().enumerate() {
        let t = std::f64::consts::TAU * hz * i as f64 / 8000.0;
        re += f64::from(*s) * t.cos();
        im += f64::from(*s) * t.sin();
    }
    (re * re + im * im).sqrt() / samples.len().max(1) as f64
}

/// Sends [`TALK`] of a PCMU tone from `socket` to `to` as `ssrc`, paced at
/// 20 ms, while reading what comes back; the other phone sends as
/// `peer_ssrc`. The first packet makes the relay latch to `socket`.
async fn talk_and_listen(socket: UdpSocket, to: SocketAddr, ssrc: u32, peer_ssrc: u32) -> Heard {
    let mut heard = Heard::default();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let end = Instant::now() + TALK;
    let mut seq = 0u16;
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        tokio::select! {
            _ = tick.tick() => {
                let mut packet = vec![0x80, 0x00];
                packet.extend_from_slice(&seq.to_be_bytes());
                packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                packet.extend_from_slice(&ssrc.to_be_bytes());
                for i in 0..160u32 {
                    let phase = f64::from(u32::from(seq) * 160 + i) * tone_hz(ssrc) * std::f64::consts::TAU / 8000.0;
                    packet.push(pbx_media::G711::Pcmu.encode((phase.sin() * 6000.0) as i16));
                }
                seq = seq.wrapping_add(1);
                socket.send_to(&packet, to).await.unwrap();
            }
            got = socket.recv_from(&mut buf) => {
                let (n, _) = got.unwrap();
                if n < 12 {
                    continue;
                }
                let from = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                if from == peer_ssrc {
                    heard.from_peer += 1;
                    heard.first_peer.get_or_insert_with(Instant::now);
                } else if heard.from_peer == 0 {
                    heard.before_peer += 1;
                }
            }
        }
    }
    heard
}

/// `caller` calls `callee`, who answers; both talk for [`TALK`], then the
/// caller hangs up. Returns what each phone's media heard.
async fn call_and_talk(caller: &mut Phone, callee: &mut Phone) -> (Heard, Heard) {
    let mut call = caller.call(&callee.user.clone()).await.unwrap();
    let invite = callee.expect_request("INVITE").await.expect("rings");
    callee
        .respond(&invite, 200, "OK", Some("callee-tag"), true)
        .await
        .unwrap();
    let ok = caller.final_response(&call).await.unwrap();
    assert_eq!(ok.status(), Some(200), "{}", ok.raw);
    call.answered(&ok);
    caller.ack_2xx(&call).await.unwrap();
    callee.expect_request("ACK").await.unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (heard_a, heard_b) = tokio::join!(
        talk_and_listen(a, media_target(&ok), 0xA, 0xB),
        talk_and_listen(b, media_target(&invite), 0xB, 0xA),
    );
    caller.in_dialog(&call, "BYE", None).await.unwrap();
    caller.expect_status("BYE", 200).await.unwrap();
    let bye = callee.expect_request("BYE").await.unwrap();
    callee.respond(&bye, 200, "OK", None, false).await.unwrap();
    (heard_a, heard_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_is_announced_to_both_and_downloads_as_a_wav() {
    let mut pbx = Pbx::start_with_api().await;
    let set = common::cli(
        &pbx.store,
        &["tenant", "set", "acme", "--call-recording", "on"],
    )
    .await;
    assert!(set.contains("call recording on"), "{set}");
    pbx.applied().await;

    // Beta keeps the shipped default: off.
    let mut beta_caller = pbx.registered(Transport::Udp, BETA, "1000").await;
    let mut beta_callee = pbx.registered(Transport::Udp, BETA, "1001").await;
    let (beta_a, _) = call_and_talk(&mut beta_caller, &mut beta_callee).await;
    assert!(beta_a.from_peer > 0, "beta's phones talk: {beta_a:?}");
    assert_eq!(beta_a.before_peer, 0, "and hear no notice: {beta_a:?}");

    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;
    let (heard_a, heard_b) = call_and_talk(&mut caller, &mut callee).await;
    let hung_up = Instant::now();
    for (who, heard) in [("caller", &heard_a), ("callee", &heard_b)] {
        // The built-in notice is 1.2 s (60 packets); the phone latches the
        // relay with its first packet, so it hears most of it.
        assert!(
            heard.before_peer >= 20,
            "the {who} hears the notice before the other phone: {heard:?}"
        );
        assert!(heard.from_peer > 20, "then the other phone: {heard:?}");
    }
    let bridged = heard_a.first_peer.expect("bridged audio");

    // The recording is stored once the call's media is gone.
    let token = pbx.root_token().await;
    let list = format!("/api/v1/tenants/{}/recordings", pbx.acme);
    common::eventually(|| {
        let (api, token, list) = (pbx.api(), token.clone(), list.clone());
        async move {
            let (s, v) = http(api, "GET", &list, Some(&token), None).await;
            s == 200 && v.as_array().is_some_and(|a| !a.is_empty())
        }
    })
    .await;
    let (_, recordings) = http(pbx.api(), "GET", &list, Some(&token), None).await;
    let listed = recordings.as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{recordings}");
    assert_eq!(listed[0]["caller"], "1000");
    assert_eq!(listed[0]["callee"], "1001");
    let id = listed[0]["id"].as_str().expect("id").to_string();

    let (s, wav) = get_raw(pbx.api(), &format!("{list}/{id}"), &token).await;
    assert_eq!(s, 200);
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("a WAV file");
    assert_eq!(
        (reader.spec().sample_rate, reader.spec().channels),
        (8000, 1)
    );
    let secs = f64::from(reader.duration()) / 8000.0;
    let talked = hung_up.duration_since(bridged).as_secs_f64();
    assert!(
        (secs - talked).abs() < 0.7,
        "the recording is the bridged talk ({talked:.2} s), not {secs:.2} s"
    );
    let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    // Each phone's tone (amplitude 6000) is in the mix; a frequency neither
    // sent is not.
    let (a, b, none) = (
        tone_level(&samples, tone_hz(0xA)),
        tone_level(&samples, tone_hz(0xB)),
        tone_level(&samples, 1700.0),
    );
    assert!(
        a > 1000.0 && b > 1000.0 && none < 300.0,
        "both tones are in it: {a:.0} {b:.0} {none:.0}"
    );

    // Another tenant's admin: the same 404 as for a recording that does
    // not exist, through acme's path or its own.
    let beta_token = tenant_admin_token(&pbx, "beta").await;
    let (s_theirs, _) = get_raw(pbx.api(), &format!("{list}/{id}"), &beta_token).await;
    let own = format!("/api/v1/tenants/{}/recordings/{id}", pbx.beta);
    let (s_own, body_own) = get_raw(pbx.api(), &own, &beta_token).await;
    let missing = format!("/api/v1/tenants/{}/recordings/nope", pbx.beta);
    let (s_missing, body_missing) = get_raw(pbx.api(), &missing, &beta_token).await;
    assert_eq!((s_theirs, s_own, s_missing), (404, 404, 404));
    assert_eq!(body_own, body_missing, "no existence oracle");

    // On disk it is not a WAV: it is sealed with acme's key.
    let stored: Vec<_> = files_under(&pbx.data_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&id))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let bytes = std::fs::read(&stored[0]).unwrap();
    assert!(bytes.len() > 1000);
    assert!(!bytes.starts_with(b"RIFF"));
    assert!(hound::WavReader::new(std::io::Cursor::new(&bytes)).is_err());

    // Beta, with the option off, has nothing recorded.
    pbx.stop().await;
    assert!(
        pbx.store
            .call_recordings(pbx.beta)
            .await
            .expect("beta's")
            .is_empty()
    );
}
