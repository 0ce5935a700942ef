//! Builds the shipped plugins (`plugins/`, its own wasm32-wasip2 workspace) so the
//! host can embed them with `include_bytes!`. The nested cargo gets its own target
//! directory under `OUT_DIR`, so it never waits on the outer build's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// Constant name, artifact name (crate name with `_`) and doc line for each plugin.
type Plugin = (&'static str, &'static str, &'static str);

/// Shipped with the product.
const DEFAULTS: &[Plugin] = &[
    (
        "DEFAULT_DIALPLAN",
        "default_dialplan",
        "The dial plan a tenant runs until it uploads its own: a call handler (world \
         `call-handler@0.2.0`) following each extension's forwarding and do-not-disturb.",
    ),
    (
        "RESTRICTIONS",
        "restrictions",
        "The provider's destination-class restrictions: calls out a trunk to \
         international, premium-rate or unclassified numbers are denied unless the class \
         is approved for the tenant; emergency calls are never denied (world `policy`).",
    ),
    (
        "DEFAULT_POLICY",
        "default_policy",
        "The provider's default fraud policy: concurrent-call and per-extension call-rate \
         limits, alerts and suspensions after costly calls (world `policy`).",
    ),
];

/// Hostile and instrumented plugins for tests.
const EXAMPLES: &[Plugin] = &[
    (
        "TRAP",
        "example_trap",
        "A dial plan that traps on every call.",
    ),
    (
        "POLICY_TRAP",
        "example_policy_trap",
        "A policy that traps on every call.",
    ),
    ("SPIN", "example_spin", "A dial plan that never returns."),
    (
        "MEMHOG",
        "example_memhog",
        "A dial plan that allocates memory without bound.",
    ),
    (
        "CROSS_TENANT",
        "example_cross_tenant",
        "A dial plan that names extensions, groups and trunks that are not the tenant's.",
    ),
    (
        "ESCAPE",
        "example_escape",
        "A dial plan importing `wasi:sockets` and `wasi:filesystem`.",
    ),
    (
        "COUNTER",
        "example_counter",
        "A dial plan that rejects with `<calls seen by this instance>/<calls counted in storage>`.",
    ),
    (
        "SLEEP",
        "example_sleep",
        "A dial plan that sleeps for an hour (blocks in `wasi:io/poll`).",
    ),
    (
        "RANDOM_BOMB",
        "example_random_bomb",
        "A dial plan that asks `wasi:random` for 64 MiB in one call.",
    ),
    (
        "LOG_BOMB",
        "example_log_bomb",
        "A dial plan that writes 2 MiB log lines, through the log interface and stdout.",
    ),
    (
        "DECISION_BOMB",
        "example_decision_bomb",
        "A dial plan ringing 50,000 targets whose names all alias one 1 MiB string.",
    ),
    (
        "STORAGE_WRITER",
        "example_storage_writer",
        "A dial plan that writes the fraud policy's limit names into its storage (or, \
         dialled `flood...`, thousands of keys) and reports how far it got.",
    ),
    (
        "OFFICE_HOURS",
        "example_office_hours",
        "A call handler (`pbx:plugin@0.2.0`): business hours, a hunt group, a forward to a mobile.",
    ),
    (
        "CLASSIC_DIALPLAN",
        "example_classic_dialplan",
        "A dial plan written for `pbx:plugin@0.1.0` (the shipped default before call handlers).",
    ),
    (
        "IVR",
        "example_ivr",
        "A call handler with media: a business-hours greeting, a key menu, a group, voicemail.",
    ),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("host/pbx-plugin sits two levels below the repository root")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    for watched in [
        "wit",
        "sdk/src",
        "sdk/Cargo.toml",
        "sdk/call-handler",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/default-dialplan",
        "plugins/default-policy",
        "plugins/restrictions",
    ] {
        println!("cargo:rerun-if-changed={}", repo.join(watched).display());
    }
    // Each Rust example by name: `plugins/examples` also holds non-Rust examples
    // whose tool folders (node_modules) must not trigger rebuilds.
    for (_, artifact, _) in EXAMPLES {
        let folder = artifact.trim_start_matches("example_").replace('_', "-");
        let path = repo.join("plugins/examples").join(folder);
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    check_target_installed(&rustc);

    let target_dir = out_dir.join("plugins-target");
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(repo.join("plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run {cargo:?} to build the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the shipped plugins failed ({status}); run `cargo build --release \
             --target {TARGET} --manifest-path plugins/Cargo.toml` to see why"
        );
    }

    let artifacts = target_dir.join(TARGET).join("release");
    write_constants(&artifacts, DEFAULTS, &out_dir.join("shipped_defaults.rs"));
    write_constants(&artifacts, EXAMPLES, &out_dir.join("shipped_examples.rs"));
}

/// Write one `pub const NAME: &[u8] = include_bytes!(..)` per plugin.
fn write_constants(artifacts: &Path, plugins: &[Plugin], file: &Path) {
    let mut generated = String::new();
    for (constant, artifact, doc) in plugins {
        let path = artifacts.join(format!("{artifact}.wasm"));
        if !path.is_file() {
            panic!("the plugins build did not produce {}", path.display());
        }
        generated.push_str(&format!(
            "/// {doc}\npub const {constant}: &[u8] = include_bytes!({:?});\n",
            path.display().to_string()
        ));
    }
    std::fs::write(file, generated)
        .unwrap_or_else(|e| panic!("could not write {}: {e}", file.display()));
}

/// Makes sure the wasm32-wasip2 standard library is there. rustup does not add a
/// `rust-toolchain.toml` target to a toolchain that is already installed, so on a
/// machine with only the stable toolchain this adds it (once, through rustup, for
/// the toolchain running this build); without rustup it fails with the fix.
fn check_target_installed(rustc: &std::ffi::OsStr) {
    let installed = || {
        Command::new(rustc)
            .args(["--print", "sysroot"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .is_none_or(|sysroot| sysroot.join("lib/rustlib").join(TARGET).is_dir())
    };
    if installed() {
        return;
    }
    println!("cargo:warning=adding the Rust target {TARGET} with rustup (shipped plugins need it)");
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    let added = rustup.status().is_ok_and(|s| s.success());
    if !added || !installed() {
        panic!(
            "the Rust target {TARGET} is not installed (needed to build the shipped plugins); \
             install it with `rustup target add {TARGET}`"
        );
    }
}
