//! The provisioning commands (`tenant`, `extension`, `cdr`, `plugin`, `policy`,
//! `trunk`, `did`, `user`, `audit`, `ban`, `approval`) and the demo set-up, run straight against the store. Plugin
//! files are validated by the plugin runtime before anything is stored. A running server notices the changes through
//! the store's generation counter.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use pbx_plugin::World;
use rand::Rng;
use store::{Cdr, CdrFilter, Store, Tenant};

use crate::cli::{
    ApprovalCommand, AuditCommand, BanCommand, BanExportFormat, CdrCommand, CdrFormat,
    ClusterCommand, Command, DidCommand, ExtensionCommand, NodeCommand, PluginCommand,
    PolicyCommand, PolicyConfigCommand, PromptCommand, RoleArg, StorageCommand, TenantCommand,
    TrunkCommand, UserCommand, VoicemailCommand,
};
use crate::server::ServeOptions;
use crate::{Error, Result};

/// The demo tenant's name.
pub const DEMO_TENANT: &str = "acme";
/// The demo tenant's SIP domain (and digest realm). `.example` is reserved
/// (RFC 2606), so it can never clash with a real domain.
pub const DEMO_DOMAIN: &str = "acme.example";
/// The demo extensions.
pub const DEMO_EXTENSIONS: [&str; 2] = ["1000", "1001"];
/// Length of generated passwords.
pub const GENERATED_PASSWORD_LEN: usize = 16;

/// Runs one provisioning command. `input` is standard input (for
/// `--password-stdin`) and `out` standard output.
pub async fn execute(
    store: &Store,
    command: Command,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        Command::Tenant(TenantCommand::Add { name, domain }) => {
            let tenant = store.add_tenant(&name, &domain).await?;
            writeln!(
                out,
                "added tenant {} (domain {})",
                tenant.name, tenant.realm
            )?;
        }
        Command::Tenant(TenantCommand::AddDomain { tenant, domain }) => {
            let t = tenant_named(store, &tenant).await?;
            store.add_domain(t.id, &domain).await?;
            writeln!(
                out,
                "added domain {} to tenant {}",
                domain.to_ascii_lowercase(),
                t.name
            )?;
        }
        Command::Tenant(TenantCommand::Allow {
            tenant,
            network,
            extension,
        }) => {
            let t = tenant_named(store, &tenant).await?;
            let acl = store
                .allow_network(t.id, extension.as_deref(), &network)
                .await?;
            writeln!(
                out,
                "allowed {} for {}",
                acl.cidr,
                scope(&t.name, &acl.extension)
            )?;
        }
        Command::Tenant(TenantCommand::Disallow {
            tenant,
            network,
            extension,
        }) => {
            let t = tenant_named(store, &tenant).await?;
            store
                .disallow_network(t.id, extension.as_deref(), &network)
                .await?;
            writeln!(out, "removed {network} from {}", scope(&t.name, &extension))?;
        }
        Command::Tenant(TenantCommand::Networks { tenant }) => {
            let t = tenant_named(store, &tenant).await?;
            for acl in store.list_networks(t.id).await? {
                let ext = acl.extension.as_deref().unwrap_or("*");
                writeln!(out, "{ext}\t{}", acl.cidr)?;
            }
        }
        Command::Tenant(TenantCommand::Retention {
            tenant,
            cdr_days,
            alert_days,
            default,
        }) => {
            let t = tenant_named(store, &tenant).await?;
            let (mut cdr, mut alert) = store.record_retention(t.id).await?;
            if default || cdr_days.is_some() || alert_days.is_some() {
                if default {
                    (cdr, alert) = (None, None);
                }
                cdr = cdr_days.or(cdr);
                alert = alert_days.or(alert);
                store.set_record_retention(t.id, cdr, alert).await?;
                let record = store::AuditRecord {
                    at_ms: now_ms(),
                    actor: "cli".into(),
                    role: "cli".into(),
                    tenant: Some(t.id),
                    source: "local".into(),
                    action: "tenant.retention".into(),
                    detail: serde_json::json!({ "cdr_days": cdr, "alert_days": alert }).to_string(),
                };
                store.append_audit(&record).await?;
            }
            let shown =
                |d: Option<u32>| d.map_or("provider default".to_string(), |d| format!("{d} days"));
            writeln!(
                out,
                "tenant {}: call records {}, alerts {}",
                t.name,
                shown(cdr),
                shown(alert)
            )?;
        }
        Command::Tenant(TenantCommand::Limits {
            tenant,
            max_concurrent,
            max_concurrent_extension,
            max_calls_per_second,
            daily_cap_cents,
            media_storage_bytes,
            max_media_sessions,
            recording_minutes,
        }) => {
            let t = tenant_named(store, &tenant).await?;
            let limits = store::TenantLimits {
                max_concurrent,
                max_concurrent_extension,
                max_calls_per_second,
                daily_cap_cents,
                media_storage_bytes,
                max_media_sessions,
                recording_minutes,
            };
            store.set_tenant_limits(t.id, &limits).await?;
            let show = |v: Option<u64>| v.map_or_else(|| "default".to_string(), |v| v.to_string());
            writeln!(
                out,
                "limits of {}: concurrent {}, per extension {}, per second {}, daily cap {} cents, \
                 media storage {} bytes, media sessions {}, recording {} minutes",
                t.name,
                show(max_concurrent.map(u64::from)),
                show(max_concurrent_extension.map(u64::from)),
                show(max_calls_per_second.map(u64::from)),
                show(daily_cap_cents),
                show(media_storage_bytes),
                show(max_media_sessions.map(u64::from)),
                show(recording_minutes.map(u64::from)),
            )?;
        }
        Command::Tenant(TenantCommand::Set {
            tenant,
            media_encryption,
            digest,
            call_recording,
        }) => {
            let t = tenant_named(store, &tenant).await?;
            if let Some(on) = call_recording {
                store.set_call_recording(t.id, on).await?;
                let state = if on { "on" } else { "off" };
                writeln!(out, "tenant {tenant}: call recording {state}")?;
            }
            if let Some(policy) = media_encryption {
                store.set_media_encryption(t.id, policy).await?;
                writeln!(out, "tenant {tenant}: media encryption {}", policy.as_str())?;
            }
            if let Some(digest) = &digest {
                store.set_tenant_digest(t.id, digest.stored()).await?;
                writeln!(out, "tenant {tenant}: digest {digest}")?;
            }
            if media_encryption.is_none() && digest.is_none() && call_recording.is_none() {
                writeln!(out, "tenant {tenant}: nothing to change")?;
            }
        }
        Command::Tenant(TenantCommand::Calendar {
            tenant,
            time_zone,
            holiday,
        }) => {
            let t = tenant_named(store, &tenant).await?;
            let mut calendar = store.calendar(t.id).await?;
            if time_zone.is_some() || !holiday.is_empty() {
                if let Some(zone) = time_zone {
                    calendar.time_zone = zone;
                }
                if !holiday.is_empty() {
                    calendar.holidays = holiday
                        .iter()
                        .map(|h| match h.split_once('=') {
                            Some((date, name)) => Ok(store::Holiday {
                                date: date.trim().to_string(),
                                name: name.trim().to_string(),
                            }),
                            None => Err(Error::Invalid(format!(
                                "holiday {h:?}: expected DATE=NAME, e.g. 2026-12-25=Christmas"
                            ))),
                        })
                        .collect::<Result<Vec<_>>>()?;
                }
                store.set_calendar(t.id, &calendar).await?;
            }
            writeln!(out, "tenant {tenant}: time zone {}", calendar.time_zone)?;
            for h in &calendar.holidays {
                writeln!(out, "{}\t{}", h.date, h.name)?;
            }
        }
        Command::Tenant(TenantCommand::List) => {
            for t in store.list_tenants().await? {
                let status = t.status.as_str();
                writeln!(out, "{}\t{}\t{}", t.name, status, t.domains.join(","))?;
            }
        }
        Command::Extension(ExtensionCommand::Add {
            tenant,
            extension,
            password,
            password_stdin,
        }) => {
            let tenant = tenant_named(store, &tenant).await?;
            let password = match (password, password_stdin) {
                (Some(p), false) => p,
                (None, true) => read_password(input)?,
                _ => {
                    return Err(Error::Invalid(
                        "give exactly one of --password and --password-stdin".into(),
                    ));
                }
            };
            store
                .add_extension(tenant.id, &extension, &password)
                .await?;
            writeln!(out, "added extension {extension} to {}", tenant.name)?;
        }
        Command::Extension(ExtensionCommand::Import { tenant, file }) => {
            let tenant = tenant_named(store, &tenant).await?;
            let rows = read_import_file(&file)?;
            let n = store.import_extensions(tenant.id, &rows).await?;
            writeln!(out, "imported {n} extensions into {}", tenant.name)?;
        }
        Command::Extension(ExtensionCommand::List { tenant }) => {
            let tenant = tenant_named(store, &tenant).await?;
            for ext in store.list_extensions(tenant.id).await? {
                let state = if ext.enabled { "enabled" } else { "disabled" };
                let digest = ext
                    .digest
                    .map_or_else(|| "default".to_owned(), |d| d.to_string());
                writeln!(out, "{}\t{state}\t{digest}", ext.number)?;
            }
        }
        Command::Extension(ExtensionCommand::Set {
            tenant,
            extension,
            digest,
        }) => {
            let t = tenant_named(store, &tenant).await?;
            store
                .set_extension_digest(t.id, &extension, digest.stored())
                .await?;
            writeln!(out, "extension {extension} of {tenant}: digest {digest}")?;
        }
        Command::Extension(ExtensionCommand::Forward {
            tenant,
            extension,
            always,
            busy,
            no_answer,
            no_answer_secs,
            dnd,
            clear,
        }) => {
            let t = tenant_named(store, &tenant).await?;
            let mut forwarding = if clear {
                store::Forwarding::default()
            } else {
                store.forwarding(t.id, &extension).await?
            };
            // Given: replaces; given empty: removes.
            let target = |given: Option<String>, slot: &mut Option<String>| {
                if let Some(target) = given {
                    *slot = Some(target).filter(|t| !t.is_empty());
                }
            };
            target(always, &mut forwarding.always);
            target(busy, &mut forwarding.busy);
            target(no_answer, &mut forwarding.no_answer);
            if let Some(secs) = no_answer_secs {
                forwarding.no_answer_secs = secs;
            }
            if let Some(dnd) = dnd {
                forwarding.dnd = dnd;
            }
            store.set_forwarding(t.id, &extension, &forwarding).await?;
            audit_cli(
                store,
                "extension.forwarding",
                Some(t.id),
                serde_json::json!({ "number": extension, "forwarding": forwarding }),
            )
            .await?;
            show_forwarding(out, &forwarding)?;
        }
        Command::Extension(ExtensionCommand::Forwarding { tenant, extension }) => {
            let t = tenant_named(store, &tenant).await?;
            show_forwarding(out, &store.forwarding(t.id, &extension).await?)?;
        }
        Command::Cdr(CdrCommand::List {
            tenant,
            limit,
            format,
        }) => {
            let tenant = tenant_named(store, &tenant).await?;
            let filter = CdrFilter {
                limit: Some(limit),
                ..CdrFilter::default()
            };
            let cdrs = store.list_cdrs(tenant.id, &filter).await?;
            match format {
                CdrFormat::Csv => write_cdrs_csv(out, &cdrs)?,
                CdrFormat::Json => {
                    serde_json::to_writer_pretty(&mut *out, &cdrs)
                        .map_err(|e| Error::Io(e.into()))?;
                    writeln!(out)?;
                }
            }
        }
        Command::Plugin(command) => plugin(store, command, out).await?,
        Command::Policy(command) => policy(store, command, out).await?,
        Command::Storage(command) => storage(store, command, out).await?,
        Command::Trunk(command) => trunk(store, command, input, out).await?,
        Command::Did(command) => did(store, command, out).await?,
        Command::Prompt(command) => prompt(store, command, out).await?,
        Command::Voicemail(command) => voicemail(store, command, out).await?,
        Command::User(UserCommand::Add {
            username,
            role,
            tenant,
            password_stdin: _,
        }) => {
            let password = read_password(input)?;
            let role = match role {
                RoleArg::ProviderAdmin => store::UserRole::ProviderAdmin,
                RoleArg::TenantAdmin => store::UserRole::TenantAdmin,
                RoleArg::User => store::UserRole::User,
            };
            pbx_api::add_user(store, &username, role, tenant.as_deref(), &password)
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?;
            writeln!(out, "added user {username} ({})", role.as_str())?;
        }
        Command::Audit(AuditCommand::Verify) => {
            let report = pbx_api::verify_audit(store)
                .await
                .map_err(|e| Error::Invalid(format!("cannot read the audit log: {e}")))?;
            if !report.is_intact() {
                return Err(Error::Invalid(format!(
                    "audit log is broken ({} entries read): {}",
                    report.entries,
                    report.problems.join("; ")
                )));
            }
            if report.unkeyed > 0 {
                writeln!(
                    out,
                    "audit log intact: {} entries ({} written before the chain was keyed)",
                    report.entries, report.unkeyed
                )?;
            } else {
                writeln!(out, "audit log intact: {} entries", report.entries)?;
            }
            if report.checkpoints > 0 {
                writeln!(
                    out,
                    "entries 1..{} purged by retention behind {} verified checkpoints",
                    report.purged_through, report.checkpoints
                )?;
            }
        }
        Command::Audit(AuditCommand::Purge { older_than_days }) => {
            let now = now_ms();
            let before = now - i64::from(older_than_days) * 86_400_000;
            match store.purge_audit(before, now).await? {
                Some(c) => {
                    audit_cli(
                        store,
                        "audit.purge",
                        None,
                        serde_json::json!({
                            "checkpoint": c.id,
                            "through_id": c.through_id,
                            "entries": c.entries,
                            "hash": c.hash,
                        }),
                    )
                    .await?;
                    writeln!(
                        out,
                        "purged audit entries up to {} ({} entries), checkpoint {}",
                        c.through_id, c.entries, c.id
                    )?;
                }
                None => writeln!(out, "no audit entry is older than {older_than_days} days")?,
            }
        }
        Command::Ban(command) => ban(store, command, out).await?,
        Command::Approval(command) => approval(store, command, out).await?,
        Command::Cluster(ClusterCommand::Status { json }) => {
            cluster_status(store, json, out).await?
        }
        Command::Node(command) => node(store, command, out).await?,
        Command::Serve(_)
        | Command::Demo(_)
        | Command::Api(_)
        | Command::Backup(_)
        | Command::Tenant(TenantCommand::Export { .. } | TenantCommand::Import { .. })
        | Command::Migrate(_)
        | Command::Version { .. }
        | Command::Doctor { .. }
        | Command::CompilePlugin { .. } => {
            return Err(Error::Invalid("not a provisioning command".into()));
        }
    }
    Ok(())
}

async fn ban(store: &Store, command: BanCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        BanCommand::List => {
            for b in store.list_bans(now_ms()).await? {
                writeln!(
                    out,
                    "{}\t{}\tcount={}\tfirst={}\tlast={}\tuntil={}\ttried={}",
                    b.ip,
                    b.reason,
                    b.count,
                    format_utc(b.first_ms),
                    format_utc(b.last_ms),
                    format_utc(b.until_ms),
                    b.tried.join(",")
                )?;
            }
        }
        BanCommand::Remove { addr } => {
            if !store.remove_ban(addr).await? {
                return Err(Error::Invalid(format!("{addr} is not banned")));
            }
            writeln!(out, "lifted the ban of {}", addr.to_canonical())?;
        }
        BanCommand::Export { format } => {
            let bans = bans_left(store, now_ms()).await?;
            out.write_all(firewall_script(format, &bans).as_bytes())?;
        }
        BanCommand::Sync {
            format,
            every,
            command,
            once,
        } => ban_sync(store, format, every, command, once, out).await?,
    }
    Ok(())
}

/// How a node is, as `pbx cluster status` says: the operator's state, or
/// down when its heartbeat is older than [`store::DEAD_AFTER_MS`].
fn node_health(node: &store::ClusterNode, now: i64) -> &'static str {
    if node.is_up(now) {
        node.state.as_str()
    } else {
        "down"
    }
}

async fn cluster_status(store: &Store, json: bool, out: &mut dyn Write) -> Result<()> {
    let now = now_ms();
    let nodes = store.list_nodes().await?;
    let live: Vec<&store::ClusterNode> = nodes.iter().filter(|n| n.is_up(now)).collect();
    let calls: u64 = live.iter().map(|n| n.calls_up).sum();
    let registrations: u64 = live.iter().map(|n| n.registrations).sum();
    if json {
        let list: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "id": n.id,
                    "state": node_health(n, now),
                    "calls_up": n.calls_up,
                    "registrations": n.registrations,
                    "heartbeat_ms": n.heartbeat_ms,
                    "heartbeat_age_ms": (now - n.heartbeat_ms).max(0),
                    "started_at_ms": n.started_at_ms,
                    "version": n.version,
                    "sip_addresses": n.sip_addresses,
                    "api_address": n.api_address,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "nodes": list,
            "up": live.len(),
            "calls_up": calls,
            "registrations": registrations,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?
        )?;
        return Ok(());
    }
    if nodes.is_empty() {
        writeln!(
            out,
            "no node has joined (nodes run with `[cluster] node` set)"
        )?;
        return Ok(());
    }
    writeln!(out, "NODE\tSTATE\tCALLS\tBINDINGS\tHEARTBEAT\tVERSION\tSIP")?;
    for n in &nodes {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{:.1}s ago\t{}\t{}",
            n.id,
            node_health(n, now),
            n.calls_up,
            n.registrations,
            (now - n.heartbeat_ms).max(0) as f64 / 1000.0,
            n.version,
            n.sip_addresses
        )?;
    }
    writeln!(
        out,
        "{} of {} nodes up, {calls} calls in progress, {registrations} bindings",
        live.len(),
        nodes.len()
    )?;
    Ok(())
}

async fn node(store: &Store, command: NodeCommand, out: &mut dyn Write) -> Result<()> {
    let (id, state, action, done) = match command {
        NodeCommand::Drain { id } => (id, store::NodeState::Draining, "node.drain", "draining"),
        NodeCommand::Resume { id } => (id, store::NodeState::Active, "node.resume", "active"),
    };
    if !store.set_node_state(&id, state).await? {
        return Err(Error::Invalid(format!(
            "no node {id:?} has joined the cluster (see `pbx cluster status`)"
        )));
    }
    audit_cli(store, action, None, serde_json::json!({ "node": id })).await?;
    writeln!(
        out,
        "node {id}: {done} (the node takes it in within a second)"
    )?;
    Ok(())
}

/// The bans in force at `now`, each with the whole seconds it has left.
async fn bans_left(store: &Store, now: i64) -> Result<Vec<(std::net::IpAddr, i64)>> {
    Ok(store
        .list_bans(now)
        .await?
        .into_iter()
        .map(|b| {
            (
                b.ip.to_canonical(),
                ((b.until_ms - now).max(1000) + 999) / 1000,
            )
        })
        .collect())
}

/// `pbx ban sync`: applies the firewall script whenever the bans (address
/// and end) change, and at the start; a failed apply is retried at the next
/// check. Runs until interrupted, or once.
async fn ban_sync(
    store: &Store,
    format: BanExportFormat,
    every: u64,
    command: Option<std::path::PathBuf>,
    once: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let (program, args): (std::path::PathBuf, Vec<&str>) = match (command, format) {
        (Some(p), _) => (p, Vec::new()),
        (None, BanExportFormat::Nft) => ("nft".into(), vec!["-f", "-"]),
        (None, BanExportFormat::Ipset) => ("ipset".into(), vec!["restore"]),
    };
    let mut applied: Option<Vec<(std::net::IpAddr, i64)>> = None;
    loop {
        let now = now_ms();
        let mut ends: Vec<(std::net::IpAddr, i64)> = store
            .list_bans(now)
            .await?
            .into_iter()
            .map(|b| (b.ip.to_canonical(), b.until_ms))
            .collect();
        ends.sort();
        if applied.as_ref() != Some(&ends) {
            let script = firewall_script(format, &bans_left(store, now).await?);
            match apply_script(&program, &args, &script).await {
                Ok(()) => {
                    writeln!(out, "applied {} bans", ends.len())?;
                    out.flush()?;
                    applied = Some(ends);
                }
                Err(e) if once => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "ban sync failed; retrying");
                }
            }
        }
        if once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(std::time::Duration::from_secs(every)) => {}
        }
    }
}

/// Runs `program args` with `script` on its standard input; an exit other
/// than success is an error naming its output.
async fn apply_script(program: &std::path::Path, args: &[&str], script: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Invalid(format!("cannot run {}: {e}", program.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that stops reading early (it failed) closes the pipe:
        // its exit status and output say why.
        match stdin.write_all(script.as_bytes()).await {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| Error::Invalid(format!("{} did not finish in 30 s", program.display())))??;
    if !done.status.success() {
        return Err(Error::Invalid(format!(
            "{} failed ({}): {}",
            program.display(),
            done.status,
            String::from_utf8_lossy(&done.stderr).trim()
        )));
    }
    Ok(())
}

/// The bans (address, seconds left) as a script for the kernel's firewall;
/// each run replaces the sets' contents, and the kernel drops each entry
/// when its ban ends. The sets and the rule that drops their sources are
/// made once by the operator (`docs/ARCHITECTURE.md`, "Firewall").
pub(crate) fn firewall_script(format: BanExportFormat, bans: &[(std::net::IpAddr, i64)]) -> String {
    let (v4, v6): (Vec<_>, Vec<_>) = bans.iter().partition(|(ip, _)| ip.is_ipv4());
    let mut s = String::new();
    match format {
        BanExportFormat::Nft => {
            s.push_str("# pbx bans for `nft -f`: table inet pbx, sets banned4 and banned6\n");
            for (set, list) in [("banned4", &v4), ("banned6", &v6)] {
                s.push_str(&format!("flush set inet pbx {set}\n"));
                if !list.is_empty() {
                    let elements: Vec<String> = list
                        .iter()
                        .map(|(ip, secs)| format!("{ip} timeout {secs}s"))
                        .collect();
                    s.push_str(&format!(
                        "add element inet pbx {set} {{ {} }}\n",
                        elements.join(", ")
                    ));
                }
            }
        }
        BanExportFormat::Ipset => {
            s.push_str("# pbx bans for `ipset restore`\n");
            for (set, family, list) in [("pbx-banned4", "inet", &v4), ("pbx-banned6", "inet6", &v6)]
            {
                s.push_str(&format!(
                    "create {set} hash:ip family {family} timeout 0 -exist\nflush {set}\n"
                ));
                for (ip, secs) in list.iter() {
                    s.push_str(&format!("add {set} {ip} timeout {secs} -exist\n"));
                }
            }
        }
    }
    s
}

async fn approval(store: &Store, command: ApprovalCommand, out: &mut dyn Write) -> Result<()> {
    let names: HashMap<store::TenantId, String> = store
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let name = |id: store::TenantId| names.get(&id).cloned().unwrap_or_else(|| id.to_string());
    let (id, by, grant) = match command {
        ApprovalCommand::List { tenant } => {
            let list = match tenant {
                Some(t) => {
                    store
                        .list_approvals(tenant_named(store, &t).await?.id)
                        .await?
                }
                None => store.list_pending_approvals().await?,
            };
            for a in list {
                let (kind, target) = match &a.target {
                    store::ApprovalTarget::Class(c) => ("class", c),
                    store::ApprovalTarget::Prefix(p) => ("prefix", p),
                };
                writeln!(
                    out,
                    "{}\t{}\t{kind}:{target}\t{}\tsample={}\trequested={}\tdecided_by={}",
                    a.id,
                    name(a.tenant),
                    a.status.as_str(),
                    a.sample_number.as_deref().unwrap_or("-"),
                    format_utc(a.requested_ms),
                    a.decided_by.as_deref().unwrap_or("-"),
                )?;
            }
            return Ok(());
        }
        ApprovalCommand::Grant { id, by } => (id, by, true),
        ApprovalCommand::Deny { id, by } => (id, by, false),
    };
    let by = by.trim();
    if by.is_empty() || by.len() > 128 || by.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "--by must name who decides (1 to 128 printable characters)".into(),
        ));
    }
    let pending = store
        .list_pending_approvals()
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| Error::Invalid(format!("no pending approval {id}")))?;
    let now = now_ms();
    let decided = if grant {
        store.grant_approval(pending.tenant, id, by, now).await?
    } else {
        store.deny_approval(pending.tenant, id, by, now).await?
    };
    let action = if grant {
        "approval.grant"
    } else {
        "approval.deny"
    };
    let record = store::AuditRecord {
        at_ms: now,
        actor: by.to_owned(),
        role: "cli".into(),
        tenant: Some(decided.tenant),
        source: "local".into(),
        action: action.into(),
        detail: serde_json::json!({ "id": id, "target": decided.target }).to_string(),
    };
    store.append_audit(&record).await?;
    writeln!(
        out,
        "{} approval {id} of tenant {}",
        decided.status.as_str(),
        name(decided.tenant)
    )?;
    Ok(())
}

async fn plugin(store: &Store, command: PluginCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        PluginCommand::Install { tenant, file } => {
            let tenant = tenant_named(store, &tenant).await?;
            let wasm = read_valid_plugin(World::Dialplan, &file)?;
            let v = store.install_dialplan(tenant.id, &wasm, now_ms()).await?;
            writeln!(
                out,
                "installed dial plan version {} for {} (sha256 {}); it is active",
                v.version, tenant.name, v.hash
            )?;
        }
        PluginCommand::List { tenant } => {
            let tenant = tenant_named(store, &tenant).await?;
            for v in store.list_dialplans(tenant.id).await? {
                let marker = if v.active { "\t*" } else { "" };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}{marker}",
                    v.version,
                    hash_prefix(&v.hash),
                    v.size,
                    format_utc(v.uploaded_at_ms)
                )?;
            }
        }
        PluginCommand::Rollback { tenant, version } => {
            let tenant = tenant_named(store, &tenant).await?;
            let v = store.rollback_dialplan(tenant.id, version).await?;
            writeln!(
                out,
                "{}: dial plan version {} is active (sha256 {})",
                tenant.name, v.version, v.hash
            )?;
        }
    }
    Ok(())
}

async fn policy(store: &Store, command: PolicyCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        PolicyCommand::Install { name, file, tenant } => {
            let tenant = match tenant {
                Some(name) => Some(tenant_named(store, &name).await?),
                None => None,
            };
            let wasm = read_valid_plugin(World::Policy, &file)?;
            let p = store
                .install_policy(&name, tenant.as_ref().map(|t| t.id), &wasm, now_ms())
                .await?;
            let scope = match &tenant {
                Some(t) => format!("tenant {}", t.name),
                None => "every tenant".to_owned(),
            };
            writeln!(
                out,
                "installed policy {} for {scope} (sha256 {})",
                p.name, p.hash
            )?;
        }
        PolicyCommand::Config(command) => policy_config(store, command, out).await?,
        PolicyCommand::Remove { name } => {
            store.remove_policy(&name).await?;
            writeln!(out, "removed policy {name}")?;
        }
        PolicyCommand::Rollback { name } => {
            let p = store.rollback_policy(&name, now_ms()).await?;
            audit_cli(
                store,
                "policy.rollback",
                p.tenant,
                serde_json::json!({ "name": p.name, "hash": p.hash }),
            )
            .await?;
            writeln!(out, "policy {} is back to sha256 {}", p.name, p.hash)?;
        }
        PolicyCommand::List => {
            let names: HashMap<_, _> = store
                .list_tenants()
                .await?
                .into_iter()
                .map(|t| (t.id, t.name))
                .collect();
            for p in store.list_policies().await? {
                let scope = match p.tenant {
                    Some(id) => names.get(&id).cloned().unwrap_or_else(|| id.to_string()),
                    None => ALL_TENANTS.to_owned(),
                };
                writeln!(
                    out,
                    "{}\t{scope}\t{}\t{}",
                    p.name,
                    hash_prefix(&p.hash),
                    format_utc(p.installed_at_ms)
                )?;
            }
        }
    }
    Ok(())
}

/// An extension's forwarding, one `name\tvalue` line each (`-`: not set).
fn show_forwarding(out: &mut dyn Write, f: &store::Forwarding) -> Result<()> {
    let target = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
    writeln!(out, "always\t{}", target(&f.always))?;
    writeln!(out, "busy\t{}", target(&f.busy))?;
    writeln!(out, "no-answer\t{}", target(&f.no_answer))?;
    writeln!(out, "no-answer-secs\t{}", f.no_answer_secs)?;
    writeln!(out, "dnd\t{}", if f.dnd { "on" } else { "off" })?;
    Ok(())
}

/// Appends a CLI change to the audit log (actor `cli`, source `local`).
async fn audit_cli(
    store: &Store,
    action: &str,
    tenant: Option<store::TenantId>,
    detail: serde_json::Value,
) -> Result<()> {
    let record = store::AuditRecord {
        at_ms: now_ms(),
        actor: "cli".into(),
        role: "cli".into(),
        tenant,
        source: "local".into(),
        action: action.into(),
        detail: detail.to_string(),
    };
    store.append_audit(&record).await?;
    Ok(())
}

/// `pbx policy config ...`: the provider's configuration of a policy.
async fn policy_config(
    store: &Store,
    command: PolicyConfigCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let scope_of =
        |tenant: &Option<Tenant>| store::ConfigScope::Provider(tenant.as_ref().map(|t| t.id));
    let label = |tenant: &Option<Tenant>| match tenant {
        Some(t) => format!("tenant {}", t.name),
        None => "every tenant".to_owned(),
    };
    match command {
        PolicyConfigCommand::Set {
            name,
            key,
            value,
            tenant,
        } => {
            let tenant = optional_tenant(store, tenant.as_deref()).await?;
            store
                .policy_config_set(scope_of(&tenant), &name, &key, &value)
                .await?;
            audit_cli(
                store,
                "policy.config.set",
                tenant.as_ref().map(|t| t.id),
                serde_json::json!({ "policy": name, "key": key, "value": value }),
            )
            .await?;
            writeln!(out, "{name}: {key} = {value} for {}", label(&tenant))?;
        }
        PolicyConfigCommand::Get { name, key, tenant } => {
            let tenant = optional_tenant(store, tenant.as_deref()).await?;
            match store
                .policy_config_get(scope_of(&tenant), &name, &key)
                .await?
            {
                Some(value) => writeln!(out, "{value}")?,
                None => {
                    return Err(Error::Invalid(format!(
                        "{name}: {key} is not set for {}",
                        label(&tenant)
                    )));
                }
            }
        }
        PolicyConfigCommand::List { name, tenant } => {
            let tenant = optional_tenant(store, tenant.as_deref()).await?;
            for (key, value) in store.policy_config_list(scope_of(&tenant), &name).await? {
                writeln!(out, "{key}\t{value}")?;
            }
        }
        PolicyConfigCommand::Delete { name, key, tenant } => {
            let tenant = optional_tenant(store, tenant.as_deref()).await?;
            if !store
                .policy_config_delete(scope_of(&tenant), &name, &key)
                .await?
            {
                return Err(Error::Invalid(format!(
                    "{name}: {key} is not set for {}",
                    label(&tenant)
                )));
            }
            audit_cli(
                store,
                "policy.config.delete",
                tenant.as_ref().map(|t| t.id),
                serde_json::json!({ "policy": name, "key": key }),
            )
            .await?;
            writeln!(out, "{name}: {key} removed for {}", label(&tenant))?;
        }
    }
    Ok(())
}

/// `pbx storage ...`: a tenant's plugin storage.
async fn storage(store: &Store, command: StorageCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        StorageCommand::Set { tenant, key, value } => {
            let t = tenant_named(store, &tenant).await?;
            store
                .plugin_kv_admin_put(t.id, &key, Some(value.as_bytes()))
                .await?;
            audit_cli(
                store,
                "storage.set",
                Some(t.id),
                serde_json::json!({ "key": key, "bytes": value.len() }),
            )
            .await?;
            writeln!(out, "{}: {key} set ({} bytes)", t.name, value.len())?;
        }
        StorageCommand::Get { tenant, key } => {
            let t = tenant_named(store, &tenant).await?;
            match store.plugin_kv_get(t.id, &key).await? {
                Some(value) => writeln!(out, "{}", show_bytes(&value))?,
                None => {
                    return Err(Error::Invalid(format!("{}: {key} is not set", t.name)));
                }
            }
        }
        StorageCommand::List { tenant } => {
            let t = tenant_named(store, &tenant).await?;
            for (key, value) in store.plugin_kv_list(t.id).await? {
                writeln!(out, "{key}\t{}", show_bytes(&value))?;
            }
        }
        StorageCommand::Delete { tenant, key } => {
            let t = tenant_named(store, &tenant).await?;
            if !store.plugin_kv_admin_put(t.id, &key, None).await? {
                return Err(Error::Invalid(format!("{}: {key} is not set", t.name)));
            }
            audit_cli(
                store,
                "storage.delete",
                Some(t.id),
                serde_json::json!({ "key": key }),
            )
            .await?;
            writeln!(out, "{}: {key} removed", t.name)?;
        }
    }
    Ok(())
}

/// A stored value as text: itself when it is printable UTF-8, else `hex:...`.
fn show_bytes(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => format!("hex:{}", hex::encode(value)),
    }
}

async fn optional_tenant(store: &Store, name: Option<&str>) -> Result<Option<Tenant>> {
    match name {
        Some(name) => Ok(Some(tenant_named(store, name).await?)),
        None => Ok(None),
    }
}

async fn trunk(
    store: &Store,
    command: TrunkCommand,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        TrunkCommand::Add {
            tenant,
            name,
            uri,
            username,
            password_stdin,
        } => {
            let tenant = tenant_named(store, &tenant).await?;
            let password = if password_stdin {
                Some(read_password(input)?)
            } else {
                None
            };
            let t = store
                .add_trunk(
                    tenant.id,
                    &name,
                    &uri,
                    username.as_deref(),
                    password.as_deref(),
                )
                .await?;
            let registers = match &t.username {
                Some(user) => format!(", registers as {user}"),
                None => String::new(),
            };
            writeln!(
                out,
                "added trunk {} to {} ({}{registers})",
                t.name,
                tenant.name,
                t.uri()
            )?;
        }
        TrunkCommand::List { tenant } => {
            let tenant = tenant_named(store, &tenant).await?;
            for t in store.list_trunks(tenant.id).await? {
                let register = if t.register {
                    "register"
                } else {
                    "no-register"
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{register}",
                    t.name,
                    t.uri(),
                    t.username.as_deref().unwrap_or("-")
                )?;
            }
        }
        TrunkCommand::Remove { tenant, name } => {
            let tenant = tenant_named(store, &tenant).await?;
            store.remove_trunk(tenant.id, &name).await?;
            writeln!(out, "removed trunk {name} from {}", tenant.name)?;
        }
    }
    Ok(())
}

async fn did(store: &Store, command: DidCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        DidCommand::Add { tenant, number } => {
            let tenant = tenant_named(store, &tenant).await?;
            store.add_did(tenant.id, &number).await?;
            writeln!(out, "added DID {number} to {}", tenant.name)?;
        }
        DidCommand::List { tenant } => {
            let tenant = tenant_named(store, &tenant).await?;
            for number in store.list_dids(tenant.id).await? {
                writeln!(out, "{number}")?;
            }
        }
        DidCommand::Remove { number } => {
            store.remove_did(&number).await?;
            writeln!(out, "removed DID {number}")?;
        }
    }
    Ok(())
}

/// The content type a prompt file's extension names.
fn prompt_type(path: &Path) -> Result<&'static str> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("wav") => Ok("audio/wav"),
        Some("ul" | "pcmu" | "ulaw") => Ok("audio/basic"),
        Some("al" | "pcma" | "alaw") => Ok("audio/pcma"),
        _ => Err(Error::Invalid(format!(
            "{}: a prompt is a .wav (16-bit PCM, 8 kHz, mono) or raw G.711 (.ul, .al)",
            path.display()
        ))),
    }
}

async fn prompt(store: &Store, command: PromptCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        PromptCommand::Upload { tenant, name, file } => {
            let tenant = tenant_named(store, &tenant).await?;
            if !pbx_api::valid_prompt_name(&name) {
                return Err(Error::Invalid(
                    "a prompt name is 1 to 64 letters, digits and -_.".into(),
                ));
            }
            let kind = prompt_type(&file)?;
            let bytes = std::fs::read(&file).map_err(|source| Error::File {
                path: file.clone(),
                source,
            })?;
            let (wav, ms) = pbx_api::prompt_wav(kind, &bytes)
                .map_err(|why| Error::Invalid(format!("{}: {why}", file.display())))?;
            let info = store.put_prompt(tenant.id, &name, &wav, ms).await?;
            writeln!(
                out,
                "prompt {} of {}: {} ms, {} bytes",
                info.name, tenant.name, info.duration_ms, info.bytes
            )?;
        }
        PromptCommand::List { tenant } => {
            let tenant = tenant_named(store, &tenant).await?;
            for p in store.prompts(tenant.id).await? {
                writeln!(out, "{}\t{} ms\t{} bytes", p.name, p.duration_ms, p.bytes)?;
            }
        }
        PromptCommand::Delete { tenant, name } => {
            let tenant = tenant_named(store, &tenant).await?;
            if !store.delete_prompt(tenant.id, &name).await? {
                return Err(Error::Invalid(format!(
                    "{} has no prompt {name}",
                    tenant.name
                )));
            }
            writeln!(out, "deleted prompt {name} of {}", tenant.name)?;
        }
    }
    Ok(())
}

async fn voicemail(store: &Store, command: VoicemailCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        VoicemailCommand::List { tenant, mailbox } => {
            let tenant = tenant_named(store, &tenant).await?;
            for m in store.voicemail_messages(tenant.id, &mailbox).await? {
                let state = match (m.heard, m.saved) {
                    (_, true) => "saved",
                    (true, false) => "heard",
                    (false, false) => "new",
                };
                writeln!(
                    out,
                    "{}\t{}\t{} ms\tfrom {}\t{state}",
                    m.id, m.created_at_ms, m.duration_ms, m.caller
                )?;
            }
        }
        VoicemailCommand::Download {
            tenant,
            mailbox,
            id,
            out: path,
        } => {
            let tenant = tenant_named(store, &tenant).await?;
            let Some(wav) = store.voicemail_audio(tenant.id, &mailbox, &id).await? else {
                return Err(Error::Invalid(format!(
                    "mailbox {mailbox} has no message {id}"
                )));
            };
            std::fs::write(&path, &wav).map_err(|source| Error::File {
                path: path.clone(),
                source,
            })?;
            writeln!(out, "wrote {} ({} bytes)", path.display(), wav.len())?;
        }
        VoicemailCommand::Delete {
            tenant,
            mailbox,
            id,
        } => {
            let tenant = tenant_named(store, &tenant).await?;
            if !store.delete_voicemail(tenant.id, &mailbox, &id).await? {
                return Err(Error::Invalid(format!(
                    "mailbox {mailbox} has no message {id}"
                )));
            }
            writeln!(out, "deleted message {id} of mailbox {mailbox}")?;
        }
        VoicemailCommand::Pin {
            tenant,
            mailbox,
            pin,
        } => {
            let tenant = tenant_named(store, &tenant).await?;
            store.set_voicemail_pin(tenant.id, &mailbox, &pin).await?;
            writeln!(out, "PIN of mailbox {mailbox} set")?;
        }
    }
    Ok(())
}

/// How `policy list` shows a provider-wide policy.
const ALL_TENANTS: &str = "(all tenants)";

/// Reads a plugin file and checks it the way the server will load it (for
/// `world`), so that a file the server would refuse is never stored.
fn read_valid_plugin(world: World, path: &Path) -> Result<Vec<u8>> {
    let wasm = std::fs::read(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })?;
    // A tenant's dial plan slot takes a 0.1 dial plan or a 0.2 call handler.
    let world = match world {
        World::Dialplan => pbx_plugin::handler::dial_plan_world(&wasm),
        other => other,
    };
    validate_plugin(world, &wasm, &path.display().to_string())?;
    Ok(wasm)
}

pub use crate::uploads::compile_uploads_with;

/// Checks a component the way the server will load it (for `world`); `what`
/// names it in the error. Compiling takes a while: call it off the async path.
fn validate_plugin(world: World, wasm: &[u8], what: &str) -> Result<()> {
    crate::uploads::check(world, wasm, what).map_err(|e| Error::Invalid(e.to_string()))
}

/// The first 12 hex digits of a content hash, as listings show it.
fn hash_prefix(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC, proleptic Gregorian).
fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The calendar date `days` after 1970-01-01. Counts in 400-year eras of
/// 146 097 days, with years starting on 1 March so the leap day comes last.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// "tenant acme" or "extension 1000 of acme".
fn scope(tenant: &str, extension: &Option<String>) -> String {
    match extension {
        Some(ext) => format!("extension {ext} of {tenant}"),
        None => format!("tenant {tenant}"),
    }
}

async fn tenant_named(store: &Store, name: &str) -> Result<Tenant> {
    store
        .tenant_by_name(name)
        .await?
        .ok_or_else(|| Error::NoSuchTenant(name.to_owned()))
}

/// Reads one line (the password) from `input`, without its line ending.
fn read_password(input: &mut dyn BufRead) -> Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| Error::Invalid(format!("cannot read the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(Error::Invalid(
            "no password on stdin (expected one line)".into(),
        ));
    }
    Ok(password.to_owned())
}

fn read_import_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })?;
    parse_import(&text).map_err(|(line, message)| Error::ImportRow {
        file: path.display().to_string(),
        line,
        message,
    })
}

/// Parses an import file: one `extension,password` per line; blank lines and a
/// first line `extension,password` are skipped. Whitespace around either field is
/// not part of it; the password is everything after the first comma, so it may
/// itself contain commas. Every row is checked here so that a bad one is reported
/// by its line number; on error the line number (1-based) and the reason.
pub fn parse_import(text: &str) -> std::result::Result<Vec<(String, String)>, (usize, String)> {
    let mut rows = Vec::new();
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    let mut seen_content = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let first = !seen_content;
        seen_content = true;
        let Some((ext, password)) = line.split_once(',') else {
            return Err((line_no, "expected `extension,password`".into()));
        };
        let (ext, password) = (ext.trim(), password.trim());
        if first
            && ext.eq_ignore_ascii_case("extension")
            && password.eq_ignore_ascii_case("password")
        {
            continue;
        }
        store::validate_extension_number(ext)
            .and_then(|()| store::validate_password(password))
            .map_err(|e| (line_no, e.to_string()))?;
        if let Some(earlier) = first_line_of.insert(ext.to_owned(), line_no) {
            return Err((
                line_no,
                format!("extension {ext} already appears on line {earlier}"),
            ));
        }
        rows.push((ext.to_owned(), password.to_owned()));
    }
    if rows.is_empty() {
        return Err((0, "no extensions in the file".into()));
    }
    Ok(rows)
}

fn write_cdrs_csv(out: &mut dyn Write, cdrs: &[Cdr]) -> Result<()> {
    let mut text = String::from(store::CDR_CSV_HEADER);
    for c in cdrs {
        store::write_cdr_csv(&mut text, c);
    }
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// A strong random password: letters and digits (about 95 bits for 16
/// characters), with at least one upper-case letter, one lower-case letter and
/// one digit.
pub fn generate_password(len: usize) -> String {
    let mut rng = rand::rng();
    loop {
        let candidate: String = (&mut rng)
            .sample_iter(rand::distr::Alphanumeric)
            .take(len)
            .map(char::from)
            .collect();
        let has = |f: fn(&char) -> bool| candidate.chars().any(|c| f(&c));
        if len < 3
            || (has(char::is_ascii_uppercase)
                && has(char::is_ascii_lowercase)
                && has(char::is_ascii_digit))
        {
            return candidate;
        }
    }
}

/// The provider admin `pbx demo` creates.
pub const DEMO_ADMIN: &str = "admin";

/// Creates the demo provider admin with a generated password that meets the
/// API's password policy, unless a provider admin exists already; returns the
/// password when one was made.
pub async fn demo_admin(store: &Store) -> Result<Option<String>> {
    if !store.list_provider_admins().await?.is_empty() {
        return Ok(None);
    }
    let password = loop {
        let candidate = generate_password(GENERATED_PASSWORD_LEN + 4);
        if pbx_api::check_policy(DEMO_ADMIN, &candidate).is_ok() {
            break candidate;
        }
    };
    pbx_api::add_user(
        store,
        DEMO_ADMIN,
        store::UserRole::ProviderAdmin,
        None,
        &password,
    )
    .await
    .map_err(|e| Error::Invalid(format!("cannot create the demo admin: {e}")))?;
    Ok(Some(password))
}

/// What `pbx demo` provisioned.
#[derive(Debug, Clone)]
pub struct Demo {
    /// `(extension, password)` for each demo extension.
    pub credentials: Vec<(String, String)>,
    /// The password of the provider admin [`DEMO_ADMIN`], when the demo made it
    /// ([`demo_admin`]).
    pub admin_password: Option<String>,
}

/// Creates the demo tenant and its extensions with fresh passwords. Fails if the
/// tenant already exists (the demo wants a fresh data directory).
pub async fn demo(store: &Store) -> Result<Demo> {
    if store.tenant_by_name(DEMO_TENANT).await?.is_some() {
        return Err(Error::Invalid(format!(
            "tenant `{DEMO_TENANT}` already exists here; run the demo on a fresh data directory"
        )));
    }
    let tenant = store.add_tenant(DEMO_TENANT, DEMO_DOMAIN).await?;
    let mut credentials = Vec::new();
    for ext in DEMO_EXTENSIONS {
        let password = generate_password(GENERATED_PASSWORD_LEN);
        store.add_extension(tenant.id, ext, &password).await?;
        credentials.push((ext.to_owned(), password));
    }
    Ok(Demo {
        credentials,
        admin_password: None,
    })
}

impl Demo {
    /// Prints how to register phones against the demo.
    pub fn print(&self, out: &mut dyn Write, data_dir: &Path, serve: &ServeOptions) -> Result<()> {
        writeln!(out, "PBX demo (data in {})", data_dir.display())?;
        writeln!(
            out,
            "tenant {DEMO_TENANT}, SIP domain and realm {DEMO_DOMAIN}"
        )?;
        for (ext, password) in &self.credentials {
            writeln!(
                out,
                "  extension {ext}  user {ext}@{DEMO_DOMAIN}  password {password}"
            )?;
        }
        for addr in &serve.udp {
            writeln!(out, "  SIP over UDP on {addr}")?;
        }
        for addr in &serve.tcp {
            writeln!(out, "  SIP over TCP on {addr}")?;
        }
        if let Some(api) = &serve.api {
            let scheme = if api.config.plain_http {
                "http"
            } else {
                "https"
            };
            writeln!(
                out,
                "  admin API on {scheme}://{}/api/v1",
                api.config.listen
            )?;
        }
        if let Some(password) = &self.admin_password {
            writeln!(out, "  provider admin {DEMO_ADMIN}  password {password}")?;
        }
        writeln!(out, "Press Ctrl-C to stop.")?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_skips_header_and_blank_lines() {
        let rows =
            parse_import("extension,password\r\n\n1000,secret1\r\n 1001 , p,w \n\n").unwrap();
        assert_eq!(
            rows,
            vec![
                ("1000".to_owned(), "secret1".to_owned()),
                ("1001".to_owned(), "p,w".to_owned())
            ]
        );
    }

    #[test]
    fn import_reports_the_line_of_a_bad_row() {
        assert_eq!(parse_import("1000,a\n\n1 0,b\n").unwrap_err().0, 3);
        assert_eq!(parse_import("1000,a\n1001\n").unwrap_err().0, 2);
        assert_eq!(parse_import("1000,a\n1001,\n").unwrap_err().0, 2);
        let (line, msg) = parse_import("1000,a\n1001,b\n1000,c\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("line 1"), "{msg}");
        // A header is only a header on the first non-blank line.
        assert_eq!(
            parse_import("1000,a\nextension,password\n").unwrap().len(),
            2
        );
        assert!(parse_import("\n\nextension,password\n").is_err());
    }

    #[test]
    fn generated_passwords_are_strong_and_distinct() {
        let a = generate_password(GENERATED_PASSWORD_LEN);
        let b = generate_password(GENERATED_PASSWORD_LEN);
        assert_eq!(a.len(), GENERATED_PASSWORD_LEN);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(a.chars().any(|c| c.is_ascii_digit()));
        assert!(a.chars().any(|c| c.is_ascii_uppercase()));
        assert!(a.chars().any(|c| c.is_ascii_lowercase()));
    }

    #[test]
    fn timestamps_print_as_utc() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(format_utc(1_735_689_600_000), "2025-01-01T00:00:00Z");
        assert_eq!(format_utc(-1_000), "1969-12-31T23:59:59Z");
        assert_eq!(hash_prefix("0123456789abcdef"), "0123456789ab");
        assert_eq!(hash_prefix("short"), "short");
    }

    #[tokio::test]
    async fn prompt_and_voicemail_commands_against_an_in_memory_store() {
        let store = Store::open_in_memory().await.unwrap();
        let acme = store.add_tenant("acme", "acme.example").await.unwrap().id;
        store
            .add_extension(acme, "1001", "Ext-1001-pass-x9")
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let run = |command: Command| {
            let store = store.clone();
            async move {
                let mut none: &[u8] = b"";
                let mut out = Vec::new();
                execute(&store, command, &mut none, &mut out)
                    .await
                    .map(|()| String::from_utf8(out).unwrap())
            }
        };
        // Half a second of raw PCMU.
        let raw = dir.path().join("hello.ul");
        std::fs::write(&raw, vec![0xffu8; 4000]).unwrap();
        let said = run(Command::Prompt(PromptCommand::Upload {
            tenant: "acme".into(),
            name: "hello".into(),
            file: raw,
        }))
        .await
        .unwrap();
        assert!(said.starts_with("prompt hello of acme: 500 ms"), "{said}");
        let listing = run(Command::Prompt(PromptCommand::List {
            tenant: "acme".into(),
        }))
        .await
        .unwrap();
        assert!(listing.starts_with("hello\t500 ms\t"), "{listing}");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, b"not audio").unwrap();
        let refused = run(Command::Prompt(PromptCommand::Upload {
            tenant: "acme".into(),
            name: "notes".into(),
            file: text,
        }))
        .await;
        assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
        // A stored message lists and downloads as the WAV it was.
        let wav = pbx_media::Recording {
            samples: vec![500; 8000],
            end: pbx_media::RecordingEnd::Stopped,
        }
        .to_wav();
        let m = store
            .save_voicemail(acme, "1001", "1000", &wav, 1000)
            .await
            .unwrap();
        let listing = run(Command::Voicemail(VoicemailCommand::List {
            tenant: "acme".into(),
            mailbox: "1001".into(),
        }))
        .await
        .unwrap();
        assert!(
            listing.starts_with(&m.id) && listing.contains("from 1000\tnew"),
            "{listing}"
        );
        let out = dir.path().join("m.wav");
        run(Command::Voicemail(VoicemailCommand::Download {
            tenant: "acme".into(),
            mailbox: "1001".into(),
            id: m.id.clone(),
            out: out.clone(),
        }))
        .await
        .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), wav);
        run(Command::Voicemail(VoicemailCommand::Pin {
            tenant: "acme".into(),
            mailbox: "1001".into(),
            pin: "4826".into(),
        }))
        .await
        .unwrap();
        assert_eq!(
            store
                .check_voicemail_pin(acme, "1001", "4826", 0)
                .await
                .unwrap(),
            store::PinCheck::Accepted
        );
        run(Command::Voicemail(VoicemailCommand::Delete {
            tenant: "acme".into(),
            mailbox: "1001".into(),
            id: m.id,
        }))
        .await
        .unwrap();
        assert!(
            store
                .voicemail_messages(acme, "1001")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn trunk_and_did_commands_against_an_in_memory_store() {
        let store = Store::open_in_memory().await.unwrap();
        store.add_tenant("acme", "acme.example").await.unwrap();
        let mut out = Vec::new();
        let mut input: &[u8] = b"trunk-pw\n";
        execute(
            &store,
            Command::Trunk(TrunkCommand::Add {
                tenant: "acme".into(),
                name: "carrier".into(),
                uri: "sip:gw.example:5080".into(),
                username: Some("acct".into()),
                password_stdin: true,
            }),
            &mut input,
            &mut out,
        )
        .await
        .unwrap();
        let mut none: &[u8] = b"";
        let mut listing = Vec::new();
        execute(
            &store,
            Command::Trunk(TrunkCommand::List {
                tenant: "acme".into(),
            }),
            &mut none,
            &mut listing,
        )
        .await
        .unwrap();
        let listing = String::from_utf8(listing).unwrap();
        assert_eq!(
            listing,
            "carrier\tsip:gw.example:5080;transport=udp\tacct\tregister\n"
        );
        let tenant = store.tenant_by_name("acme").await.unwrap().unwrap();
        let trunks = store.list_trunks(tenant.id).await.unwrap();
        assert_eq!(trunks[0].password.as_deref(), Some("trunk-pw"));

        let err = execute(
            &store,
            Command::Did(DidCommand::Add {
                tenant: "nobody".into(),
                number: "+15551234".into(),
            }),
            &mut none,
            &mut out,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::NoSuchTenant(_)));
        execute(
            &store,
            Command::Did(DidCommand::Add {
                tenant: "acme".into(),
                number: "+15551234".into(),
            }),
            &mut none,
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(
            store.all_dids().await.unwrap(),
            vec![("+15551234".to_owned(), tenant.id)]
        );
    }

    #[test]
    fn stdin_password_is_one_line() {
        let mut input: &[u8] = b"s3cret pass\nignored\n";
        assert_eq!(read_password(&mut input).unwrap(), "s3cret pass");
        let mut empty: &[u8] = b"";
        assert!(read_password(&mut empty).is_err());
    }

    #[tokio::test]
    async fn provisioning_commands_against_an_in_memory_store() {
        let store = Store::open_in_memory().await.unwrap();
        let mut out = Vec::new();
        let mut no_input: &[u8] = b"";
        execute(
            &store,
            Command::Tenant(TenantCommand::Add {
                name: "acme".into(),
                domain: "Acme.Example".into(),
            }),
            &mut no_input,
            &mut out,
        )
        .await
        .unwrap();
        let mut input: &[u8] = b"pw-from-stdin\n";
        execute(
            &store,
            Command::Extension(ExtensionCommand::Add {
                tenant: "acme".into(),
                extension: "1000".into(),
                password: None,
                password_stdin: true,
            }),
            &mut input,
            &mut out,
        )
        .await
        .unwrap();
        let err = execute(
            &store,
            Command::Extension(ExtensionCommand::List {
                tenant: "nobody".into(),
            }),
            &mut no_input,
            &mut out,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::NoSuchTenant(_)));
        let mut listing = Vec::new();
        execute(
            &store,
            Command::Extension(ExtensionCommand::List {
                tenant: "acme".into(),
            }),
            &mut no_input,
            &mut listing,
        )
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8(listing).unwrap(),
            "1000\tenabled\tdefault\n"
        );
        let tenant = store.tenant_by_name("acme").await.unwrap().unwrap();
        let exts = store.list_extensions(tenant.id).await.unwrap();
        assert_eq!(exts.len(), 1);
        assert_eq!(tenant.realm, "acme.example");
    }

    #[tokio::test]
    async fn demo_admin_is_made_once_with_a_policy_password() {
        let store = Store::open_in_memory().await.unwrap();
        let password = demo_admin(&store).await.unwrap().expect("made");
        assert!(pbx_api::check_policy(DEMO_ADMIN, &password).is_ok());
        let admins = store.list_provider_admins().await.unwrap();
        assert_eq!(admins.len(), 1);
        assert_eq!(admins[0].username, DEMO_ADMIN);
        assert_eq!(demo_admin(&store).await.unwrap(), None, "not twice");
    }

    #[tokio::test]
    async fn user_add_reads_stdin_and_applies_the_policy() {
        let store = Store::open_in_memory().await.unwrap();
        let add = || {
            Command::User(UserCommand::Add {
                username: "root".into(),
                role: RoleArg::ProviderAdmin,
                tenant: None,
                password_stdin: true,
            })
        };
        let mut out = Vec::new();
        let mut weak: &[u8] = b"short-pw\n";
        let err = execute(&store, add(), &mut weak, &mut out)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("password refused"), "{err}");
        let mut strong: &[u8] = b"Corr3ct-Horse-Battery\n";
        execute(&store, add(), &mut strong, &mut out).await.unwrap();
        assert!(store.user_by_name("root").await.unwrap().is_some());
        let mut out = Vec::new();
        execute(
            &store,
            Command::Audit(AuditCommand::Verify),
            &mut &b""[..],
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "audit log intact: 1 entries\n"
        );
    }

    #[tokio::test]
    async fn demo_provisions_two_extensions_once() {
        let store = Store::open_in_memory().await.unwrap();
        let demo = demo(&store).await.unwrap();
        assert_eq!(demo.credentials.len(), 2);
        let tenant = store.tenant_by_name(DEMO_TENANT).await.unwrap().unwrap();
        assert_eq!(tenant.domains, vec![DEMO_DOMAIN.to_owned()]);
        assert_eq!(store.list_extensions(tenant.id).await.unwrap().len(), 2);
        assert!(super::demo(&store).await.is_err());
    }

    /// Runs one command line against `store`, returning its output or error.
    #[tokio::test]
    async fn tenant_retention_is_set_shown_and_reset() {
        let store = Store::open_in_memory().await.unwrap();
        run(
            &store,
            &["tenant", "add", "acme", "--domain", "acme.example"],
        )
        .await
        .unwrap();
        let shown = run(&store, &["tenant", "retention", "acme", "--cdr-days", "30"])
            .await
            .unwrap();
        assert_eq!(
            shown,
            "tenant acme: call records 30 days, alerts provider default\n"
        );
        let t = store.tenant_by_name("acme").await.unwrap().unwrap();
        assert_eq!(
            store.record_retention(t.id).await.unwrap(),
            (Some(30), None)
        );
        let shown = run(&store, &["tenant", "retention", "acme", "--default"])
            .await
            .unwrap();
        assert!(shown.contains("call records provider default"), "{shown}");
        assert!(
            run(&store, &["tenant", "retention", "acme", "--cdr-days", "0"])
                .await
                .is_err()
        );
    }

    #[test]
    fn bans_export_for_nft_and_ipset_with_their_time_left() {
        let bans = [
            ("198.51.100.7".parse().unwrap(), 842),
            ("2001:db8::1".parse().unwrap(), 60),
        ];
        let nft = firewall_script(BanExportFormat::Nft, &bans);
        assert!(nft.contains("flush set inet pbx banned4\n"), "{nft}");
        assert!(
            nft.contains("add element inet pbx banned4 { 198.51.100.7 timeout 842s }"),
            "{nft}"
        );
        assert!(
            nft.contains("add element inet pbx banned6 { 2001:db8::1 timeout 60s }"),
            "{nft}"
        );
        let ipset = firewall_script(BanExportFormat::Ipset, &bans);
        assert!(
            ipset.contains("add pbx-banned4 198.51.100.7 timeout 842 -exist"),
            "{ipset}"
        );
        assert!(
            ipset.contains("create pbx-banned6 hash:ip family inet6"),
            "{ipset}"
        );
        // No bans: the sets are emptied, nothing added.
        let empty = firewall_script(BanExportFormat::Nft, &[]);
        assert!(!empty.contains("add element"), "{empty}");
        assert_eq!(empty.matches("flush set").count(), 2);
    }

    async fn run(store: &Store, args: &[&str]) -> Result<String> {
        let mut argv = vec!["pbx"];
        argv.extend_from_slice(args);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv).expect("parses");
        let mut none: &[u8] = b"";
        let mut out = Vec::new();
        execute(store, cli.command, &mut none, &mut out).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn policy_config_commands_keep_scopes_apart_and_audit() {
        let store = Store::open_in_memory().await.unwrap();
        store.add_tenant("acme", "acme.example").await.unwrap();
        let g0 = store.generation().await.unwrap();
        run(
            &store,
            &[
                "policy",
                "config",
                "set",
                "default-policy",
                "max-calls-per-minute",
                "20",
            ],
        )
        .await
        .unwrap();
        run(
            &store,
            &[
                "policy",
                "config",
                "set",
                "default-policy",
                "max-calls-per-minute",
                "3",
                "--tenant",
                "acme",
            ],
        )
        .await
        .unwrap();
        assert!(store.generation().await.unwrap() > g0);
        let get = |tenant: Option<&'static str>| {
            let store = store.clone();
            async move {
                let mut args = vec![
                    "policy",
                    "config",
                    "get",
                    "default-policy",
                    "max-calls-per-minute",
                ];
                if let Some(t) = tenant {
                    args.extend(["--tenant", t]);
                }
                run(&store, &args).await
            }
        };
        assert_eq!(get(None).await.unwrap(), "20\n");
        assert_eq!(get(Some("acme")).await.unwrap(), "3\n");
        assert_eq!(
            run(
                &store,
                &[
                    "policy",
                    "config",
                    "list",
                    "default-policy",
                    "--tenant",
                    "acme"
                ]
            )
            .await
            .unwrap(),
            "max-calls-per-minute\t3\n"
        );
        run(
            &store,
            &[
                "policy",
                "config",
                "delete",
                "default-policy",
                "max-calls-per-minute",
                "--tenant",
                "acme",
            ],
        )
        .await
        .unwrap();
        assert!(get(Some("acme")).await.is_err(), "the override is gone");
        assert_eq!(get(None).await.unwrap(), "20\n");
        assert!(matches!(
            run(
                &store,
                &[
                    "policy", "config", "set", "p", "k", "v", "--tenant", "nobody"
                ]
            )
            .await,
            Err(Error::NoSuchTenant(_))
        ));
        assert!(
            run(&store, &["policy", "config", "set", "p", "bad key", "v"])
                .await
                .is_err()
        );
        let actions: Vec<String> = store
            .audit_chain(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.record.action)
            .collect();
        assert_eq!(
            actions,
            vec![
                "policy.config.set",
                "policy.config.set",
                "policy.config.delete"
            ]
        );
        assert!(pbx_api::verify_audit(&store).await.unwrap().is_intact());
    }

    #[tokio::test]
    async fn storage_commands_write_the_tenants_storage() {
        let store = Store::open_in_memory().await.unwrap();
        let acme = store.add_tenant("acme", "acme.example").await.unwrap().id;
        run(
            &store,
            &["storage", "set", "acme", "ring-group:sales", "1000,1001"],
        )
        .await
        .unwrap();
        assert_eq!(
            run(&store, &["storage", "get", "acme", "ring-group:sales"])
                .await
                .unwrap(),
            "1000,1001\n"
        );
        store
            .plugin_kv_apply(&[(acme, "bin".into(), Some(vec![0, 1]))])
            .await
            .unwrap();
        assert_eq!(
            run(&store, &["storage", "list", "acme"]).await.unwrap(),
            "bin\thex:0001\nring-group:sales\t1000,1001\n"
        );
        run(&store, &["storage", "delete", "acme", "ring-group:sales"])
            .await
            .unwrap();
        assert!(
            run(&store, &["storage", "get", "acme", "ring-group:sales"])
                .await
                .is_err()
        );
        assert!(
            run(&store, &["storage", "delete", "acme", "ring-group:sales"])
                .await
                .is_err()
        );
        assert!(matches!(
            run(&store, &["storage", "list", "nobody"]).await,
            Err(Error::NoSuchTenant(_))
        ));
    }
}
