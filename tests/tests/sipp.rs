//! sipp against the PBX on its shipped defaults, the guard included: 1,000
//! phones behind one address (127.0.0.1) register at 300 a second, as an
//! office does after a power cut, then every one of them calls another, with
//! zero failures. The scenarios (`tests/sipp/`) follow the shapes of the
//! reference benchmarks (`bench/run.sh` drives those) and live in the
//! repository, so this test needs nothing beside the checkout. Needs `sipp`
//! (Debian package `sip-tester`), installed by `.ci/run`. That the same guard
//! still stops sipvicious is `attacks.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Pbx;

const DOMAIN: &str = "bench.example";

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp")
}

fn sipp_available() -> bool {
    Command::new("sipp").arg("-v").output().is_ok()
}

/// What one sipp client load ended with.
struct Load {
    ok: u64,
    failed: u64,
    /// The head of sipp's error log: why calls failed, when any did.
    errors: String,
}

/// Runs one sipp client load to completion.
fn run_sipp(scenario: &Path, users: &Path, target: &str, rate: u32, total: u32) -> Load {
    let dir = tempfile::tempdir().unwrap();
    let stat = dir.path().join("stat.csv");
    let errors = dir.path().join("errors.log");
    let out = Command::new("timeout")
        .args(["120", "sipp", "-sf"])
        .arg(scenario)
        .arg("-inf")
        .arg(users)
        .arg(target)
        .args(["-i", "127.0.0.1", "-p", "0", "-r", &rate.to_string()])
        .args(["-l", "400", "-m", &total.to_string(), "-trace_stat", "-stf"])
        .arg(&stat)
        .args(["-trace_err", "-error_file"])
        .arg(&errors)
        .args(["-fd", "1", "-nostdin", "-timeout", "100s"])
        .output()
        .expect("sipp runs");
    let text = std::fs::read_to_string(&stat).unwrap_or_else(|_| {
        panic!(
            "sipp wrote no statistics: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(';').collect()).collect();
    let head = &rows[0];
    let last = rows.last().unwrap();
    let col = |k: &str| -> u64 {
        let i = head.iter().position(|h| *h == k).unwrap();
        last[i].parse().unwrap()
    };
    let errors = std::fs::read_to_string(&errors).unwrap_or_default();
    Load {
        ok: col("SuccessfulCall(C)"),
        failed: col("FailedCall(C)"),
        errors: errors.chars().take(6000).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_and_calls_without_failures() {
    assert!(
        sipp_available(),
        "sipp is not installed (apt-get install sip-tester); .ci/run installs it"
    );
    let scenarios = bench_dir();
    assert!(
        scenarios.join("register.xml").exists(),
        "missing {}",
        scenarios.display()
    );
    let mut pbx = Pbx::start().await;
    let tenant = pbx.store.add_tenant("bench", DOMAIN).await.unwrap().id;
    let rows: Vec<(String, String)> = (1000..2000)
        .map(|u| (u.to_string(), format!("pw{u}")))
        .collect();
    pbx.store.import_extensions(tenant, &rows).await.unwrap();
    // A load test is not fraud: lift the tenant's call-rate and concurrency caps.
    pbx.store
        .set_tenant_limits(
            tenant,
            &store::TenantLimits {
                max_concurrent: Some(100_000),
                max_concurrent_extension: Some(100),
                max_calls_per_second: Some(100_000),
                daily_cap_cents: None,
                media_storage_bytes: None,
                ..store::TenantLimits::default()
            },
        )
        .await
        .unwrap();
    // The shipped fraud policy's own limits, as an operator lifts them.
    for key in ["max-concurrent-calls", "max-calls-per-minute"] {
        common::cli(
            &pbx.store,
            &[
                "policy",
                "config",
                "set",
                "default-policy",
                key,
                "100000",
                "--tenant",
                "bench",
            ],
        )
        .await;
    }
    // Restart so the server starts with the bench tenant in its directory.
    pbx.stop().await;
    pbx.serve().await;

    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    // Every phone is reached at the answering sipp's port.
    let uas_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 1000..2000u32 {
        let callee = 1000 + 1999 - i;
        csv.push_str(&format!(
            "{i};[authentication username={i} password=pw{i}];{DOMAIN};{callee};{uas_port}\n"
        ));
    }
    std::fs::write(&users, csv).unwrap();
    let target = pbx.udp.to_string();

    let reg = tokio::task::spawn_blocking({
        let (s, u, t) = (
            scenarios.join("register.xml"),
            users.clone(),
            target.clone(),
        );
        move || run_sipp(&s, &u, &t, 300, 1000)
    })
    .await
    .unwrap();
    assert_eq!(
        (reg.ok, reg.failed),
        (1000, 0),
        "REGISTER load; sipp's errors:\n{}",
        reg.errors
    );

    // Every user is now registered at the UAS port, where a sipp UAS answers.
    let mut uas = Command::new("sipp")
        .arg("-sf")
        .arg(scenarios.join("uas.xml"))
        .args(["-i", "127.0.0.1", "-p", &uas_port.to_string(), "-nostdin"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sipp uas starts");
    let calls = tokio::task::spawn_blocking({
        let (s, u, t) = (scenarios.join("call.xml"), users.clone(), target.clone());
        move || run_sipp(&s, &u, &t, 100, 1000)
    })
    .await
    .unwrap();
    let _ = uas.kill();
    let _ = uas.wait();
    assert_eq!(
        (calls.ok, calls.failed),
        (1000, 0),
        "call load; sipp's errors:\n{}",
        calls.errors
    );
    // Nothing of this looked like abuse to the default guard.
    let bans = pbx.store.list_bans(0).await.unwrap();
    assert!(bans.is_empty(), "{bans:?}");
    pbx.stop().await;
}
