//! Real SIP clients from Debian packages, driven by the e2e tests: baresip
//! (libre) through its `ctrl_tcp` control port.
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
use tokio::process::{Child, Command};

/// How long a phone may take to register, answer or hang up.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Whether `program` is installed; otherwise a notice, or a failure when CI
/// requires every tool (`PBX_REQUIRE_TOOLS=1`, or `require_var=1`).
pub(crate) fn installed(program: &str, package: &str, require_var: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        for var in ["PBX_REQUIRE_TOOLS", require_var] {
            assert!(
                std::env::var(var).as_deref() != Ok("1"),
                "{program} (Debian package `{package}`) is not installed and {var}=1"
            );
        }
        eprintln!("SKIPPED: {program} is not installed (Debian package `{package}`)");
    }
    found
}

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
}

impl Softphone {
    pub(crate) async fn start_baresip(spec: &PhoneSpec<'_>) -> Softphone {
        Softphone::Baresip(Baresip::start(spec).await)
    }

    /// Calls `uri`.
    pub(crate) async fn dial(&mut self, uri: &str) {
        match self {
            Softphone::Baresip(b) => b.command("dial", uri).await,
        }
    }

    /// Waits until the phone's call is up with media running.
    pub(crate) async fn established(&mut self) {
        match self {
            Softphone::Baresip(b) => {
                b.expect_event("CALL_ESTABLISHED", &["CALL_CLOSED"]).await;
            }
        }
    }

    /// Hangs up the phone's call.
    pub(crate) async fn hang_up(&mut self) {
        match self {
            Softphone::Baresip(b) => b.command("hangup", "").await,
        }
    }

    /// Waits until the phone's call has ended.
    pub(crate) async fn closed(&mut self) {
        match self {
            Softphone::Baresip(b) => b.expect_event("CALL_CLOSED", &[]).await,
        }
    }

    /// The phone's log so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        let path = match self {
            Softphone::Baresip(b) => &b.log,
        };
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Stops the process.
    pub(crate) async fn stop(&mut self) {
        let child = match self {
            Softphone::Baresip(b) => &mut b.child,
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
