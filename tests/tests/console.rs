//! The web console in a real browser: `console-tests/console.test.mjs`
//! (Playwright driving Debian's Chromium) against a PBX on the shipped
//! defaults with the admin API. It needs node, `console-tests/node_modules`
//! (`npm ci` there) and chromium; without them the test is skipped with a
//! notice, unless `PBX_REQUIRE_TOOLS=1` (CI), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Pbx, ROOT_PASSWORD, tenant_admin_token};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether node, the Playwright package and chromium are here.
fn browser_tools() -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let package = repo()
        .join("console-tests/node_modules/playwright-core")
        .is_dir();
    let chromium = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .iter()
        .any(|p| Path::new(p).exists());
    let found = node && package && chromium;
    if !found {
        assert!(
            std::env::var("PBX_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "node ({node}), console-tests/node_modules ({package}) or chromium ({chromium}) \
             is missing and PBX_REQUIRE_TOOLS=1"
        );
        eprintln!(
            "SKIPPED: the console's browser tests need node, `npm ci` in console-tests and \
             chromium (Debian: nodejs, npm, chromium)"
        );
    }
    found
}

#[tokio::test]
async fn the_console_works_in_chromium_and_keeps_tenants_apart() {
    if !browser_tools() {
        return;
    }
    let pbx = Pbx::start_with_api().await;
    // acme's admin, a request for approval waiting for the provider, and an
    // alert whose message is a script.
    tenant_admin_token(&pbx, "acme").await;
    pbx.store
        .request_approval(
            pbx.acme,
            &store::ApprovalTarget::Class("international".into()),
            Some("442071234567"),
            1_000,
        )
        .await
        .expect("approval");
    pbx.store
        .insert_alert(&store::Alert {
            tenant: Some(pbx.acme),
            severity: store::Severity::Warning,
            event: "fraud.burst".into(),
            message: "<script>window.__xss=1</script>".into(),
            at_ms: 1_000,
        })
        .await
        .expect("alert");
    let dialplan = pbx.dir.path().join("dialplan.wasm");
    std::fs::write(&dialplan, pbx_plugin::shipped::DEFAULT_DIALPLAN).expect("dial plan file");

    let mut run = tokio::process::Command::new("node");
    run.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    run.arg(repo().join("console-tests/console.test.mjs"))
        .env("PBX_URL", format!("http://localhost:{}", pbx.api().port()))
        .env("PBX_ROOT", format!("root:{ROOT_PASSWORD}"))
        .env("PBX_TENANT_ADMIN", format!("acme-admin:{ROOT_PASSWORD}"))
        .env("PBX_ACME", pbx.acme.0.to_string())
        .env("PBX_BETA", pbx.beta.0.to_string())
        .env("PBX_DIALPLAN", &dialplan)
        .kill_on_drop(true);
    let mut child = run.spawn().expect("node runs");
    let stderr = child.stderr.take().expect("stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::BufReader::new(stderr), &mut text)
            .await
            .ok();
        text
    });
    // Its output, line by line: when the alerts view is live, store the
    // alerts it waits for.
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        child.stdout.take().expect("stdout"),
    ));
    let store = pbx.store.clone();
    let (acme, beta) = (pbx.acme, pbx.beta);
    let run = async move {
        let mut stdout = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line == "ready for live alerts" {
                for (tenant, message) in [
                    (beta, "beta-live-alert"),
                    (acme, r#"<img src=x onerror="window.__xss=2"> live"#),
                ] {
                    store
                        .insert_alert(&store::Alert {
                            tenant: Some(tenant),
                            severity: store::Severity::Warning,
                            event: "fraud.burst".into(),
                            message: message.into(),
                            at_ms: 2_000,
                        })
                        .await
                        .expect("live alert");
                }
            }
            stdout.push_str(&line);
            stdout.push('\n');
        }
        (stdout, child.wait().await.expect("node ends"))
    };
    let (stdout, exit) = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser tests finish within 4 minutes");
    let stderr = stderr.await.unwrap_or_default();
    println!("{stdout}");
    assert!(exit.success(), "browser tests failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("console checks passed"), "{stdout}");
}
