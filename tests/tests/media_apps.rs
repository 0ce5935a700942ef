//! An auto attendant end to end, real SIP and RTP over sockets: the worked
//! example `plugins/examples/ivr` answers a sipp caller, hears the RFC 4733
//! key press sipp plays from sip-tester's DTMF capture, and connects the
//! caller to the extension behind that key.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ACME, Pbx, next_invite, password};
use pbx_e2e::Transport;

/// How long to wait for something that should happen at once.
const SOON: Duration = Duration::from_secs(10);

/// sip-tester's capture of key `2` as RFC 4733 events (payload type 101),
/// which `sipp/ivr.xml` plays.
const KEY_2: &str = "/usr/share/sip-tester/dtmf_2833_2.pcap";

fn sipp_available() -> bool {
    Command::new("sipp").arg("-v").output().is_ok() && Path::new(KEY_2).exists()
}

/// Acme's dial plan is the IVR example, open around the clock (what the test
/// is about is the menu, not the time of day), `1` rings group `sales` =
/// 1001 and `2` rings extension 1002.
async fn ivr(pbx: &Pbx) {
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::IVR, 1)
        .await
        .expect("the IVR installs as acme's dial plan");
    for (key, value) in [
        ("ring-group:sales", "1001"),
        ("ivr.2", "1002"),
        ("hours.open", "0"),
        ("hours.close", "24"),
        ("hours.weekends", "1"),
    ] {
        pbx.store
            .plugin_kv_admin_put(pbx.acme, key, Some(value.as_bytes()))
            .await
            .expect("tenant storage");
    }
    pbx.applied().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ivr_routes_by_the_key_sipp_presses() {
    assert!(
        sipp_available(),
        "sipp and its DTMF captures are not installed (apt-get install sip-tester); \
         .ci/run installs them"
    );
    let pbx = Pbx::start().await;
    ivr(&pbx).await;
    let mut sales = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut support = pbx.registered(Transport::Udp, ACME, "1002").await;

    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    std::fs::write(
        &users,
        format!(
            "SEQUENTIAL\n1000;[authentication username=1000 password={}];{ACME};5000\n",
            password(ACME, "1000")
        ),
    )
    .unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/ivr.xml");
    let target = pbx.udp.to_string();
    let sipp = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["60", "sipp", "-sf"])
            .arg(&scenario)
            .arg("-inf")
            .arg(&users)
            .arg(&target)
            .args(["-i", "127.0.0.1", "-p", "0", "-mp", "0", "-m", "1"])
            .args(["-nostdin", "-timeout", "50s", "-timeout_error"])
            .output()
            .expect("sipp runs")
    });

    // Key 2 rings support (1002), never sales.
    let Some(invite) = next_invite(&mut support, SOON).await else {
        let out = sipp.await.unwrap();
        panic!(
            "the IVR did not ring the extension behind key 2; sipp said: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert!(
        invite.start.starts_with("INVITE sip:1002@"),
        "{}",
        invite.start
    );
    support
        .respond(&invite, 200, "OK", Some("s1"), true)
        .await
        .unwrap();
    support
        .expect_request("ACK")
        .await
        .expect("the PBX acknowledges the answer");
    // sipp hangs up; the BYE reaches the phone it was connected to.
    let bye = support.expect_request("BYE").await.expect("BYE relayed");
    support.respond(&bye, 200, "OK", None, false).await.unwrap();
    let out = sipp.await.unwrap();
    assert!(
        out.status.success(),
        "sipp's call failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        next_invite(&mut sales, Duration::from_millis(300))
            .await
            .is_none(),
        "key 2 does not ring sales"
    );
    // The record says which key routed the call, and (from the handler's
    // last step, `caller-hung-up`) how it ended.
    common::eventually(|| async {
        let cdrs = pbx
            .store
            .list_cdrs(pbx.acme, &store::CdrFilter::default())
            .await
            .unwrap_or_default();
        cdrs.iter()
            .any(|c| c.tags == ["ivr:2".to_string(), "ended:caller".to_string()])
    })
    .await;
}
