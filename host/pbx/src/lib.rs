//! The PBX host program: command line, configuration and the tokio I/O layer.
//!
//! This crate is the edge of the system. It parses the command line ([`cli`]) and the
//! TOML configuration ([`config`]) once into typed values, provisions tenants and
//! extensions straight into the store ([`provision`]), and runs the SIP server
//! ([`server`]) around the socket-free state machines of `pbx-core`, with the
//! admin REST API (`pbx-api`) next to it when configured.
//!
//! # Design
//! - `main.rs` is thin: it parses arguments, reads the environment (`RUST_LOG`),
//!   sets up logging and calls [`run`]. Nothing below it reads the environment.
//! - The server owns sockets, timers and the database; the SIP core owns protocol
//!   state. Datagrams and framed stream messages go to one task per core shard over
//!   bounded queues (a full queue drops the message: overload protection); what the
//!   shards ask for (bytes to send, registrations and call records to persist) goes
//!   back out through the sockets or to a write-behind task that batches database
//!   writes off the SIP path.
//! - [`server::run`] takes already-bound [`server::Listeners`] and a shutdown future,
//!   so tests bind `127.0.0.1:0`, read the addresses back and stop the server
//!   in-process.

pub mod backup;
pub mod cli;
pub mod config;
pub mod doctor;
mod error;
pub mod logging;
pub mod provision;
pub mod server;
pub mod tenant_move;
mod uploads;
pub mod version;

pub use error::{Error, Result};

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cli::{Cli, Command, TenantCommand};
use store::Store;

/// The data directory used when neither `--data-dir` nor `PBX_DATA_DIR` names one.
pub const DEFAULT_DATA_DIR: &str = "./pbx-data";

/// Runs one parsed command line to completion. `log_filter` is the `RUST_LOG`-style
/// filter read by `main` (or `None` for the default).
pub async fn run(cli: Cli, log_filter: Option<String>) -> anyhow::Result<()> {
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if let Command::CompilePlugin { request } = &cli.command {
        let request = pbx_plugin::CompileRequest::from_args(request)
            .map_err(|e| anyhow::anyhow!("compile-plugin: {e}"))?;
        // The answer (or the refusal) is on stdout; the exit status only says
        // whether it could be written.
        return match pbx_plugin::serve_compile_request(&request) {
            code if code == std::process::ExitCode::SUCCESS => Ok(()),
            _ => Err(anyhow::anyhow!("compile-plugin: could not answer")),
        };
    }
    match cli.command {
        Command::Serve(args) => {
            let mut settings = config::Settings::load(&args)?;
            // Uploads (CLI and API) and stored plugins compile in a child process.
            let sandboxed = sandboxed_plugins(&data_dir);
            provision::compile_uploads_with(sandboxed.clone());
            if let Some(plugins) = &mut settings.serve.plugins {
                plugins.cache_dir = sandboxed.cache_dir.clone();
                plugins.sandbox = sandboxed.sandbox.clone();
            }
            logging::init(settings.log_format, log_filter.as_deref())?;
            let database = cli.database.clone().or_else(|| settings.database.take());
            let store = open_store(&data_dir, database.as_deref()).await?;
            if let Some(backup) = &mut settings.serve.backup {
                backup.data_dir = data_dir.clone();
            }
            if let Some(siem) = &mut settings.serve.siem {
                siem.data_dir = data_dir.clone();
            }
            settings.serve.api = settings.api.take().map(|config| server::ApiOptions {
                config,
                data_dir: data_dir.clone(),
            });
            server::serve(settings.serve, store, server::shutdown_signal()).await
        }
        Command::Demo(args) => {
            let mut settings = config::Settings::load_demo(&args)?;
            logging::init(settings.log_format, log_filter.as_deref())?;
            // The temporary directory lives until the server stops.
            let (dir, _temp) = match cli.data_dir {
                Some(dir) => (dir, None),
                None => {
                    let temp = tempfile::Builder::new()
                        .prefix("pbx-demo-")
                        .tempdir()
                        .map_err(|e| anyhow::anyhow!("cannot create a temporary directory: {e}"))?;
                    (temp.path().to_path_buf(), Some(temp))
                }
            };
            let sandboxed = sandboxed_plugins(&dir);
            provision::compile_uploads_with(sandboxed.clone());
            if let Some(plugins) = &mut settings.serve.plugins {
                plugins.cache_dir = sandboxed.cache_dir;
                plugins.sandbox = sandboxed.sandbox;
            }
            let store = open_store(&dir, cli.database.as_deref()).await?;
            if let Some(backup) = &mut settings.serve.backup {
                backup.data_dir = dir.clone();
            }
            if let Some(siem) = &mut settings.serve.siem {
                siem.data_dir = dir.clone();
            }
            let mut demo = provision::demo(&store).await?;
            demo.admin_password = provision::demo_admin(&store).await?;
            settings.serve.api = settings.api.take().map(|config| server::ApiOptions {
                config,
                data_dir: dir.clone(),
            });
            let mut out = std::io::stdout().lock();
            demo.print(&mut out, &dir, &settings.serve)?;
            drop(out);
            server::serve(settings.serve, store, server::shutdown_signal()).await
        }
        Command::Backup(command) => run_backup(command, &data_dir, cli.database.as_deref()).await,
        Command::Migrate(args) => run_migrate(args, &data_dir, cli.database.as_deref()).await,
        Command::Tenant(
            command @ (TenantCommand::Export { .. } | TenantCommand::Import { .. }),
        ) => move_tenant(command, &data_dir, cli.database.as_deref()).await,
        Command::Doctor {
            config,
            json,
            vulnerable_versions,
        } => {
            let file = match &config {
                Some(path) => config::FileConfig::load(path)?,
                None => config::FileConfig::default(),
            };
            let vulnerable = match &vulnerable_versions {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                ),
                None => None,
            };
            let store = open_store(&data_dir, cli.database.as_deref()).await?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            let findings = doctor::audit(&doctor::Inputs {
                store: &store,
                data_dir: &data_dir,
                config: &file,
                vulnerable: vulnerable.as_deref(),
                now_ms,
            })
            .await?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &findings)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", doctor::human(&findings))?;
            }
            if doctor::failing(&findings) {
                anyhow::bail!("high-severity findings");
            }
            Ok(())
        }
        Command::Version { json } => {
            let build = version::Build::current();
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &build)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "pbx {} (commit {}, {} dependencies)",
                    build.version,
                    build.commit,
                    build.dependencies.len()
                )?;
            }
            Ok(())
        }
        Command::Api(cli::ApiCommand::RotateKey) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            let rotation = pbx_api::rotate_signing_key(&data_dir, now)?;
            println!(
                "new signing key {}: the API signs with it from its next start",
                rotation.kid
            );
            for kid in rotation.retired {
                println!("retired signing key {kid}: every token it signed has expired");
            }
            Ok(())
        }
        command => {
            logging::init(
                logging::LogFormat::Text,
                Some(log_filter.as_deref().unwrap_or("warn")),
            )?;
            provision::compile_uploads_with(sandboxed_plugins(&data_dir));
            let store = open_store(&data_dir, cli.database.as_deref()).await?;
            let mut out = std::io::stdout().lock();
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            provision::execute(&store, command, &mut input, &mut out).await?;
            Ok(())
        }
    }
}

/// The plugin runtime settings of the `pbx` program: compiled code cached
/// under `DATA_DIR/plugin-cache` by content hash (restarts load it instead of
/// compiling again), and every upload or stored plugin compiled first by this
/// same program's hidden `compile-plugin` command in a child process with CPU
/// and memory limits. Without a path to this program (which should not
/// happen), plugins compile in-process after the compile limits.
///
/// ```
/// let config = pbx::sandboxed_plugins(std::path::Path::new("node-a"));
/// assert!(config.cache_dir.unwrap().is_absolute());
/// ```
pub fn sandboxed_plugins(data_dir: &Path) -> pbx_plugin::RuntimeConfig {
    let sandbox = std::env::current_exe()
        .ok()
        .map(|exe| pbx_plugin::CompileSandbox::new(exe, vec!["compile-plugin".into()]));
    // The engine's cache needs an absolute path; `--data-dir node-a` is a
    // fine thing to type.
    let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    pbx_plugin::RuntimeConfig {
        cache_dir: Some(data_dir.join("plugin-cache")),
        sandbox,
        ..pbx_plugin::RuntimeConfig::default()
    }
}

/// One line describing an error and its causes, each cause only when its text
/// is not already part of the message (many errors repeat their source).
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace(['\n', '\r'], " ")
}

/// The store of `dir`: the database `url` names when given (`--database`,
/// `[store] url`), else SQLite in `dir`. The data directory holds the secret
/// key and tenant audio either way.
async fn open_store(dir: &Path, url: Option<&str>) -> Result<Store> {
    match url {
        Some(url) => Store::connect(url, dir).await,
        None => Store::open(dir).await,
    }
    .map_err(|source| Error::OpenStore {
        path: dir.to_path_buf(),
        source,
    })
}

/// The backup passphrase: the environment's (read by clap), else one line of
/// standard input.
fn passphrase(env: cli::PassphraseEnv) -> anyhow::Result<age::secrecy::SecretString> {
    if let Some(p) = env.passphrase.filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!line.is_empty(), "an empty passphrase");
    Ok(line.into())
}

/// Whom a new archive is encrypted to: its recipients, else the passphrase.
fn seal(args: cli::SealArgs) -> anyhow::Result<backup::Seal> {
    Ok(if args.recipients.is_empty() {
        backup::Seal::Passphrase(passphrase(args.env)?)
    } else {
        backup::Seal::recipients(&args.recipients)?
    })
}

/// What opens an archive: an identity file, else the passphrase.
fn unseal(key: cli::UnlockArgs) -> anyhow::Result<backup::Unseal> {
    Ok(match key.identity {
        Some(file) if !key.passphrase_stdin => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            backup::Unseal::identities(&text)?
        }
        _ => backup::Unseal::Passphrase(passphrase(key.env)?),
    })
}

/// `pbx tenant export | import`.
async fn move_tenant(
    command: TenantCommand,
    data_dir: &Path,
    database: Option<&str>,
) -> anyhow::Result<()> {
    let store = open_store(data_dir, database).await?;
    let audit =
        |action: &str, tenant: store::TenantId, detail: serde_json::Value| store::AuditRecord {
            at_ms: backup::now_ms(),
            actor: "cli".into(),
            role: "cli".into(),
            tenant: Some(tenant),
            source: "local".into(),
            action: action.into(),
            detail: detail.to_string(),
        };
    match command {
        TenantCommand::Export {
            tenant,
            out,
            seal: args,
        } => {
            let seal = seal(args)?;
            let t = store
                .tenant_by_name(&tenant)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant named {tenant:?}"))?;
            let totals = tenant_move::export(&store, t.id, &out, seal).await?;
            let rows: u64 = totals.rows.values().sum();
            store
                .append_audit(&audit(
                    "tenant.export",
                    t.id,
                    serde_json::json!({ "file": out.display().to_string(), "rows": rows, "audio": totals.audio }),
                ))
                .await?;
            println!(
                "exported tenant {} to {}: {rows} rows, {} audio files",
                t.name,
                out.display(),
                totals.audio
            );
        }
        TenantCommand::Import { file, as_name, key } => {
            let unseal = unseal(key)?;
            let (done, totals) =
                tenant_move::import(&store, &file, unseal, as_name.as_deref()).await?;
            let rows: u64 = totals.rows.values().sum();
            store
                .append_audit(&audit(
                    "tenant.import",
                    done.tenant,
                    serde_json::json!({ "file": file.display().to_string(), "rows": rows, "audio": totals.audio }),
                ))
                .await?;
            println!(
                "imported tenant {} (id {}): {rows} rows, {} audio files",
                done.name, done.tenant, totals.audio
            );
        }
        _ => unreachable!("move_tenant runs export and import only"),
    }
    Ok(())
}

/// `pbx migrate`: apply the migrations (opening the store does) and print the
/// schema version; or copy a SQLite data directory into PostgreSQL.
async fn run_migrate(
    args: cli::MigrateArgs,
    data_dir: &Path,
    database: Option<&str>,
) -> anyhow::Result<()> {
    match (args.from, args.to) {
        (Some(from), Some(to)) => {
            if !from.join(store::DB_FILE).is_file() {
                anyhow::bail!(
                    "{} has no {}: nothing to copy",
                    from.display(),
                    store::DB_FILE
                );
            }
            let source = open_store(&from, None).await?;
            let target = open_store(&from, Some(&to)).await?;
            let report = source.copy_into(&target).await?;
            let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
            println!(
                "copied {rows} rows of {} tables into PostgreSQL (schema version {}); \
                 serve with --data-dir {} --database <URL>",
                report.tables.len(),
                target.schema_version().await?,
                from.display()
            );
            source.close().await;
            target.close().await;
        }
        _ => {
            let store = open_store(data_dir, database).await?;
            println!(
                "schema version {} ({:?})",
                store.schema_version().await?,
                store.backend()
            );
            store.close().await;
        }
    }
    Ok(())
}

/// `pbx backup ...`. A restore touches nothing but its new directory (and,
/// for an archive of a PostgreSQL database, the empty database `--database`
/// names), so it runs before any store is opened.
async fn run_backup(
    command: cli::BackupCommand,
    data_dir: &Path,
    database: Option<&str>,
) -> anyhow::Result<()> {
    use cli::BackupCommand;
    let summary = |m: &backup::Manifest| {
        let database = match m.database {
            backup::DatabaseKind::Sqlite => "SQLite",
            backup::DatabaseKind::Postgres => "PostgreSQL",
        };
        format!(
            "{} files, {} bytes, {database} database, made by pbx {}",
            m.files.len(),
            m.total_bytes(),
            m.pbx_version
        )
    };
    match command {
        BackupCommand::Create { out, seal: args } => {
            let seal = seal(args)?;
            let store = open_store(data_dir, database).await?;
            let made = backup::create(&store, data_dir, &out, seal).await?;
            println!("backup {}: {}", out.display(), summary(&made));
        }
        BackupCommand::Verify { file, key } => {
            let unseal = unseal(key)?;
            let checked = backup::verify(&file, &unseal)?;
            println!("backup {} intact: {}", file.display(), summary(&checked));
        }
        BackupCommand::Restore { file, key } => {
            let unseal = unseal(key)?;
            let restored = backup::restore_with_database(&file, unseal, data_dir, database).await?;
            println!(
                "restored {} into {}: {}",
                file.display(),
                data_dir.display(),
                summary(&restored)
            );
            match (restored.database, database) {
                (backup::DatabaseKind::Postgres, Some(_)) => {
                    println!("the PostgreSQL database is restored into the one --database names");
                }
                (backup::DatabaseKind::Postgres, None) => {
                    let dump = data_dir.join(backup::PG_DUMP_FILE);
                    println!(
                        "the PostgreSQL database is NOT restored yet: its dump is {}.\n\
                         Load it into a new, empty database (URL) with\n  {}\n\
                         then remove the dump and serve with --data-dir {} --database URL",
                        dump.display(),
                        backup::pg_restore_hint(&dump),
                        data_dir.display()
                    );
                }
                (backup::DatabaseKind::Sqlite, Some(_)) => {
                    println!(
                        "the archive holds an SQLite database ({}); --database was not used \
                         (`pbx migrate --from DIR --to URL` copies it into PostgreSQL)",
                        data_dir.join(store::DB_FILE).display()
                    );
                }
                (backup::DatabaseKind::Sqlite, None) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_does_not_repeat_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::from(Error::File {
            path: PathBuf::from("/x.toml"),
            source: io,
        });
        assert_eq!(error_line(&e), "/x.toml: no such file");
        let e = anyhow::anyhow!("inner\nline").context("outer");
        assert_eq!(error_line(&e), "outer: inner line");
    }
}
