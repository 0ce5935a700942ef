//! Real SIP clients from Debian packages, driven by the e2e tests: baresip
//! (libre) through its `ctrl_tcp` control port, and linphone (liblinphone and
//! belle-sip, Debian's `linphone-cli`) through `linphonec`'s command line on
//! its standard input, its events read from what it prints.
//!
//! Both phones send a tone and play what they receive into something that is
//! not a sound card (baresip: `ausine` and `aubridge`; linphone: its file mode,
//! a WAV file played and the received audio recorded), so audio flows on a
//! machine without any.
//!
//! A missing client makes a test skip with a notice, or fail when CI says
//! every tool is installed (`PBX_REQUIRE_TOOLS=1`, or `PBX_REQUIRE_BARESIP=1`
//! for baresip). Every process is killed when its handle drops; every wait is
//! bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, Command};

/// How long a phone may take to register, answer or hang up.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A free TCP or UDP port on 127.0.0.1 (for a client's own listener).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `n` consecutive UDP ports free on 127.0.0.1 (a phone's RTP/RTCP range).
pub(crate) fn free_udp_range(n: u16) -> (u16, u16) {
    for _ in 0..200 {
        let start = 30_000 + rand::random::<u16>() % 20_000;
        let start = start - start % 2;
        let all_free =
            (start..start + n).all(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return (start, start + n - 1);
        }
    }
    panic!("no free UDP port range");
}

/// How a phone reaches the PBX.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Link {
    /// SIP over UDP, media in RTP (SRTP where both sides agree).
    Udp(SocketAddr),
    /// SIP over TLS (the PBX's certificate is `ca`), SRTP required.
    Tls(SocketAddr),
}

/// One phone to start.
pub(crate) struct PhoneSpec<'a> {
    /// Where its configuration and log go.
    pub(crate) dir: &'a Path,
    /// A name for logs and files.
    pub(crate) name: &'a str,
    pub(crate) extension: &'a str,
    pub(crate) password: &'a str,
    pub(crate) domain: &'a str,
    pub(crate) link: Link,
    /// The PBX's TLS certificate (trusted as the CA).
    pub(crate) ca: Option<&'a Path>,
    pub(crate) auto_answer: bool,
    /// The phone's RTP ports.
    pub(crate) rtp_ports: (u16, u16),
}

/// A running softphone.
pub(crate) enum Softphone {
    Baresip(Baresip),
    Linphone(Linphone),
}

impl Softphone {
    pub(crate) async fn start_baresip(spec: &PhoneSpec<'_>) -> Softphone {
        Softphone::Baresip(Baresip::start(spec).await)
    }

    pub(crate) async fn start_linphone(spec: &PhoneSpec<'_>) -> Softphone {
        Softphone::Linphone(Linphone::start(spec).await)
    }

    /// Calls `uri`.
    pub(crate) async fn dial(&mut self, uri: &str) {
        match self {
            Softphone::Baresip(b) => b.command("dial", uri).await,
            Softphone::Linphone(l) => l.command(&format!("call {uri}")).await,
        }
    }

    /// Waits until the phone's call is up with media running.
    pub(crate) async fn established(&mut self) {
        match self {
            Softphone::Baresip(b) => {
                b.expect_event("CALL_ESTABLISHED", &["CALL_CLOSED"]).await;
            }
            Softphone::Linphone(l) => {
                l.expect_line(
                    LinphoneEvent::STREAMS_RUNNING,
                    &[LinphoneEvent::ENDED, LinphoneEvent::ERROR],
                )
                .await;
            }
        }
    }

    /// Presses `key` in the phone's call (an RFC 4733 telephone event when
    /// the call negotiated them).
    pub(crate) async fn press(&mut self, key: char) {
        match self {
            Softphone::Baresip(b) => b.command("sndcode", &key.to_string()).await,
            Softphone::Linphone(l) => l.command(&format!("dtmf {key}")).await,
        }
    }

    /// Hangs up the phone's call.
    pub(crate) async fn hang_up(&mut self) {
        match self {
            Softphone::Baresip(b) => b.command("hangup", "").await,
            Softphone::Linphone(l) => l.command("terminate").await,
        }
    }

    /// Waits until the phone's call has ended.
    pub(crate) async fn closed(&mut self) {
        match self {
            Softphone::Baresip(b) => b.expect_event("CALL_CLOSED", &[]).await,
            Softphone::Linphone(l) => l.expect_line(LinphoneEvent::ENDED, &[]).await,
        }
    }

    /// The phone's log so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        let path = match self {
            Softphone::Baresip(b) => &b.log,
            Softphone::Linphone(l) => &l.log,
        };
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Stops the process.
    pub(crate) async fn stop(&mut self) {
        let child = match self {
            Softphone::Baresip(b) => &mut b.child,
            Softphone::Linphone(l) => &mut l.child,
        };
        let _ = child.kill().await;
    }
}

/// One baresip instance with its control connection (`ctrl_tcp`, netstrings).
pub(crate) struct Baresip {
    child: Child,
    ctrl: TcpStream,
    buf: Vec<u8>,
    name: String,
    log: PathBuf,
}

impl Baresip {
    /// Starts baresip with one account; it registers at start.
    pub(crate) async fn start(spec: &PhoneSpec<'_>) -> Baresip {
        let home = spec.dir.join(spec.name);
        std::fs::create_dir_all(&home).expect("config dir");
        let ctrl_port = free_port();
        let (rtp_min, rtp_max) = spec.rtp_ports;
        let mut config = format!(
            "poll_method\t\tpoll\n\
             sip_listen\t\t127.0.0.1:0\n\
             audio_player\t\taubridge,{name}\n\
             audio_source\t\tausine,440\n\
             ausrc_srate\t\t48000\n\
             auplay_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             audio_alert\t\taubridge,{name}-alert\n\
             rtp_ports\t\t{rtp_min}-{rtp_max}\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\tausine.so\n\
             module\t\t\taubridge.so\n\
             module\t\t\tsrtp.so\n\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n\
             net_interface\t\t127.0.0.1\n",
            name = spec.name,
        );
        if let Some(ca) = spec.ca {
            config.push_str(&format!("sip_cafile\t\t{}\n", ca.display()));
        }
        let answer = if spec.auto_answer {
            ";answermode=auto"
        } else {
            ""
        };
        let account = match spec.link {
            Link::Udp(server) => format!(
                "<sip:{ext}@{domain}>;auth_pass={pw};outbound=\"sip:{server}\";regint=300{answer}",
                ext = spec.extension,
                domain = spec.domain,
                pw = spec.password,
            ),
            Link::Tls(server) => format!(
                "<sip:{ext}@{domain};transport=tls>;auth_pass={pw};\
                 outbound=\"sip:{server};transport=tls\";regint=300;mediaenc=srtp-mand{answer}",
                ext = spec.extension,
                domain = spec.domain,
                pw = spec.password,
            ),
        };
        std::fs::write(home.join("config"), config).expect("config");
        std::fs::write(home.join("accounts"), format!("{account}\n")).expect("accounts");
        let log_path = spec.dir.join(format!("{}.log", spec.name));
        let log = std::fs::File::create(&log_path).expect("log");
        let child = Command::new("baresip")
            .arg("-s")
            .arg("-f")
            .arg(&home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("baresip starts");
        let ctrl = tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl_port)).await {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("baresip's control port opens");
        Baresip {
            child,
            ctrl,
            buf: Vec::new(),
            name: spec.name.into(),
            log: log_path,
        }
    }

    pub(crate) async fn command(&mut self, command: &str, params: &str) {
        let json = format!("{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"t\"}}");
        let framed = format!("{}:{json},", json.len());
        self.ctrl
            .write_all(framed.as_bytes())
            .await
            .expect("command sent");
    }

    /// The next netstring message from baresip.
    async fn next_message(&mut self) -> Option<String> {
        loop {
            if let Some(colon) = self.buf.iter().position(|b| *b == b':') {
                let len: usize = std::str::from_utf8(&self.buf[..colon]).ok()?.parse().ok()?;
                if self.buf.len() > colon + len + 1 {
                    let msg =
                        String::from_utf8_lossy(&self.buf[colon + 1..colon + 1 + len]).to_string();
                    self.buf.drain(..colon + len + 2);
                    return Some(msg);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.ctrl.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Waits for an event of `kind` (e.g. `CALL_ESTABLISHED`), failing on `fail`.
    pub(crate) async fn expect_event(&mut self, kind: &str, fail: &[&str]) {
        let name = self.name.clone();
        let wanted = format!("\"type\":\"{kind}\"");
        let found = tokio::time::timeout(WAIT, async {
            while let Some(msg) = self.next_message().await {
                if msg.contains(&wanted) {
                    return Ok(());
                }
                if let Some(f) = fail
                    .iter()
                    .find(|f| msg.contains(&format!("\"type\":\"{f}\"")))
                {
                    return Err(format!("{f}: {msg}"));
                }
            }
            Err("control connection closed".to_string())
        })
        .await;
        let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
        match found {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{name}: waiting for {kind}: {e}\n{}", log()),
            Err(_) => panic!("{name}: no {kind} within {WAIT:?}\n{}", log()),
        }
    }
}

/// What `linphonec` prints on a call's state changes (liblinphone's
/// `LinphoneCallState`, as the console client words them).
struct LinphoneEvent;

impl LinphoneEvent {
    /// `StreamsRunning`: answered, and media started.
    const STREAMS_RUNNING: &'static str = "Media streams established with ";
    /// `End`: "Call 1 with sip:... ended (No error)."
    const ENDED: &'static str = " ended (";
    /// `Error`: "Call 1 with sip:... error."
    const ERROR: &'static str = " error.";
}

/// The codecs linphone may offer or accept: G.711 only (what baresip loads
/// too), so that a passive observer can tell plain audio from encrypted.
/// Every codec linphone-cli ships is listed, the others disabled: one left
/// out would be added back enabled.
const LINPHONE_CODECS: &[(&str, u32, u32, bool)] = &[
    ("PCMU", 8000, 1, true),
    ("PCMA", 8000, 1, true),
    ("opus", 48000, 2, false),
    ("speex", 32000, 1, false),
    ("speex", 16000, 1, false),
    ("speex", 8000, 1, false),
    ("G729", 8000, 1, false),
    ("GSM", 8000, 1, false),
    ("G722", 8000, 1, false),
];

/// One `linphonec` with one account (from its configuration file: it
/// registers at start), its commands written to its standard input.
pub(crate) struct Linphone {
    child: Child,
    stdin: ChildStdin,
    name: String,
    log: PathBuf,
    /// How far into the log the waits have read.
    read: usize,
}

impl Linphone {
    /// Starts `linphonec` (auto-answering when the spec says so) in file
    /// mode: it sends a tone from a WAV file and records what it receives.
    pub(crate) async fn start(spec: &PhoneSpec<'_>) -> Linphone {
        let dir = spec.dir.join(spec.name);
        // liblinphone keeps its databases under $HOME/.local/share/linphone
        // and fails to start without that directory: a HOME per phone.
        std::fs::create_dir_all(dir.join(".local/share/linphone")).expect("linphone home");
        let tone = dir.join("tone.wav");
        std::fs::write(&tone, tone_wav(440.0, 30)).expect("tone");
        let received = dir.join("received.wav");
        let rc = dir.join("linphonerc");
        std::fs::write(&rc, linphonerc(spec)).expect("linphonerc");
        let log_path = spec.dir.join(format!("{}.log", spec.name));
        let log = std::fs::File::create(&log_path).expect("log");
        let mut command = Command::new("linphonec");
        command.arg("-c").arg(&rc);
        if spec.auto_answer {
            command.arg("-a");
        }
        let mut child = command
            .env("HOME", &dir)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("linphonec starts");
        let stdin = child.stdin.take().expect("linphonec's stdin");
        let mut phone = Linphone {
            child,
            stdin,
            name: spec.name.into(),
            log: log_path,
            read: 0,
        };
        // File mode: no sound card, a file for the microphone and one for
        // the speaker. linphonec reads these once it is up.
        phone.command("soundcard use files").await;
        phone.command(&format!("play {}", tone.display())).await;
        phone
            .command(&format!("record {}", received.display()))
            .await;
        phone
    }

    pub(crate) async fn command(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{}: command {line:?}: {e}", self.name));
        self.stdin.flush().await.expect("command sent");
    }

    /// Waits until linphonec prints a line holding `wanted` (after what
    /// earlier waits read), failing on a line holding one of `fail`.
    pub(crate) async fn expect_line(&mut self, wanted: &str, fail: &[&str]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let log = std::fs::read(&self.log).unwrap_or_default();
            let new = log.get(self.read..).unwrap_or_default();
            // Only whole lines: linphonec may be half-way through one.
            let complete = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let mut offset = self.read;
            for line in new[..complete].split_inclusive(|b| *b == b'\n') {
                offset += line.len();
                let line = String::from_utf8_lossy(line);
                if line.contains(wanted) {
                    self.read = offset;
                    return;
                }
                if let Some(f) = fail.iter().find(|f| line.contains(**f)) {
                    panic!(
                        "{}: waiting for {wanted:?}, saw {f:?}: {line}\n{}",
                        self.name,
                        String::from_utf8_lossy(&log)
                    );
                }
            }
            self.read = offset;
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{}: linphonec exited ({status}) waiting for {wanted:?}\n{}",
                    self.name,
                    String::from_utf8_lossy(&log)
                );
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{}: no {wanted:?} within {WAIT:?}\n{}",
                    self.name,
                    String::from_utf8_lossy(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// linphone's configuration for `spec`: one account registering through the
/// PBX (its only route), G.711, and over TLS the PBX's certificate as the
/// trusted root and SRTP required.
fn linphonerc(spec: &PhoneSpec<'_>) -> String {
    // LC_SIP_TRANSPORT_RANDOM (-1): a port of the system's choosing;
    // LC_SIP_TRANSPORT_DISABLED (0).
    let (udp, tls, proxy, encryption, mandatory) = match spec.link {
        Link::Udp(server) => (-1, 0, format!("sip:{server};transport=udp"), "none", 0),
        // The certificate names `localhost` (and 127.0.0.1, which belle-sip
        // does not match against an IP address SAN).
        Link::Tls(server) => (
            0,
            -1,
            format!("sip:localhost:{};transport=tls", server.port()),
            "srtp",
            1,
        ),
    };
    let (rtp_min, rtp_max) = spec.rtp_ports;
    let mut rc = format!(
        "[sip]\n\
         sip_port={udp}\n\
         sip_tcp_port=0\n\
         sip_tls_port={tls}\n\
         use_ipv6=0\n\
         default_proxy=0\n\
         register_only_when_network_is_up=0\n\
         ping_with_options=0\n\
         media_encryption={encryption}\n\
         media_encryption_mandatory={mandatory}\n\
         verify_server_certs=1\n\
         verify_server_cn=1\n"
    );
    if let Some(ca) = spec.ca {
        rc.push_str(&format!("root_ca={}\n", ca.display()));
    }
    rc.push_str(&format!(
        "\n[rtp]\n\
         audio_rtp_port={rtp_min}-{rtp_max}\n\
         \n[sound]\n\
         echocancellation=0\n\
         \n[video]\n\
         capture=0\n\
         display=0\n\
         automatically_initiate=0\n\
         automatically_accept=0\n\
         \n[proxy_0]\n\
         reg_proxy=<{proxy}>\n\
         reg_route=<{proxy};lr>\n\
         reg_identity=sip:{ext}@{domain}\n\
         reg_expires=300\n\
         reg_sendregister=1\n\
         publish=0\n\
         \n[auth_info_0]\n\
         username={ext}\n\
         passwd={pw}\n\
         domain={domain}\n",
        ext = spec.extension,
        domain = spec.domain,
        pw = spec.password,
    ));
    for (i, (mime, rate, channels, enabled)) in LINPHONE_CODECS.iter().enumerate() {
        rc.push_str(&format!(
            "\n[audio_codec_{i}]\nmime={mime}\nrate={rate}\nchannels={channels}\nenabled={}\n",
            u8::from(*enabled)
        ));
    }
    rc
}

/// A WAV file (16-bit mono PCM at 8 kHz) of a `hz` tone lasting `seconds`.
fn tone_wav(hz: f64, seconds: u32) -> Vec<u8> {
    const RATE: u32 = 8000;
    let samples = RATE * seconds;
    let data_len = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let x = (f64::from(i) * 2.0 * std::f64::consts::PI * hz / f64::from(RATE)).sin();
        wav.extend_from_slice(&((x * 8000.0) as i16).to_le_bytes());
    }
    wav
}
