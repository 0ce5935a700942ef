//! Abuse defenses against real attack tools: Debian's `sipvicious` (svmap,
//! svwar, svcrack) and a sipp flood, all from 127.0.0.1, while a legitimate
//! phone on 127.0.0.2 keeps registering and calling. The server under attack
//! runs the shipped guard (on, trusting nothing, 10 failures ban a source).
//! A missing tool skips its test with a notice, or fails it when
//! `PBX_REQUIRE_TOOLS=1` (CI installs them). Every external process runs
//! under a time limit and is killed at the end.

mod common;

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{ACME, Pbx, password};
use pbx::server::start;
use pbx_e2e::{Phone, SipMsg, Transport};
use store::Store;

const ATTACKER: &str = "127.0.0.1";
const LEGIT: &str = "127.0.0.2";

/// Failures that ban a source: the shipped default.
fn max_failures() -> u32 {
    pbx::server::GuardOptions::default().bans.max_failures
}

/// Whether `tool` is installed; otherwise a notice (or a failure when
/// `PBX_REQUIRE_TOOLS=1`).
fn have(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("PBX_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{tool} is not installed and PBX_REQUIRE_TOOLS=1"
        );
        eprintln!("SKIPPED: {tool} is not installed (Debian: sipvicious / sip-tester)");
    }
    found
}

/// Runs `program args` for at most `limit`, killing it then; returns stdout
/// and stderr together.
async fn run_bounded(program: &str, args: &[String], limit: Duration) -> String {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf).await;
        buf
    };
    let out = tokio::spawn(read(Box::new(stdout)));
    let err = tokio::spawn(read(Box::new(stderr)));
    if tokio::time::timeout(limit, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    let mut text = String::from_utf8_lossy(&out.await.unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(&err.await.unwrap_or_default()));
    text
}

/// The fixture's PBX: the shipped guard, or (`enabled` false) the guard
/// switched off, to show what the tools find without it.
async fn guarded(enabled: bool) -> Pbx {
    let mut pbx = Pbx::start().await;
    if !enabled {
        pbx.stop().await;
        let mut opts = common::shipped_options(&["127.0.0.1:0"], &["127.0.0.1:0"], None);
        // The guard's switch is what the comparison is about.
        opts.guard.enabled = false;
        pbx.serve_with(opts).await;
    }
    pbx
}

/// Waits (bounded) until the store holds a ban of `ip`; returns it.
async fn stored_ban(pbx: &Pbx, ip: &str) -> store::BanRecord {
    let ip: IpAddr = ip.parse().unwrap();
    for _ in 0..100 {
        let bans = pbx.store.list_bans(now_ms()).await.unwrap();
        if let Some(b) = bans.into_iter().find(|b| b.ip == ip) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no stored ban of {ip}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A phone of `ext` on 127.0.0.2.
async fn legit_phone(pbx: &Pbx, ext: &str) -> Phone {
    Phone::new(
        Transport::Udp,
        LEGIT,
        pbx.udp,
        ext,
        &password(ACME, ext),
        ACME,
    )
    .await
    .expect("phone on 127.0.0.2")
}

/// 1000 on 127.0.0.2 registers and calls 1001 (also on 127.0.0.2), which
/// answers; the call is hung up.
async fn legit_call(pbx: &Pbx) {
    let mut caller = legit_phone(pbx, "1000").await;
    let mut callee = legit_phone(pbx, "1001").await;
    for p in [&mut caller, &mut callee] {
        let r = p.register(300).await.expect("register from 127.0.0.2");
        assert_eq!(r.status(), Some(200), "{}", r.raw);
    }
    let mut call = caller.call("1001").await.expect("call");
    let invite = callee.expect_request("INVITE").await.expect("INVITE");
    callee
        .respond(&invite, 200, "OK", Some("t-legit"), true)
        .await
        .unwrap();
    let ok = caller.expect_status("INVITE", 200).await.expect("answered");
    call.answered(&ok);
    caller.ack_2xx(&call).await.unwrap();
    callee.expect_request("ACK").await.expect("ACK relayed");
    caller.in_dialog(&call, "BYE", None).await.unwrap();
    let bye = callee.expect_request("BYE").await.expect("BYE relayed");
    callee.respond(&bye, 200, "OK", None, false).await.unwrap();
    caller
        .expect_status("BYE", 200)
        .await
        .expect("BYE answered");
}

fn port_args(pbx: &Pbx) -> Vec<String> {
    vec!["-p".into(), pbx.udp.port().to_string()]
}

#[tokio::test]
async fn svmap_learns_no_version_and_is_banned_on_sight() {
    if !have("svmap") {
        return;
    }
    // Unguarded, svmap finds the PBX but no user agent or version.
    let mut open = guarded(false).await;
    let mut args = port_args(&open);
    args.push(ATTACKER.into());
    let out = run_bounded("svmap", &args, Duration::from_secs(30)).await;
    let line = out
        .lines()
        .find(|l| l.contains(&format!("{ATTACKER}:{}", open.udp.port())))
        .unwrap_or_else(|| panic!("svmap finds the unguarded PBX: {out}"));
    assert!(line.contains("unknown"), "no user agent: {line}");
    open.stop().await;

    // Guarded: the scanner's first datagram bans it; it finds nothing.
    let mut pbx = guarded(true).await;
    let mut args = port_args(&pbx);
    args.push(ATTACKER.into());
    let out = run_bounded("svmap", &args, Duration::from_secs(30)).await;
    assert!(
        !out.contains(&format!("{ATTACKER}:{}", pbx.udp.port())),
        "svmap found the guarded PBX: {out}"
    );
    let ban = stored_ban(&pbx, ATTACKER).await;
    assert!(ban.reason.contains("friendly-scanner"), "{ban:?}");
    let alerts = pbx.store.list_all_alerts(10).await.unwrap();
    assert!(
        alerts.iter().any(|a| a.alert.event == "sip.ban"),
        "{alerts:?}"
    );
    legit_call(&pbx).await;
    pbx.stop().await;
}

#[tokio::test]
async fn svwar_finds_none_of_the_extensions() {
    if !have("svwar") {
        return;
    }
    let extensions = |out: &str| -> Vec<String> {
        ["1000", "1001", "1002"]
            .iter()
            .filter(|e| out.lines().any(|l| l.contains('|') && l.contains(*e)))
            .map(|e| (*e).to_owned())
            .collect()
    };
    for enabled in [false, true] {
        let mut pbx = guarded(enabled).await;
        let mut args = port_args(&pbx);
        args.extend([
            "-e".into(),
            "990-1010".into(),
            "--domain".into(),
            ACME.into(),
        ]);
        args.push(ATTACKER.into());
        let out = run_bounded("svwar", &args, Duration::from_secs(60)).await;
        assert_eq!(
            extensions(&out),
            Vec::<String>::new(),
            "guard {enabled}: {out}"
        );
        if enabled {
            stored_ban(&pbx, ATTACKER).await;
        }
        pbx.stop().await;
    }
}

#[tokio::test]
async fn svcrack_is_banned_and_gets_no_answers_while_127_0_0_2_keeps_working() {
    if !have("svcrack") {
        return;
    }
    let mut pbx = guarded(true).await;
    let dir = tempfile::tempdir().unwrap();
    let dict = dir.path().join("passwords.txt");
    let mut words: Vec<String> = (0..200).map(|i| format!("guess{i}")).collect();
    words.push(password(ACME, "1000"));
    std::fs::write(&dict, words.join("\n")).unwrap();
    let mut args = port_args(&pbx);
    args.extend([
        "-u".into(),
        "1000".into(),
        "-d".into(),
        dict.display().to_string(),
        "--maximumtime".into(),
        "5".into(),
    ]);
    args.push(ATTACKER.into());
    let crack =
        tokio::spawn(async move { run_bounded("svcrack", &args, Duration::from_secs(60)).await });
    // The legitimate phone works while the attack runs.
    legit_call(&pbx).await;
    let out = crack.await.unwrap();
    assert!(
        !out.contains(&password(ACME, "1000")),
        "svcrack cracked the password: {out}"
    );
    let ban = stored_ban(&pbx, ATTACKER).await;
    assert!(ban.count <= max_failures(), "{ban:?}");
    // Banned: a request from 127.0.0.1 gets no answer, while 127.0.0.2 still does.
    let mut attacker = pbx.phone(Transport::Udp, ACME, "1000").await;
    assert!(
        attacker.register(300).await.is_err(),
        "a banned source got an answer"
    );
    legit_call(&pbx).await;
    pbx.stop().await;
}

/// A brute force that hides its user agent is banned after exactly the
/// configured failures; lifting the ban in the store lifts it in the server.
#[tokio::test]
async fn renamed_brute_force_is_banned_after_the_configured_failures() {
    let mut pbx = guarded(true).await;
    let mut attacker = Phone::new(Transport::Udp, ATTACKER, pbx.udp, "1000", "wrong", ACME)
        .await
        .unwrap();
    let mut answered = 0;
    for _ in 0..max_failures() + 3 {
        match attacker.register(300).await {
            Ok(r) => {
                assert_eq!(r.status(), Some(401), "{}", r.raw);
                answered += 1;
            }
            Err(_) => break,
        }
    }
    assert_eq!(answered, max_failures(), "answers before the ban");
    let ban = stored_ban(&pbx, ATTACKER).await;
    assert_eq!(ban.count, max_failures());
    assert!(
        ban.tried.iter().any(|t| t.contains("1000@acme.example")),
        "{ban:?}"
    );
    // The first challenge of a login is never a failure: the phone on
    // 127.0.0.2 logs in many times without being banned.
    for _ in 0..(max_failures() + 2) {
        let mut p = legit_phone(&pbx, "1002").await;
        assert_eq!(p.register(300).await.unwrap().status(), Some(200));
    }
    // `pbx ban remove` deletes the row; the running server lifts the ban.
    assert!(
        pbx.store
            .remove_ban(ATTACKER.parse().unwrap())
            .await
            .unwrap()
    );
    let mut lifted = false;
    for _ in 0..40 {
        let mut p = pbx.phone(Transport::Udp, ACME, "1000").await;
        if p.register(300).await.is_ok_and(|r| r.status() == Some(200)) {
            lifted = true;
            break;
        }
    }
    assert!(lifted, "the ban was not lifted");
    pbx.stop().await;
}

/// Bans survive a restart.
#[tokio::test]
async fn bans_are_restored_at_start() {
    let mut pbx = guarded(true).await;
    let mut attacker = Phone::new(Transport::Udp, ATTACKER, pbx.udp, "1000", "wrong", ACME)
        .await
        .unwrap();
    for _ in 0..max_failures() {
        let _ = attacker.register(300).await;
    }
    stored_ban(&pbx, ATTACKER).await;
    pbx.stop().await;
    let dir = pbx.dir;
    let opts = common::shipped_options(&["127.0.0.1:0"], &[], None);
    let store = Store::open(dir.path()).await.unwrap();
    let handle = start(opts, store).await.unwrap();
    let udp = handle.addrs().udp[0];
    let mut again = Phone::new(
        Transport::Udp,
        ATTACKER,
        udp,
        "1000",
        &password(ACME, "1000"),
        ACME,
    )
    .await
    .unwrap();
    assert!(
        again.register(300).await.is_err(),
        "ban forgotten at restart"
    );
    let mut legit = Phone::new(
        Transport::Udp,
        LEGIT,
        udp,
        "1000",
        &password(ACME, "1000"),
        ACME,
    )
    .await
    .unwrap();
    assert_eq!(legit.register(300).await.unwrap().status(), Some(200));
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_flood_from_one_address_leaves_another_working() {
    if !have("sipp") {
        return;
    }
    let mut pbx = guarded(true).await;
    // 500 INVITEs a second without credentials, at most 4000, for at most 20 s.
    let args: Vec<String> = [
        "-sn", "uac", "-i", ATTACKER, "-p", "0", "-r", "500", "-m", "4000", "-l", "2000",
        "-timeout", "20s", "-nostdin",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .chain([pbx.udp.to_string()])
    .collect();
    let flood =
        tokio::spawn(async move { run_bounded("sipp", &args, Duration::from_secs(30)).await });
    // Let the flood start, then keep working from 127.0.0.2 while it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        legit_call(&pbx).await;
    }
    let out = flood.await.unwrap();
    let ban = stored_ban(&pbx, ATTACKER).await;
    assert!(
        ban.reason.contains("without authenticating"),
        "{ban:?}\n{out}"
    );
    legit_call(&pbx).await;
    pbx.stop().await;
}

/// Unknown domain, unknown extension and wrong password get the same `407`
/// to an INVITE too (apart from the nonce), without a version string.
#[tokio::test]
async fn invite_challenges_do_not_enumerate() {
    let mut pbx = Pbx::start().await;
    let cases = [
        ("1000", "wrong-password-1", ACME),
        ("4711", "wrong-password-1", ACME),
        ("1000", "wrong-password-1", "nowhere.example"),
    ];
    let mut shapes = Vec::new();
    for (ext, pw, domain) in cases {
        let mut p = Phone::new(Transport::Udp, "127.0.0.1", pbx.udp, ext, pw, domain)
            .await
            .unwrap();
        p.call("1001").await.unwrap();
        let r = p.expect_final("INVITE").await.unwrap();
        assert_eq!(r.status(), Some(407), "{ext}@{domain}: {}", r.raw);
        assert!(r.header("Server").is_none() && r.header("User-Agent").is_none());
        shapes.push(shape(&r).replace(domain, "DOMAIN"));
    }
    assert_eq!(shapes[0], shapes[1]);
    assert_eq!(shapes[0], shapes[2]);
    pbx.stop().await;
}

/// A challenge without what legitimately differs: the nonce and the values the
/// client chose.
fn shape(m: &SipMsg) -> String {
    m.headers
        .iter()
        .filter(|(n, _)| !["Via", "From", "To", "Call-ID", "CSeq"].contains(&n.as_str()))
        .map(|(n, v)| {
            let v = match v.find("nonce=\"") {
                Some(i) => {
                    let end = v[i + 7..].find('"').map_or(v.len(), |e| i + 7 + e);
                    format!("{}NONCE{}", &v[..i + 7], &v[end..])
                }
                None => v.clone(),
            };
            format!("{n}: {v}\n")
        })
        .collect()
}
