//! `pbx doctor`: a configuration audit of a data directory and the
//! configuration file the server runs with. Each finding has a stable id, a
//! severity, what is wrong and how to fix it; the command exits non-zero
//! when any finding is high or critical, for CI and cron.

use std::path::Path;

use serde::Serialize;
use store::Store;

use crate::config::FileConfig;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id, for scripts (`docs/ARCHITECTURE.md` lists them).
    pub id: &'static str,
    pub severity: Severity,
    /// What it is about (an address, a tenant, a user, a file).
    pub subject: String,
    pub explanation: String,
    pub fix: String,
}

/// What the audit reads.
pub struct Inputs<'a> {
    pub store: &'a Store,
    pub data_dir: &'a Path,
    /// The server's configuration file (the defaults when it has none).
    pub config: &'a FileConfig,
    /// A provider-published list of known-vulnerable versions or commits,
    /// one per line (`#` comments).
    pub vulnerable: Option<&'a str>,
    pub now_ms: i64,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

fn finding(
    id: &'static str,
    severity: Severity,
    subject: impl Into<String>,
    explanation: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        id,
        severity,
        subject: subject.into(),
        explanation: explanation.into(),
        fix: fix.into(),
    }
}

/// Runs every check; findings are ordered most severe first.
pub async fn audit(inputs: &Inputs<'_>) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    listeners(inputs.config, &mut out);
    trusted_networks(inputs.config, &mut out);
    backups(inputs, &mut out);
    key_files(inputs.data_dir, &mut out)?;
    stored(inputs, &mut out).await?;
    if let Some(list) = inputs.vulnerable {
        vulnerable_version(list, &mut out);
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    Ok(out)
}

/// SIP and the API on addresses other than loopback without TLS.
fn listeners(config: &FileConfig, out: &mut Vec<Finding>) {
    let plain = config.sip.udp.iter().chain(&config.sip.tcp);
    for addr in plain.filter(|a| !a.ip().is_loopback()) {
        out.push(finding(
            "sip-without-tls",
            Severity::Medium,
            addr.to_string(),
            "SIP is served in the clear on an address other than loopback: passwords are \
             digest-protected, but calls' signalling and SDES keys can be read on the way",
            "serve SIP over TLS ([sip] tls, tls_cert, tls_key) and move phones to it; keep \
             UDP/TCP only for phones that cannot",
        ));
    }
    if let Some(api) = &config.api
        && api.plain_http
        && !api.listen.ip().is_loopback()
    {
        out.push(finding(
            "api-without-tls",
            Severity::High,
            api.listen.to_string(),
            "the admin API is served over plain HTTP on an address other than loopback: \
             passwords and tokens cross the network in the clear",
            "remove `plain_http` from [api] (the API then serves TLS)",
        ));
    }
}

/// Networks the guard trusts that are larger than one site.
fn trusted_networks(config: &FileConfig, out: &mut Vec<Finding>) {
    for net in config.guard.trusted.iter().flatten() {
        let Ok(parsed) = net.parse::<ipnet::IpNet>() else {
            continue;
        };
        let large = match parsed {
            ipnet::IpNet::V4(n) => n.prefix_len() < 16,
            ipnet::IpNet::V6(n) => n.prefix_len() < 48,
        };
        if large {
            out.push(finding(
                "guard-trusts-large-network",
                Severity::High,
                net.clone(),
                "the guard never rate-limits, bans or flags scanners from a trusted \
                 network, and this one is larger than a site",
                "trust only the addresses of your own SBCs or proxies ([guard] trusted)",
            ));
        }
    }
}

/// No scheduled backups, or none recent.
fn backups(inputs: &Inputs<'_>, out: &mut Vec<Finding>) {
    let Some(backup) = &inputs.config.backup else {
        out.push(finding(
            "backups-missing",
            Severity::Medium,
            "[backup]",
            "no scheduled backups are configured",
            "add [backup] with dir, recipients and keep (see examples/pbx.toml), or run \
             `pbx backup create` from cron",
        ));
        return;
    };
    let every_ms =
        i64::try_from(backup.every_hours.unwrap_or(24) * 3600 * 1000).unwrap_or(i64::MAX);
    let newest = std::fs::read_dir(&backup.dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".age")))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .max();
    if newest.is_none_or(|t| inputs.now_ms - t > 2 * every_ms) {
        out.push(finding(
            "backups-old",
            Severity::High,
            backup.dir.display().to_string(),
            "the newest backup is missing or older than two backup intervals",
            "check the server's log for `scheduled backup failed` and the directory's space",
        ));
    }
}

/// Key files others can read.
fn key_files(data_dir: &Path, out: &mut Vec<Finding>) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_key = name.ends_with(".key") || name.ends_with(".pem") || name.contains("signing");
        if !is_key || !entry.file_type()?.is_file() {
            continue;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = entry.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                out.push(finding(
                    "key-file-readable",
                    Severity::High,
                    entry.path().display().to_string(),
                    format!("a key file is readable by others (mode {:o})", mode & 0o777),
                    format!("chmod 600 {}", entry.path().display()),
                ));
            }
        }
    }
    Ok(())
}

/// What the database holds.
async fn stored(inputs: &Inputs<'_>, out: &mut Vec<Finding>) -> anyhow::Result<()> {
    let store = inputs.store;
    let tenants = store.list_tenants().await?;
    for t in &tenants {
        if t.domains.iter().any(|d| d == crate::provision::DEMO_DOMAIN) {
            out.push(finding(
                "demo-credentials",
                Severity::High,
                format!("tenant {}", t.name),
                "the demo tenant is present: its extensions' passwords were printed when \
                 it was made",
                format!(
                    "give tenant {}'s extensions new passwords, or suspend it (POST \
                     /api/v1/tenants/{{id}}/suspend)",
                    t.name
                ),
            ));
        }
        if t.media_encryption != store::MediaEncryption::Required {
            out.push(finding(
                "media-encryption-not-required",
                Severity::Low,
                format!("tenant {}", t.name),
                "calls of this tenant may carry audio in plain RTP",
                format!("pbx tenant set {} --media-encryption required", t.name),
            ));
        }
        for token in store.list_api_tokens(t.id).await? {
            let live = token.revoked_at_ms.is_none() && token.expires_at_ms > inputs.now_ms;
            if live && token.expires_at_ms - token.created_at_ms > 365 * DAY_MS {
                out.push(finding(
                    "api-token-long-lived",
                    Severity::Medium,
                    format!("tenant {} token {}", t.name, token.name),
                    "an API token lives longer than a year",
                    "revoke it and issue tokens of 90 days or less",
                ));
            }
        }
    }
    for admin in store.list_provider_admins().await? {
        let confirmed = store.totp(admin.id).await?.is_some_and(|t| t.confirmed);
        if !confirmed && !admin.disabled {
            out.push(finding(
                "admin-without-totp",
                Severity::High,
                format!("user {}", admin.username),
                "a provider admin logs in with a password alone",
                "enrol TOTP for this user (POST /api/v1/auth/totp/setup, then confirm)",
            ));
        }
    }
    let names: std::collections::HashMap<_, _> =
        tenants.iter().map(|t| (t.id, t.name.clone())).collect();
    for trunk in store.all_trunks().await? {
        if trunk.transport != store::TransportKind::Tls {
            out.push(finding(
                "trunk-without-tls",
                Severity::Medium,
                format!(
                    "tenant {} trunk {}",
                    names.get(&trunk.tenant).cloned().unwrap_or_default(),
                    trunk.name
                ),
                "calls and credentials to this carrier go in the clear",
                "use the carrier's TLS endpoint (`;transport=tls` in the trunk URI)",
            ));
        }
    }
    let quarantined = store
        .list_all_alerts(500)
        .await?
        .into_iter()
        .filter(|a| {
            !a.acknowledged
                && a.alert.event == "plugin.failure"
                && a.alert.message.contains("quarantined")
        })
        .count();
    if quarantined > 0 {
        out.push(finding(
            "plugins-quarantined",
            Severity::Medium,
            format!("{quarantined} alerts"),
            "plugins were quarantined and the alerts are not acknowledged",
            "read the alerts (GET /api/v1/alerts), fix or remove the plugins, acknowledge",
        ));
    }
    let report = pbx_api::verify_audit(store).await?;
    if !report.is_intact() {
        out.push(finding(
            "audit-chain-broken",
            Severity::Critical,
            "audit log",
            format!(
                "the audit chain does not verify: {}",
                report.problems.join("; ")
            ),
            "restore the audit log from a backup and find out who edited it",
        ));
    }
    Ok(())
}

/// This build against the provider's list of vulnerable versions.
fn vulnerable_version(list: &str, out: &mut Vec<Finding>) {
    let build = crate::version::Build::current();
    let listed = list
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .any(|l| !l.is_empty() && (l == build.version || l == build.commit));
    if listed {
        out.push(finding(
            "vulnerable-version",
            Severity::Critical,
            format!("pbx {} ({})", build.version, build.commit),
            "this build is on the list of known-vulnerable versions",
            "upgrade to a fixed release",
        ));
    }
}

/// Findings for people.
pub fn human(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings\n".into();
    }
    let mut s = String::new();
    for f in findings {
        s.push_str(&format!(
            "[{:?}] {} ({})\n  {}\n  fix: {}\n",
            f.severity, f.id, f.subject, f.explanation, f.fix
        ));
    }
    s
}

/// Whether a finding should fail the run.
pub fn failing(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity >= Severity::High)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_demo_reports_each_planted_misconfiguration_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        crate::provision::demo(&store).await.unwrap();
        crate::provision::demo_admin(&store).await.unwrap();
        let acme = store.tenant_by_name("acme").await.unwrap().unwrap();
        store
            .set_media_encryption(acme.id, store::MediaEncryption::Required)
            .await
            .unwrap();
        let backups = tempfile::tempdir().unwrap();
        std::fs::write(backups.path().join("pbx-1.age"), b"x").unwrap();
        let clean = FileConfig {
            backup: Some(crate::config::BackupSection {
                dir: backups.path().to_path_buf(),
                recipients: vec!["age1…".into()],
                ..Default::default()
            }),
            ..FileConfig::default()
        };
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let ids = |f: &[Finding]| {
            let mut ids: Vec<&str> = f.iter().map(|f| f.id).collect();
            ids.sort_unstable();
            ids
        };
        let inputs = Inputs {
            store: &store,
            data_dir: dir.path(),
            config: &clean,
            vulnerable: Some("# none of ours\n0.0.1\n"),
            now_ms,
        };
        // The demo as shipped: its tenant and its admin without TOTP.
        let found = audit(&inputs).await.unwrap();
        assert_eq!(ids(&found), vec!["admin-without-totp", "demo-credentials"]);
        assert!(failing(&found));

        // Plant one of each.
        let mut planted = clean.clone();
        planted.sip.udp = vec!["0.0.0.0:5060".parse().unwrap()];
        planted.guard.trusted = Some(vec!["10.0.0.0/8".into(), "192.0.2.10/32".into()]);
        planted.backup = None;
        store
            .set_media_encryption(acme.id, store::MediaEncryption::Optional)
            .await
            .unwrap();
        store
            .add_trunk(acme.id, "carrier", "sip:gw.example.net:5060", None, None)
            .await
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.path().join("secret.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let version = crate::version::Build::current().version;
        let inputs = Inputs {
            config: &planted,
            vulnerable: Some(&version),
            ..inputs
        };
        let found = audit(&inputs).await.unwrap();
        let mut expected = vec![
            "admin-without-totp",
            "backups-missing",
            "demo-credentials",
            "guard-trusts-large-network",
            "media-encryption-not-required",
            "sip-without-tls",
            "trunk-without-tls",
            "vulnerable-version",
        ];
        if cfg!(unix) {
            expected.push("key-file-readable");
            expected.sort_unstable();
        }
        assert_eq!(ids(&found), expected, "{}", human(&found));
        assert_eq!(found[0].severity, Severity::Critical, "most severe first");
        let guard = found
            .iter()
            .find(|f| f.id == "guard-trusts-large-network")
            .unwrap();
        assert_eq!(guard.subject, "10.0.0.0/8", "the /32 is fine");
    }
}
