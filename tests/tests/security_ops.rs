//! Security operations end to end.
//!
//! - Encrypted backups: a serving PBX with a call up is backed up, the archive
//!   restores into a fresh directory with its registrations, call records,
//!   plugins, voicemail and audit chain, and the restored copy takes calls. A
//!   wrong passphrase is refused with a clear error.
//! - SIEM: security events reach a syslog listener as RFC 5424 lines whose
//!   message is the event in the schema of `docs/EVENTS.md`, tagged with
//!   their tenant.

mod common;

use std::time::Duration;

use common::{ACME, Pbx, http, next_invite};
use pbx::backup::{self, BackupError, Seal, Unseal};
use pbx_e2e::{Phone, Transport};
use serde_json::json;

const PASSPHRASE: &str = "correct horse battery staple";

fn passphrase(p: &str) -> backup::SecretString {
    p.to_string().into()
}

/// `caller` calls `callee`'s extension, which answers; the call stays up.
async fn answered(caller: &mut Phone, callee: &mut Phone, ext: &str) -> pbx_e2e::OutCall {
    let mut call = caller.call(ext).await.unwrap();
    let invite = next_invite(callee, Duration::from_secs(5))
        .await
        .expect("the callee rings");
    callee
        .respond(&invite, 200, "OK", Some("b1"), true)
        .await
        .unwrap();
    let ok = caller.final_response(&call).await.unwrap();
    assert_eq!(ok.status(), Some(200), "{}", ok.raw);
    call.answered(&ok);
    caller.ack_2xx(&call).await.unwrap();
    call
}

/// An audited change to acme's extension 1001 (its busy forward), as `root`.
async fn audited_change(pbx: &Pbx, token: &str) {
    let uri = format!("/api/v1/tenants/{}/extensions/1001/forwarding", pbx.acme);
    let (s, v) = http(
        pbx.api(),
        "PUT",
        &uri,
        Some(token),
        Some(json!({"busy": "1002"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn a_serving_pbx_is_backed_up_under_calls_and_restored_whole() {
    let mut pbx = Pbx::start_with_api().await;
    let token = pbx.root_token().await;
    // An audited change, a dial plan version, a voicemail message.
    audited_change(&pbx, &token).await;
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::OFFICE_HOURS, 1)
        .await
        .expect("a dial plan version");
    let wav = pbx_media::Recording {
        samples: vec![500; 8000],
        end: pbx_media::RecordingEnd::Stopped,
    }
    .to_wav();
    pbx.store
        .save_voicemail(pbx.acme, "1001", "1000", &wav, 1000)
        .await
        .expect("a message");
    pbx.applied().await;

    // One finished call (its record written), and one still up.
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1002").await;
    let done = answered(&mut caller, &mut callee, "1002").await;
    caller.in_dialog(&done, "BYE", None).await.unwrap();
    callee.expect_request("BYE").await.expect("hung up");
    let up = answered(&mut caller, &mut callee, "1002").await;
    let store = pbx.store.clone();
    let acme = pbx.acme;
    common::eventually(|| async {
        let cdrs = store.list_cdrs(acme, &store::CdrFilter::default()).await;
        let regs = store.load_registrations(0).await;
        cdrs.is_ok_and(|c| !c.is_empty()) && regs.is_ok_and(|r| r.len() >= 2)
    })
    .await;

    let out_dir = tempfile::tempdir().unwrap();
    let archive = out_dir.path().join("pbx.age");
    let made = backup::create(
        &pbx.store,
        &pbx.data_dir(),
        &archive,
        Seal::Passphrase(passphrase(PASSPHRASE)),
    )
    .await
    .expect("a backup while serving");
    assert!(
        made.files.iter().any(|f| f.path.starts_with("media/")),
        "{:?}",
        made.files
    );
    caller.in_dialog(&up, "BYE", None).await.unwrap();
    pbx.stop().await;

    assert!(matches!(
        backup::verify(&archive, &Unseal::Passphrase(passphrase("guess"))),
        Err(BackupError::WrongKey)
    ));
    let unseal = Unseal::Passphrase(passphrase(PASSPHRASE));
    backup::verify(&archive, &unseal).expect("intact");
    let fresh = tempfile::tempdir().unwrap();
    backup::restore(&archive, &unseal, fresh.path()).expect("restored");

    let mut restored = Pbx::on_dir(fresh, pbx.acme, pbx.beta).await;
    let r = &restored.store;
    assert!(
        r.load_registrations(0).await.unwrap().len() >= 2,
        "registrations"
    );
    assert!(
        !r.list_cdrs(pbx.acme, &store::CdrFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        r.list_dialplans(pbx.acme).await.unwrap().len(),
        1,
        "the dial plan"
    );
    let messages = r.voicemail_messages(pbx.acme, "1001").await.unwrap();
    assert_eq!(messages.len(), 1);
    let audio = r
        .voicemail_audio(pbx.acme, "1001", &messages[0].id)
        .await
        .unwrap()
        .expect("the message decrypts with the restored key");
    assert_eq!(audio, wav);
    let report = pbx_api::verify_audit(r).await.unwrap();
    assert!(report.is_intact() && report.entries > 0, "{report:?}");

    // The restored copy takes calls.
    restored.serve().await;
    let mut caller = restored.registered(Transport::Udp, ACME, "1000").await;
    let mut callee = restored.registered(Transport::Udp, ACME, "1002").await;
    answered(&mut caller, &mut callee, "1002").await;
}

/// The next syslog datagram, split into its RFC 5424 header fields and the
/// event; `None` when nothing came in time.
async fn next_syslog(socket: &tokio::net::UdpSocket) -> Option<(Vec<String>, serde_json::Value)> {
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    let line = String::from_utf8(buf[..n].to_vec()).expect("UTF-8");
    let (head, json) = line.split_once(" - ").expect("NILVALUE structured data");
    let fields = head.split(' ').map(str::to_string).collect();
    Some((
        fields,
        serde_json::from_str(json).expect("the message is JSON"),
    ))
}

#[tokio::test]
async fn security_events_reach_a_syslog_listener_in_the_documented_schema() {
    let listener = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut pbx = Pbx::start_with_api().await;
    pbx.stop().await;
    // [siem] is what this test is about; everything else is shipped.
    let mut opts = common::options_with_api(&pbx.data_dir());
    opts.siem = Some(pbx::server::SiemOptions {
        target: pbx::server::SiemTarget::Udp(listener.local_addr().unwrap().to_string()),
        ca: None,
        facility: 10,
        token: None,
        data_dir: pbx.data_dir(),
    });
    pbx.serve_with(opts).await;

    // A failed admin login, then a change to one of acme's extensions.
    let (s, _) = http(
        pbx.api(),
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({ "username": "root", "password": "not it" })),
    )
    .await;
    assert_eq!(s, 401);
    let token = pbx.root_token().await;
    audited_change(&pbx, &token).await;

    let mut seen = Vec::new();
    while let Some((fields, event)) = next_syslog(&listener).await {
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
        assert_eq!(fields.len(), 6, "{fields:?}");
        assert!(
            fields[0].starts_with('<') && fields[0].ends_with(">1"),
            "{fields:?}"
        );
        assert!(
            fields[1].ends_with('Z') && fields[1].contains('T'),
            "{fields:?}"
        );
        assert_eq!(fields[3], "pbx");
        assert_eq!(
            fields[5],
            event["event"].as_str().unwrap(),
            "MSGID is the event"
        );
        for key in [
            "v",
            "event",
            "at_ms",
            "severity",
            "tenant_id",
            "tenant",
            "id",
        ] {
            assert!(event.get(key).is_some(), "{key} missing from {event}");
        }
        let name = event["event"].as_str().unwrap().to_string();
        seen.push(event.clone());
        if name == "audit.extension.forwarding" {
            break;
        }
    }
    let named = |n: &str| seen.iter().find(|e| e["event"] == n).cloned();
    let failure = named("audit.login.failure").expect("the failed login");
    assert_eq!(
        (failure["severity"].as_str(), failure["role"].is_string()),
        (Some("warning"), true)
    );
    let change = named("audit.extension.forwarding").expect("the change");
    assert_eq!(change["tenant"], "acme");
    assert_eq!(change["tenant_id"], json!(pbx.acme.0));
    assert_eq!(change["actor"], "root");
    // Sent once: the cursor moved past them and was kept.
    let cursor = std::fs::read_to_string(pbx.data_dir().join("siem-cursor.json")).unwrap();
    let cursor: serde_json::Value = serde_json::from_str(&cursor).unwrap();
    assert!(cursor["audit"].as_i64().unwrap() >= change["id"].as_i64().unwrap());
}
