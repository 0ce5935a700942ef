//! The web console in a real browser: `console-tests/console.test.mjs`
//! (Playwright driving Debian's Chromium) against a PBX on the shipped
//! defaults with the admin API. It needs node, `console-tests/node_modules`
//! (`npm ci` there) and chromium; without them the test is skipped with a
//! notice, unless `PBX_REQUIRE_TOOLS=1` (CI), where it fails.

mod common;

use std::time::Duration;

use common::{Pbx, ROOT_PASSWORD, tenant_admin_token};

#[tokio::test]
async fn the_console_works_in_chromium_and_keeps_tenants_apart() {
    if !common::browser::tools() {
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
    let (policy_a, policy_b) = (pbx.dir.path().join("a.wasm"), pbx.dir.path().join("b.wasm"));
    std::fs::write(&policy_a, pbx_plugin::shipped::DEFAULT_POLICY).expect("policy file");
    std::fs::write(&policy_b, pbx_plugin::shipped::RESTRICTIONS).expect("policy file");

    let mut script = common::browser::Script::start(
        "console.test.mjs",
        &[
            ("PBX_URL", format!("http://localhost:{}", pbx.api().port())),
            ("PBX_ROOT", format!("root:{ROOT_PASSWORD}")),
            ("PBX_TENANT_ADMIN", format!("acme-admin:{ROOT_PASSWORD}")),
            ("PBX_ACME", pbx.acme.0.to_string()),
            ("PBX_BETA", pbx.beta.0.to_string()),
            ("PBX_DIALPLAN", dialplan.display().to_string()),
            ("PBX_POLICY_A", policy_a.display().to_string()),
            ("PBX_POLICY_B", policy_b.display().to_string()),
        ],
    );
    // Its output, line by line: when the alerts view is live, store the
    // alerts it waits for.
    let store = pbx.store.clone();
    let (acme, beta) = (pbx.acme, pbx.beta);
    let run = async move {
        while let Some(line) = script.next_line().await {
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
        }
        script.finish().await
    };
    let (stdout, stderr, exit) = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser tests finish within 4 minutes");
    println!("{stdout}");
    assert!(exit.success(), "browser tests failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("console checks passed"), "{stdout}");
}
