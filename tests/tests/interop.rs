//! Interoperability with real SIP clients from Debian packages, against a
//! server on its shipped defaults: two independent SIP stacks, baresip (libre)
//! and linphone (liblinphone and belle-sip, `linphone-cli`), register and call
//! each other, and themselves, over UDP, and over TLS with SRTP (the tenant's
//! media encryption set to required); audio flows both ways through the
//! relay, and the call record shows it. Over TLS with SRTP a passive tap on
//! loopback (a raw packet socket: root or CAP_NET_RAW) sees no SIP in clear
//! and no plain RTP; over UDP the same tap sees both, which shows it can tell.
//!
//! Also: a baresip phone registers against `pbx demo` as it ships and calls
//! another.
//!
//! A missing client or tap privilege skips a test with a notice, and fails it
//! on CI (`PBX_REQUIRE_TOOLS=1`; `PBX_REQUIRE_BARESIP=1` for baresip,
//! `PBX_REQUIRE_LINPHONE=1` for linphone).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::softphone::{Link, PhoneSpec, Softphone, free_udp_range};
use common::{ACME, password};
use pbx::server::{ServerHandle, TlsFiles, start};
use pbx_e2e::tap::{Proto, Tap, media_view, sip_in_clear};
use pbx_e2e::tools::installed;
use store::{CdrFilter, Disposition, MediaEncryption, Store, TenantId, TransportKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Baresip,
    Linphone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    TlsSrtp,
}

/// Only one call of this file at a time: the tap judges what it sees on the
/// shared loopback by port, and the phones' audio is paced in real time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn available(client: Client) -> bool {
    match client {
        Client::Baresip => installed("baresip", "baresip", "PBX_REQUIRE_BARESIP"),
        Client::Linphone => installed("linphonec", "linphone-cli", "PBX_REQUIRE_LINPHONE"),
    }
}

/// A raw-socket tap on the given ports, or `None` (a notice, or a failure on
/// CI) without the privilege for one.
fn tap(ports: Vec<u16>) -> Option<Tap> {
    match Tap::start(ports) {
        Ok(t) => Some(t),
        Err(e) => {
            assert!(
                std::env::var("PBX_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "the loopback tap needs root or CAP_NET_RAW ({e}) and PBX_REQUIRE_TOOLS=1"
            );
            eprintln!("SKIPPED: the loopback tap needs root or CAP_NET_RAW: {e}");
            None
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A server on the shipped defaults with SIP over UDP and TLS, tenant `acme`
/// with extensions 1000 and 1001.
struct Server {
    dir: tempfile::TempDir,
    store: Store,
    acme: TenantId,
    handle: Option<ServerHandle>,
    udp: SocketAddr,
    tls: SocketAddr,
    cert: std::path::PathBuf,
}

impl Server {
    async fn start(media: MediaEncryption) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
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
        store
            .set_media_encryption(acme, media)
            .await
            .expect("media encryption");
        let files = TlsFiles {
            cert: cert_path.clone(),
            key: key_path,
        };
        let opts = common::shipped_options(&["127.0.0.1:0"], &[], Some((&["127.0.0.1:0"], files)));
        let handle = start(opts, Store::open(&data).await.expect("reopen"))
            .await
            .expect("server starts");
        Server {
            udp: handle.addrs().udp[0],
            tls: handle.tls_addrs()[0],
            handle: Some(handle),
            dir,
            store,
            acme,
            cert: cert_path,
        }
    }

    /// Waits until `extensions` are registered over `transport`.
    async fn registered(
        &self,
        extensions: &[&str],
        transport: TransportKind,
        phones: &[&Softphone],
    ) {
        let deadline = tokio::time::Instant::now() + common::softphone::WAIT;
        loop {
            let regs = self
                .store
                .load_registrations(now_ms())
                .await
                .expect("registrations");
            let done = extensions.iter().all(|e| {
                regs.iter()
                    .any(|r| r.extension == *e && r.transport == transport)
            });
            if done {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let logs: Vec<String> = phones.iter().map(|p| p.log()).collect();
                panic!(
                    "{extensions:?} not registered over {transport:?}: {regs:?}\n{}",
                    logs.join("\n----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until each phone's RTP ports (`phones`, inclusive ranges) have sent
/// and received at least `packets` UDP packets.
async fn media_flowed(tap: &Tap, phones: &[(u16, u16)], packets: usize, logs: &[&Softphone]) {
    let deadline = tokio::time::Instant::now() + common::softphone::WAIT;
    loop {
        let counts: Vec<(usize, usize)> = phones
            .iter()
            .map(|(lo, hi)| {
                let ours = |p: u16| (*lo..=*hi).contains(&p);
                let sent = tap.count(|c| c.proto == Proto::Udp && ours(c.src.port()));
                let received = tap.count(|c| c.proto == Proto::Udp && ours(c.dst.port()));
                (sent, received)
            })
            .collect();
        if counts.iter().all(|(s, r)| *s >= packets && *r >= packets) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|p| p.log()).collect();
            panic!(
                "media did not flow both ways (sent, received per phone): {counts:?}\n{}",
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_phone(client: Client, spec: &PhoneSpec<'_>) -> Softphone {
    match client {
        Client::Baresip => Softphone::start_baresip(spec).await,
        Client::Linphone => Softphone::start_linphone(spec).await,
    }
}

/// `caller` (extension 1000) calls `callee` (1001, answering automatically)
/// over `transport`; audio flows for two seconds, then the caller hangs up.
async fn call(caller_client: Client, callee_client: Client, transport: Transport) {
    if !available(caller_client) || !available(callee_client) {
        return;
    }
    let _one_at_a_time = SERIAL.lock().await;
    let policy = match transport {
        Transport::Udp => MediaEncryption::default(),
        // What the TLS case is about: the tenant requires SRTP.
        Transport::TlsSrtp => MediaEncryption::Required,
    };
    let mut server = Server::start(policy).await;
    let (link, kind) = match transport {
        Transport::Udp => (Link::Udp(server.udp), TransportKind::Udp),
        Transport::TlsSrtp => (Link::Tls(server.tls), TransportKind::Tls),
    };
    let caller_rtp = free_udp_range(4);
    let callee_rtp = free_udp_range(4);
    let rtp_ports: Vec<u16> = (caller_rtp.0..=caller_rtp.1)
        .chain(callee_rtp.0..=callee_rtp.1)
        .collect();
    let sip_ports = [server.udp.port(), server.tls.port()];
    let Some(tap) = tap(sip_ports.iter().chain(&rtp_ports).copied().collect()) else {
        return;
    };

    let logs = server.dir.path().to_path_buf();
    let (pw0, pw1) = (password(ACME, "1000"), password(ACME, "1001"));
    let callee_spec = PhoneSpec {
        dir: &logs,
        name: "callee",
        extension: "1001",
        password: &pw1,
        domain: ACME,
        link,
        ca: Some(server.cert.as_path()),
        auto_answer: true,
        rtp_ports: callee_rtp,
    };
    let caller_spec = PhoneSpec {
        name: "caller",
        extension: "1000",
        password: &pw0,
        auto_answer: false,
        rtp_ports: caller_rtp,
        ..callee_spec
    };
    let mut callee = start_phone(callee_client, &callee_spec).await;
    let mut caller = start_phone(caller_client, &caller_spec).await;
    server
        .registered(&["1000", "1001"], kind, &[&caller, &callee])
        .await;

    caller.dial(&format!("sip:1001@{ACME}")).await;
    callee.established().await;
    caller.established().await;
    // Audio flows for a while in both directions (a second of 20 ms packets
    // each way at each phone, as the tap sees it).
    media_flowed(&tap, &[caller_rtp, callee_rtp], 50, &[&caller, &callee]).await;
    caller.hang_up().await;
    caller.closed().await;
    callee.closed().await;

    let handle = server.handle.take().expect("running");
    handle.shutdown().await.expect("clean shutdown");
    let captured = tap.stop();
    let logs = format!("{}\n----\n{}", caller.log(), callee.log());
    caller.stop().await;
    callee.stop().await;

    let cdrs = server
        .store
        .list_cdrs(server.acme, &CdrFilter::default())
        .await
        .expect("cdrs");
    assert_eq!(cdrs.len(), 1, "{cdrs:?}\n{logs}");
    let cdr = &cdrs[0];
    assert_eq!(cdr.disposition, Disposition::Answered, "{cdr:?}\n{logs}");
    assert_eq!(cdr.hangup_by, "caller");
    for (leg, m) in [("caller", cdr.media.caller), ("callee", cdr.media.callee)] {
        assert!(m.packets_in > 10, "{leg} sent media: {m:?}\n{logs}");
        assert!(m.packets_out > 10, "{leg} received media: {m:?}\n{logs}");
        assert_eq!(m.srtp_auth_failures, 0, "{leg}: {m:?}");
    }

    // What a passive observer of the loopback saw.
    let sip_clear = sip_in_clear(&captured);
    let media = media_view(&captured, &rtp_ports);
    let tls_packets = captured
        .iter()
        .filter(|c| c.touches(&[server.tls.port()]))
        .count();
    match transport {
        Transport::Udp => {
            // The tap can tell: plain SIP and plain audio are seen.
            assert!(!sip_clear.is_empty(), "the tap saw no SIP over UDP");
            assert!(media.g711 > 20, "the tap saw no RTP: {media:?}");
            assert!(
                media.audible * 10 >= media.g711 * 9,
                "plain RTP looks like audio: {media:?}"
            );
        }
        Transport::TlsSrtp => {
            assert!(tls_packets > 10, "the tap saw the TLS connections");
            assert!(
                sip_clear.is_empty(),
                "SIP in clear on the wire: {:?}",
                sip_clear
                    .first()
                    .map(|c| String::from_utf8_lossy(&c.payload))
            );
            assert!(media.g711 > 20, "the tap saw the media: {media:?}");
            assert_eq!(media.audible, 0, "plain audio on the wire: {media:?}");
        }
    }
}

/// baresip presses 2 at the auto attendant (`plugins/examples/ivr`) over TLS
/// with SRTP (the tenant requires it): the host answers, hears the RFC 4733
/// key through SRTP, and connects the caller to the baresip of extension
/// 1001, whose audio then flows through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_keys_reach_the_ivr_over_tls_with_srtp() {
    if !available(Client::Baresip) {
        return;
    }
    let _one_at_a_time = SERIAL.lock().await;
    let mut server = Server::start(MediaEncryption::Required).await;
    server
        .store
        .install_dialplan(server.acme, pbx_plugin::shipped::examples::IVR, 1)
        .await
        .expect("the IVR installs as acme's dial plan");
    // Open around the clock: the test is about the keys, not the hour.
    for (key, value) in [
        ("ivr.2", "1001"),
        ("hours.open", "0"),
        ("hours.close", "24"),
        ("hours.weekends", "1"),
    ] {
        server
            .store
            .plugin_kv_admin_put(server.acme, key, Some(value.as_bytes()))
            .await
            .expect("tenant storage");
    }
    common::applied(server.handle.as_ref().expect("running"), &server.store).await;
    let logs = server.dir.path().to_path_buf();
    let (pw0, pw1) = (password(ACME, "1000"), password(ACME, "1001"));
    let callee_spec = PhoneSpec {
        dir: &logs,
        name: "callee",
        extension: "1001",
        password: &pw1,
        domain: ACME,
        link: Link::Tls(server.tls),
        ca: Some(server.cert.as_path()),
        auto_answer: true,
        rtp_ports: free_udp_range(4),
    };
    let caller_spec = PhoneSpec {
        name: "caller",
        extension: "1000",
        password: &pw0,
        auto_answer: false,
        rtp_ports: free_udp_range(4),
        ..callee_spec
    };
    let mut callee = start_phone(Client::Baresip, &callee_spec).await;
    let mut caller = start_phone(Client::Baresip, &caller_spec).await;
    server
        .registered(&["1000", "1001"], TransportKind::Tls, &[&caller, &callee])
        .await;

    caller.dial(&format!("sip:5000@{ACME}")).await;
    caller.established().await;
    caller.press('2').await;
    callee.established().await;
    caller.hang_up().await;
    caller.closed().await;
    callee.closed().await;
    let handle = server.handle.take().expect("running");
    handle.shutdown().await.expect("clean shutdown");
    let logs = format!("{}\n----\n{}", caller.log(), callee.log());
    caller.stop().await;
    callee.stop().await;

    let cdrs = server
        .store
        .list_cdrs(server.acme, &CdrFilter::default())
        .await
        .expect("cdrs");
    assert_eq!(cdrs.len(), 1, "{cdrs:?}\n{logs}");
    let cdr = &cdrs[0];
    assert!(cdr.tags.contains(&"ivr:2".to_string()), "{cdr:?}\n{logs}");
    assert_eq!(cdr.disposition, Disposition::Answered);
    assert_eq!(cdr.media.caller.srtp_auth_failures, 0, "{cdr:?}");
    assert!(
        cdr.media.caller.packets_in > 10,
        "the caller's SRTP reached the host: {cdr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_baresip_over_udp() {
    call(Client::Baresip, Client::Baresip, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_baresip_over_tls_with_srtp() {
    call(Client::Baresip, Client::Baresip, Transport::TlsSrtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphone_calls_baresip_over_udp() {
    call(Client::Linphone, Client::Baresip, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_linphone_over_udp() {
    call(Client::Baresip, Client::Linphone, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphone_calls_baresip_over_tls_with_srtp() {
    call(Client::Linphone, Client::Baresip, Transport::TlsSrtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_linphone_over_tls_with_srtp() {
    call(Client::Baresip, Client::Linphone, Transport::TlsSrtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphone_calls_linphone_over_udp() {
    call(Client::Linphone, Client::Linphone, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphone_calls_linphone_over_tls_with_srtp() {
    call(Client::Linphone, Client::Linphone, Transport::TlsSrtp).await;
}

/// `pbx demo` as it ships (only its listening addresses moved to free ports):
/// two baresip phones register with the printed credentials and call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_and_calls_against_the_demo() {
    if !available(Client::Baresip) {
        return;
    }
    let _one_at_a_time = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let args = pbx::cli::ServeArgs {
        sip_udp: vec!["127.0.0.1:0".parse().unwrap()],
        sip_tcp: vec!["127.0.0.1:0".parse().unwrap()],
        api: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let mut settings = pbx::config::Settings::load_demo(&args).expect("demo settings");
    let data = dir.path().join("data");
    let store = Store::open(&data).await.expect("store");
    let mut demo = pbx::provision::demo(&store)
        .await
        .expect("demo provisioning");
    demo.admin_password = pbx::provision::demo_admin(&store)
        .await
        .expect("demo admin");
    settings.serve.api = settings.api.take().map(|config| pbx::server::ApiOptions {
        config,
        data_dir: data.clone(),
    });
    let mut printed = Vec::new();
    demo.print(&mut printed, &data, &settings.serve)
        .expect("printed");
    let printed = String::from_utf8(printed).expect("utf8");
    // The credentials as the demo prints them.
    let credential = |ext: &str| -> String {
        let line = printed
            .lines()
            .find(|l| l.contains(&format!("extension {ext} ")))
            .unwrap_or_else(|| panic!("no line for {ext}: {printed}"));
        line.split("password ")
            .nth(1)
            .expect("password printed")
            .trim()
            .to_owned()
    };
    let (pw0, pw1) = (credential("1000"), credential("1001"));
    let domain = printed
        .lines()
        .find_map(|l| l.strip_prefix("tenant acme, SIP domain and realm "))
        .expect("domain printed")
        .trim()
        .to_owned();
    let handle = start(settings.serve, Store::open(&data).await.expect("reopen"))
        .await
        .expect("demo serves");
    let udp = handle.addrs().udp[0];
    let logs = dir.path().to_path_buf();
    let callee_spec = PhoneSpec {
        dir: &logs,
        name: "demo-callee",
        extension: "1001",
        password: &pw1,
        domain: &domain,
        link: Link::Udp(udp),
        ca: None,
        auto_answer: true,
        rtp_ports: free_udp_range(4),
    };
    let caller_spec = PhoneSpec {
        name: "demo-caller",
        extension: "1000",
        password: &pw0,
        auto_answer: false,
        rtp_ports: free_udp_range(4),
        ..callee_spec
    };
    let mut callee = Softphone::start_baresip(&callee_spec).await;
    let mut caller = Softphone::start_baresip(&caller_spec).await;
    let deadline = tokio::time::Instant::now() + common::softphone::WAIT;
    loop {
        let regs = store.load_registrations(now_ms()).await.expect("regs");
        if ["1000", "1001"]
            .iter()
            .all(|e| regs.iter().any(|r| r.extension == *e))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "baresip did not register against the demo: {regs:?}\n{}\n----\n{}",
            caller.log(),
            callee.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    caller.dial(&format!("sip:1001@{domain}")).await;
    callee.established().await;
    caller.established().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    caller.hang_up().await;
    caller.closed().await;
    callee.closed().await;
    handle.shutdown().await.expect("clean shutdown");
    caller.stop().await;
    callee.stop().await;
    let tenant = store
        .tenant_by_name("acme")
        .await
        .expect("tenant")
        .expect("demo tenant");
    let cdrs = store
        .list_cdrs(tenant.id, &CdrFilter::default())
        .await
        .expect("cdrs");
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0].disposition, Disposition::Answered);
    assert!(cdrs[0].media.caller.packets_in > 10, "{cdrs:?}");
    assert!(cdrs[0].media.callee.packets_in > 10, "{cdrs:?}");
}
