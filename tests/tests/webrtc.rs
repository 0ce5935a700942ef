//! WebRTC calls end to end: headless Chromium (fake microphone) runs the
//! console's browser phone (`console-tests/webrtc.test.mjs`) against a PBX,
//! and calls a baresip phone and is called by it. The browser's leg is
//! DTLS-SRTP with ICE-lite over the relay; baresip's is plain RTP over UDP.
//!
//! The PBX runs the shipped defaults plus what the test is about: the admin
//! API (plain HTTP on loopback) and a `--sip-wss` listener with a
//! self-signed certificate.

mod common;

use std::time::Duration;

use common::softphone::{Link, PhoneSpec, Softphone, free_udp_range};
use common::{ACME, Pbx, ROOT_PASSWORD, password, tenant_admin_token};
use store::{CdrFilter, Disposition};

/// Waits until `extension` of acme is registered (over any transport).
async fn registered(pbx: &Pbx, extension: &str, phone: &Softphone) {
    let deadline = tokio::time::Instant::now() + common::softphone::WAIT;
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let regs = pbx
            .store
            .load_registrations(now)
            .await
            .expect("registrations");
        if regs.iter().any(|r| r.extension == extension) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{extension} did not register: {}",
            phone.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_calls_baresip_and_baresip_calls_chromium() {
    if !common::browser::tools()
        || !pbx_e2e::tools::installed("baresip", "baresip", "PBX_REQUIRE_BARESIP")
    {
        return;
    }
    let mut pbx = Pbx::provisioned().await;
    let (opts, _) = pbx.options_with_wss();
    pbx.serve_with(opts).await;

    // alice is the user of extension 1000; baresip answers on 1001.
    let admin = tenant_admin_token(&pbx, "acme").await;
    pbx.add_acme_user(&admin, "alice", "1000").await;
    let logs = pbx.dir.path().to_path_buf();
    let pw = password(ACME, "1001");
    let mut baresip = Softphone::start_baresip(&PhoneSpec {
        dir: &logs,
        name: "desk",
        extension: "1001",
        password: &pw,
        domain: ACME,
        link: Link::Udp(pbx.udp),
        ca: None,
        auto_answer: true,
        rtp_ports: free_udp_range(4),
    })
    .await;
    registered(&pbx, "1001", &baresip).await;

    let mut script = common::browser::Script::start(
        "webrtc.test.mjs",
        &[
            ("PBX_URL", format!("http://localhost:{}", pbx.api().port())),
            ("PBX_USER", format!("alice:{ROOT_PASSWORD}")),
            ("PBX_CALLEE", "1001".into()),
        ],
    );
    let run = async {
        while let Some(line) = script.next_line().await {
            if line == "ready for incoming call" {
                baresip.dial(&format!("sip:1000@{ACME}")).await;
            }
        }
        script.finish().await
    };
    let (stdout, stderr, exit) = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser phone test finishes within 3 minutes");
    println!("{stdout}");
    assert!(
        exit.success(),
        "browser phone test failed:\n{stdout}\n{stderr}\n---- baresip\n{}",
        baresip.log()
    );
    assert!(stdout.contains("webrtc checks passed"), "{stdout}");
    baresip.stop().await;

    // Both calls are on record, answered, with audio both ways on both legs.
    let cdrs = pbx
        .store
        .list_cdrs(pbx.acme, &CdrFilter::default())
        .await
        .expect("cdrs");
    let mut pairs: Vec<(String, String)> = cdrs
        .iter()
        .map(|c| (c.caller.clone(), c.callee.clone()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("1000".into(), "1001".into()),
            ("1001".into(), "1000".into())
        ],
        "{cdrs:?}"
    );
    for cdr in &cdrs {
        assert_eq!(cdr.disposition, Disposition::Answered, "{cdr:?}");
        assert_eq!(
            cdr.hangup_by,
            if cdr.caller == "1000" {
                "caller"
            } else {
                "callee"
            }
        );
        for (leg, m) in [("caller", cdr.media.caller), ("callee", cdr.media.callee)] {
            assert!(m.packets_in > 50, "{leg} of {cdr:?} sent audio");
            assert!(m.packets_out > 50, "{leg} of {cdr:?} received audio");
            assert_eq!(m.srtp_auth_failures, 0, "{leg}: {m:?}");
        }
    }
}
