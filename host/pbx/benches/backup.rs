//! Backup, verify and restore times for a large data directory: 20,000
//! extensions and 1,000,000 call records (set `PBX_BENCH_CDRS` for another
//! count). `cargo bench -p pbx --bench backup`; the figures go into
//! BENCHMARKS.md. The archive is sealed to an age X25519 recipient (what
//! scheduled backups use), so the time is the snapshot, the tar stream and
//! the encryption, without the passphrase's deliberate scrypt second.

use std::time::Instant;

use pbx::backup::{self, Seal, Unseal};
use store::{Cdr, CdrMedia, Disposition, Store};

const EXTENSIONS: usize = 20_000;

#[tokio::main]
async fn main() {
    let cdrs: usize = std::env::var("PBX_BENCH_CDRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).await.expect("store");
    let tenant = store
        .add_tenant("bench", "bench.example")
        .await
        .expect("tenant");

    let t = Instant::now();
    let rows: Vec<(String, String)> = (0..EXTENSIONS)
        .map(|i| (format!("{}", 100_000 + i), format!("pw-{i}-long-enough")))
        .collect();
    for chunk in rows.chunks(5_000) {
        store
            .import_extensions(tenant.id, chunk)
            .await
            .expect("extensions");
    }
    let base = 1_700_000_000_000i64;
    let batch: Vec<Cdr> = (0..5_000)
        .map(|i| Cdr {
            tenant: tenant.id,
            caller: format!("{}", 100_000 + i % EXTENSIONS),
            callee: format!("{}", 100_000 + (i * 7) % EXTENSIONS),
            started_at_ms: base + i as i64 * 1000,
            answered_at_ms: Some(base + i as i64 * 1000 + 3000),
            ended_at_ms: base + i as i64 * 1000 + 63_000,
            disposition: Disposition::Answered,
            sip_code: 200,
            hangup_by: "caller".into(),
            caller_call_id: format!("a-{i}@bench"),
            callee_call_id: format!("pbx0-{i}"),
            media: CdrMedia::default(),
            tags: Vec::new(),
        })
        .collect();
    for _ in 0..cdrs.div_ceil(batch.len()) {
        store.insert_cdrs(&batch).await.expect("records");
    }
    println!(
        "filled: {EXTENSIONS} extensions, {} call records in {:.1} s",
        cdrs.div_ceil(batch.len()) * batch.len(),
        t.elapsed().as_secs_f64()
    );
    let db = std::fs::metadata(dir.path().join("pbx.db"))
        .map(|m| m.len())
        .unwrap_or(0);

    let key = age::x25519::Identity::generate();
    let seal = Seal::recipients(&[key.to_public().to_string()]).expect("recipient");
    let out = tempfile::tempdir().expect("out dir");
    let archive = out.path().join("bench.age");
    let t = Instant::now();
    let made = backup::create(&store, dir.path(), &archive, seal)
        .await
        .expect("backup");
    let create_s = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);

    use age::secrecy::ExposeSecret;
    let unseal = Unseal::identities(key.to_string().expose_secret()).expect("identity");
    let t = Instant::now();
    backup::verify(&archive, &unseal).expect("verify");
    let verify_s = t.elapsed().as_secs_f64();
    let target = out.path().join("restored");
    let t = Instant::now();
    backup::restore(&archive, &unseal, &target).expect("restore");
    let restore_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let restored = Store::open(&target).await.expect("open restored");
    let open_s = t.elapsed().as_secs_f64();
    let ext = restored
        .directory()
        .await
        .expect("directory")
        .extensions
        .len();
    assert_eq!(ext, EXTENSIONS);

    println!(
        "database {:.1} MiB, archive {:.1} MiB ({} files)",
        db as f64 / 1048576.0,
        size as f64 / 1048576.0,
        made.files.len()
    );
    println!("| step | seconds |");
    println!("| --- | --- |");
    println!("| backup create (snapshot + tar + age) | {create_s:.2} |");
    println!("| backup verify | {verify_s:.2} |");
    println!("| backup restore | {restore_s:.2} |");
    println!("| open the restored store | {open_s:.2} |");
}
