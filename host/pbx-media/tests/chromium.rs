//! A real browser on a relayed call: headless Chromium (its fake microphone)
//! offers WebRTC audio to the relay's browser leg, a plain UDP "phone" is the
//! other leg. Checks that Chromium takes our answer, completes ICE (ours is
//! ICE-lite) and DTLS, and that audio flows both ways: the phone receives
//! G.711 RTP from the browser, and the browser counts RTP the phone sent.
//!
//! Needs `chromium` on the PATH; without it the test says so and passes,
//! unless `PBX_REQUIRE_TOOLS=1` (then it fails).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use pbx_media::{EncryptionPolicy, Leg, MediaConfig, MediaRelay, Security};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// The page: fake microphone, offer, our answer, then report the connection
/// state and the RTP packets received once some arrived (or 10 s passed).
const PAGE: &str = r#"<!doctype html><html><body><script>
async function report(text) { await fetch('/result', {method: 'POST', body: text}); }
async function main() {
  const pc = new RTCPeerConnection();
  const media = await navigator.mediaDevices.getUserMedia({audio: true});
  media.getTracks().forEach(t => pc.addTrack(t, media));
  await pc.setLocalDescription(await pc.createOffer());
  const answer = await (await fetch('/offer', {method: 'POST', body: pc.localDescription.sdp})).text();
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  for (let i = 0; i < 100; i++) {
    let received = 0;
    (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp') received += s.packetsReceived; });
    if (pc.connectionState === 'connected' && received > 0) {
      return report('connected ' + received);
    }
    await new Promise(r => setTimeout(r, 100));
  }
  await report('failed ' + pc.connectionState);
}
main().catch(e => report('error ' + e));
</script></body></html>"#;

fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// One HTTP/1.1 request: method, path and body.
async fn read_request(
    stream: &mut BufReader<tokio::net::TcpStream>,
) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok()?;
    let mut parts = line.split(' ');
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut length = 0;
    loop {
        let mut header = String::new();
        stream.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((method, path, body))
}

async fn respond(stream: &mut BufReader<tokio::net::TcpStream>, kind: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let stream = stream.get_mut();
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
}

fn phone_answer(port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 126\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:126 telephone-event/8000\r\na=sendrecv\r\n"
    )
    .into_bytes()
}

fn pcmu(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x5eed_u32.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_talks_to_a_phone_through_the_relay() {
    let Some(chromium) = chromium() else {
        let required = std::env::var("PBX_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
        assert!(!required, "chromium is not installed (PBX_REQUIRE_TOOLS=1)");
        eprintln!("skipped: chromium is not installed");
        return;
    };
    let (relay, _events) = MediaRelay::new(MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        advertise_ip: None,
        port_min: 22000,
        port_max: 22009,
        idle_timeout: Duration::from_secs(30),
    })
    .unwrap();
    let call = relay.open_call().unwrap();
    let relay_b = SocketAddr::new("127.0.0.1".parse().unwrap(), call.local().b);
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_port = phone.local_addr().unwrap().port();

    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", http.local_addr().unwrap());
    let (results, mut result) = mpsc::channel::<String>(1);
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = http.accept().await {
            let mut stream = BufReader::new(stream);
            let Some((method, path, body)) = read_request(&mut stream).await else {
                continue;
            };
            match (method.as_str(), path.as_str()) {
                ("GET", "/") => respond(&mut stream, "text/html", PAGE.as_bytes()).await,
                ("POST", "/offer") => {
                    let plain = Security::default();
                    let policy = EncryptionPolicy::Optional;
                    let answer = call.offer_from(Leg::A, &body, plain, policy).and_then(|_| {
                        call.answer_from(Leg::B, &phone_answer(phone_port), plain, policy)
                    });
                    let answer = answer.unwrap_or_else(|e| format!("refused: {e}").into_bytes());
                    respond(&mut stream, "application/sdp", &answer).await;
                }
                ("POST", "/result") => {
                    respond(&mut stream, "text/plain", b"").await;
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let _ = results.send(text).await;
                }
                // favicon.ico and the like
                _ => respond(&mut stream, "text/plain", b"").await,
            }
        }
        drop(call);
    });

    let profile = tempfile::tempdir().unwrap();
    let _browser = tokio::process::Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The phone talks as a phone does, every 20 ms, and listens.
    let mut heard = 0u32;
    let mut payload_types = Vec::new();
    let mut buf = [0u8; 2048];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seq = 0u16;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    let mut outcome = None;
    // Until the browser has reported and the phone has heard it (or time is up).
    while outcome
        .as_ref()
        .is_none_or(|o: &String| o.starts_with("connected ") && heard == 0)
    {
        tokio::select! {
            _ = tick.tick() => {
                seq = seq.wrapping_add(1);
                let _ = phone.send_to(&pcmu(seq), relay_b).await;
            }
            r = phone.recv_from(&mut buf) => {
                if let Ok((n, _)) = r && n > 12 {
                    heard += 1;
                    payload_types.push(buf[1] & 0x7f);
                }
            }
            r = result.recv(), if outcome.is_none() => outcome = Some(r.unwrap_or_default()),
            () = &mut deadline => break,
        }
    }
    let outcome = outcome.unwrap_or_else(|| "no report in 30 s".to_owned());
    server.abort();
    eprintln!("browser: {outcome}; phone heard {heard} packets");
    assert!(
        outcome.starts_with("connected "),
        "the browser says: {outcome}"
    );
    assert!(heard > 0, "the phone heard nothing from the browser");
    assert!(
        payload_types.iter().all(|pt| *pt == 0 || *pt == 126),
        "only the answered formats reach the phone: {payload_types:?}"
    );
}
