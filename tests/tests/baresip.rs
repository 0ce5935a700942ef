//! Two real SIP clients (baresip, Debian package `baresip`) register over TLS
//! and call each other through the PBX with mandatory SRTP; audio flows both
//! ways through the relay and the call hangs up cleanly.
//!
//! Skips with a notice when baresip is not installed, and fails instead when
//! `PBX_REQUIRE_BARESIP=1` (CI installs it and sets the variable).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{ACME, password};
use pbx::server::{ServeOptions, TlsFiles, start};
use store::{CdrFilter, Disposition, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(15);

fn baresip_installed() -> bool {
    std::process::Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One baresip instance with its control connection (ctrl_tcp, netstrings).
struct Client {
    child: Child,
    ctrl: TcpStream,
    buf: Vec<u8>,
    name: String,
    log: std::path::PathBuf,
}

impl Client {
    async fn start(dir: &Path, name: &str, account: &str, ca: &Path) -> Client {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).expect("config dir");
        let ctrl_port = free_port();
        let config = format!(
            "poll_method\t\tpoll\n\
             sip_listen\t\t127.0.0.1:0\n\
             sip_cafile\t\t{ca}\n\
             audio_player\t\taubridge,{name}\n\
             audio_source\t\tausine,440\n\
             ausrc_srate\t\t48000\n\
             auplay_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             audio_alert\t\taubridge,{name}-alert\n\
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
            ca = ca.display(),
        );
        std::fs::write(home.join("config"), config).expect("config");
        std::fs::write(home.join("accounts"), format!("{account}\n")).expect("accounts");
        let log_path = dir.join(format!("{name}.log"));
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
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("baresip's control port opens");
        Client {
            child,
            ctrl,
            buf: Vec::new(),
            name: name.into(),
            log: log_path,
        }
    }

    async fn command(&mut self, command: &str, params: &str) {
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

    /// Waits for an event of `kind` (e.g. `REGISTER_OK`), failing on `fail`.
    async fn expect_event(&mut self, kind: &str, fail: &[&str]) {
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

#[tokio::test]
async fn two_baresip_phones_call_over_tls_with_srtp() {
    if !baresip_installed() {
        assert!(
            std::env::var("PBX_REQUIRE_BARESIP").as_deref() != Ok("1"),
            "baresip is required (PBX_REQUIRE_BARESIP=1) but not installed"
        );
        println!("SKIPPED: baresip is not installed (Debian package `baresip`)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("key");

    let data = dir.path().join("data");
    let store = Store::open(&data).await.expect("store");
    let acme = store.add_tenant("acme", ACME).await.expect("tenant").id;
    for ext in ["1000", "1001"] {
        store
            .add_extension(acme, ext, &password(ACME, ext))
            .await
            .expect("extension");
    }
    let mut opts = ServeOptions::new(
        vec!["127.0.0.1:0".parse().unwrap()],
        Vec::new(),
        common::core_config(),
    );
    opts.tls = vec!["127.0.0.1:0".parse().unwrap()];
    opts.tls_files = Some(TlsFiles {
        cert: cert_path.clone(),
        key: key_path,
    });
    let handle = start(opts, Store::open(&data).await.expect("reopen"))
        .await
        .expect("server starts");
    let tls = handle.tls_addrs()[0];

    let account = |ext: &str, extra: &str| {
        format!(
            "<sip:{ext}@{ACME};transport=tls>;auth_pass={pw};\
             outbound=\"sip:{tls};transport=tls\";regint=300;mediaenc=srtp-mand{extra}",
            pw = password(ACME, ext),
        )
    };
    let mut callee = Client::start(
        dir.path(),
        "callee",
        &account("1001", ";answermode=auto"),
        &cert_path,
    )
    .await;
    let mut caller = Client::start(dir.path(), "caller", &account("1000", ""), &cert_path).await;
    // Both register at start-up (before their control ports can report it):
    // wait until the PBX has stored both bindings.
    tokio::time::timeout(WAIT, async {
        loop {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let regs = store
                .load_registrations(now_ms)
                .await
                .expect("registrations");
            let registered = |ext: &str| regs.iter().any(|r| r.extension == ext);
            if registered("1000") && registered("1001") {
                assert!(
                    regs.iter()
                        .all(|r| r.transport == store::TransportKind::Tls),
                    "{regs:?}"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("both phones register over TLS");

    caller.command("dial", &format!("sip:1001@{ACME}")).await;
    callee
        .expect_event("CALL_ESTABLISHED", &["CALL_CLOSED"])
        .await;
    caller
        .expect_event("CALL_ESTABLISHED", &["CALL_CLOSED"])
        .await;
    // Let audio flow for a while in both directions (real time: media is paced).
    tokio::time::sleep(Duration::from_secs(2)).await;
    caller.command("hangup", "").await;
    caller.expect_event("CALL_CLOSED", &[]).await;
    callee.expect_event("CALL_CLOSED", &[]).await;

    handle.shutdown().await.expect("clean shutdown");
    for c in [&mut caller, &mut callee] {
        let _ = c.child.kill().await;
    }
    let logs = || {
        ["caller", "callee"]
            .iter()
            .map(|n| {
                std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let cdrs = store
        .list_cdrs(acme, &CdrFilter::default())
        .await
        .expect("cdrs");
    assert_eq!(cdrs.len(), 1, "{cdrs:?}\n{}", logs());
    let cdr = &cdrs[0];
    assert_eq!(cdr.disposition, Disposition::Answered);
    assert_eq!(cdr.hangup_by, "caller");
    for (leg, m) in [("caller", cdr.media.caller), ("callee", cdr.media.callee)] {
        assert!(m.packets_in > 10, "{leg} sent media: {m:?}\n{}", logs());
        assert!(
            m.packets_out > 10,
            "{leg} received media: {m:?}\n{}",
            logs()
        );
        assert_eq!(m.srtp_auth_failures, 0, "{leg}: {m:?}");
    }
}
