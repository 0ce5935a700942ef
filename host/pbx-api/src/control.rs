//! The running server's side of the API: live calls, plugins (tenants' dial
//! plans and the provider's policies), trunks and DIDs, alerts and bans. The host implements [`Control`]; the API only routes to it.
//!
//! The same concept as `pbx`'s `server/control.rs` at another layer: this one
//! declares the `Control` trait, that one implements it in the running server.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use store::{Severity, TenantId};
use utoipa::ToSchema;

/// A boxed future, so [`Control`] can be used as `Arc<dyn Control>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a control operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such call, plugin version, trunk, ban, ... for this tenant.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (bad plugin, bad number, ...).
    #[error("invalid: {0}")]
    Invalid(String),
    /// It clashes with existing state (duplicate trunk name, DID taken, ...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The server failed; the message is logged, not shown.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result of a control operation.
pub type ControlResult<T> = Result<T, ControlError>;

/// A call in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallInfo {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
}

/// A version of a tenant's dial-plan plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PluginInfo {
    pub version: u32,
    /// hex SHA-256 of the component.
    pub hash: String,
    pub uploaded_at_ms: i64,
    pub active: bool,
}

/// An installed policy component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyInfo {
    /// Unique across the provider.
    pub name: String,
    /// The tenant it applies to; `None` for a provider-wide policy.
    pub tenant: Option<TenantId>,
    /// hex SHA-256 of the component.
    pub hash: String,
    pub installed_at_ms: i64,
    /// Whether an earlier version is kept to roll back to.
    #[serde(default)]
    pub can_roll_back: bool,
}

/// An alert raised by policy or by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    pub id: i64,
    pub tenant: Option<TenantId>,
    pub at_ms: i64,
    pub severity: Severity,
    pub message: String,
}

/// A banned source address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ban {
    #[schema(value_type = String, examples("192.0.2.1"))]
    pub address: IpAddr,
    pub reason: String,
    pub until_ms: i64,
}

/// A trunk to add. `password` is a secret: it is never echoed or audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrunk {
    pub name: String,
    /// Where calls go, e.g. `sip:carrier.example:5061;transport=tls`.
    pub uri: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// A trunk as listed (no password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrunkInfo {
    pub name: String,
    pub uri: String,
    pub username: Option<String>,
}

/// A DID: an inbound number routed to a tenant, whose dial plan decides where
/// its calls ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Did {
    /// An optional `+` and 3-20 digits, e.g. `+15551234567`.
    pub number: String,
}

/// One line of a tenant's plugin log (what its plugins wrote with
/// `pbx:plugin/log`, and their stdout and stderr). The log is kept in memory,
/// the newest 256 lines (64 KiB) per tenant, and is not kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PluginLogLine {
    /// 1, 2, 3, ... in writing order since the server started (lines pushed
    /// out leave gaps).
    pub seq: u64,
    pub at_ms: i64,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The text, as the plugin wrote it (at most 512 bytes): shown as text,
    /// never interpreted.
    pub message: String,
}

/// A tenant's usage now, against its limits in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantUsage {
    pub concurrent_calls: u32,
    /// `None`: unlimited.
    pub max_concurrent: Option<u32>,
    /// Spend since midnight UTC, cents.
    pub spend_today_cents: u64,
    pub daily_cap_cents: Option<u64>,
}

/// The header of [`write_plugin_log_csv`]'s rows.
pub const PLUGIN_LOG_CSV_HEADER: &str = "seq,at_ms,level,message\n";

/// One plugin log line as a CSV row (fields quoted and defused like the call
/// records').
pub fn write_plugin_log_csv(out: &mut String, line: &PluginLogLine) {
    out.push_str(&format!("{},{},", line.seq, line.at_ms));
    store::write_csv_field(out, &line.level);
    out.push(',');
    store::write_csv_field(out, &line.message);
    out.push('\n');
}

/// A plugin quarantined for one tenant after repeated failures: its calls get
/// the documented fallback (the shipped dial plan, or a fail-closed deny for a
/// policy) until the back-off runs out, a new version is uploaded, or an
/// admin lifts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineInfo {
    /// What it is for this tenant: `dialplan`, `policy:<name>` (the
    /// provider's) or `tenant-policy:<name>` (the tenant's own).
    pub plugin: String,
    /// hex SHA-256 of the component.
    pub hash: String,
    /// Whether the provider owns it: only the provider may lift it.
    pub provider_owned: bool,
    /// The failure that completed the quarantine (a documented text).
    pub reason: String,
    /// Seconds since it began.
    pub since_s: u64,
    /// Seconds until the back-off lifts it.
    pub lifts_in_s: u64,
}

/// Operations on the running server. Every method that concerns a tenant takes
/// its id; the API has already checked the caller may act on it.
pub trait Control: Send + Sync + 'static {
    /// Calls in progress.
    fn list_calls(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<CallInfo>>>;
    /// Ends a call.
    fn hangup(&self, tenant: TenantId, call_id: String) -> BoxFuture<'_, ControlResult<()>>;
    /// Plugin versions, oldest first.
    fn list_plugins(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<PluginInfo>>>;
    /// Validates and stores a component as the next version and makes it the
    /// active one (as `pbx plugin install` does); [`Control::rollback_plugin`]
    /// goes back.
    fn install_plugin(
        &self,
        tenant: TenantId,
        wasm: Vec<u8>,
    ) -> BoxFuture<'_, ControlResult<PluginInfo>>;
    /// Makes `version` the active one.
    fn activate_plugin(&self, tenant: TenantId, version: u32) -> BoxFuture<'_, ControlResult<()>>;
    /// Goes back to the version active before the current one; returns it.
    fn rollback_plugin(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<PluginInfo>>;
    /// Installed policies, by name.
    fn list_policies(&self) -> BoxFuture<'_, ControlResult<Vec<PolicyInfo>>>;
    /// Validates a policy component (as `pbx policy install` does) and
    /// installs it under `name`, replacing any policy of that name; `tenant:
    /// None` makes it apply to every tenant.
    fn install_policy(
        &self,
        name: String,
        tenant: Option<TenantId>,
        wasm: Vec<u8>,
    ) -> BoxFuture<'_, ControlResult<PolicyInfo>>;
    /// Removes the named policy.
    fn remove_policy(&self, name: String) -> BoxFuture<'_, ControlResult<()>>;
    /// Goes back to the named policy's version before its last install (the
    /// one replaced is kept, so this can be undone); returns it.
    fn rollback_policy(&self, name: String) -> BoxFuture<'_, ControlResult<PolicyInfo>>;
    /// Validates a policy component (as [`Control::install_policy`] does) and
    /// installs it as one of `tenant`'s own policies under `name`, in the
    /// tenant's own name space, replacing the tenant's policy of that name.
    /// It runs after every provider policy and reads only the tenant's own
    /// configuration.
    fn install_tenant_policy(
        &self,
        tenant: TenantId,
        name: String,
        wasm: Vec<u8>,
    ) -> BoxFuture<'_, ControlResult<store::TenantPolicy>>;
    /// Alerts of one tenant, or of all when `None`.
    fn list_alerts(&self, tenant: Option<TenantId>) -> BoxFuture<'_, ControlResult<Vec<Alert>>>;
    /// Current bans.
    fn list_bans(&self) -> BoxFuture<'_, ControlResult<Vec<Ban>>>;
    /// Lifts a ban.
    fn remove_ban(&self, address: IpAddr) -> BoxFuture<'_, ControlResult<()>>;
    /// The tenant's trunks.
    fn list_trunks(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<TrunkInfo>>>;
    /// Adds a trunk.
    fn add_trunk(
        &self,
        tenant: TenantId,
        trunk: NewTrunk,
    ) -> BoxFuture<'_, ControlResult<TrunkInfo>>;
    /// Removes one of the tenant's trunks.
    fn remove_trunk(&self, tenant: TenantId, name: String) -> BoxFuture<'_, ControlResult<()>>;
    /// The tenant's DIDs.
    fn list_dids(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<Did>>>;
    /// Assigns a DID to the tenant.
    fn add_did(&self, tenant: TenantId, did: Did) -> BoxFuture<'_, ControlResult<Did>>;
    /// Takes one of the tenant's DIDs away from it.
    fn remove_did(&self, tenant: TenantId, number: String) -> BoxFuture<'_, ControlResult<()>>;
    /// Plugins quarantined for the tenant, with the reason.
    fn list_quarantines(
        &self,
        tenant: TenantId,
    ) -> BoxFuture<'_, ControlResult<Vec<QuarantineInfo>>>;
    /// Lifts the tenant's quarantine of the plugin with this hash (its
    /// failure count starts again from zero).
    fn lift_quarantine(&self, tenant: TenantId, hash: String) -> BoxFuture<'_, ControlResult<()>>;
    /// The tenant's plugin log, oldest line first.
    fn plugin_log(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<PluginLogLine>>>;
    /// The tenant's calls in progress and spend today, with its limits.
    fn usage(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<TenantUsage>>;
    /// The messages of a mailbox changed (deleted or marked through the
    /// API): the extension's phones hear its new counts (message-waiting
    /// indication). Best effort: a stopped server tells nobody.
    fn mailbox_changed(&self, tenant: TenantId, mailbox: String) -> BoxFuture<'_, ()>;
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory [`Control`] for tests.

    use std::collections::HashMap;

    use parking_lot::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct FakeControl {
        pub(crate) plugins: Mutex<HashMap<TenantId, Vec<PluginInfo>>>,
        pub(crate) hung_up: Mutex<Vec<(TenantId, String)>>,
        pub(crate) trunks: Mutex<HashMap<TenantId, Vec<TrunkInfo>>>,
        pub(crate) policies: Mutex<Vec<PolicyInfo>>,
        pub(crate) quarantines: Mutex<HashMap<TenantId, Vec<QuarantineInfo>>>,
        pub(crate) plugin_logs: Mutex<HashMap<TenantId, Vec<PluginLogLine>>>,
        pub(crate) mailboxes_changed: Mutex<Vec<(TenantId, String)>>,
    }

    fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, T> {
        Box::pin(std::future::ready(v))
    }

    impl Control for FakeControl {
        fn list_calls(&self, _tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<CallInfo>>> {
            ready(Ok(vec![CallInfo {
                call_id: "c1".into(),
                caller: "100".into(),
                callee: "101".into(),
                started_at_ms: 1,
                answered_at_ms: None,
            }]))
        }
        fn hangup(&self, tenant: TenantId, call_id: String) -> BoxFuture<'_, ControlResult<()>> {
            if call_id != "c1" {
                return ready(Err(ControlError::NotFound(call_id)));
            }
            self.hung_up.lock().push((tenant, call_id));
            ready(Ok(()))
        }
        fn list_plugins(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<PluginInfo>>> {
            ready(Ok(self
                .plugins
                .lock()
                .get(&tenant)
                .cloned()
                .unwrap_or_default()))
        }
        fn install_plugin(
            &self,
            tenant: TenantId,
            wasm: Vec<u8>,
        ) -> BoxFuture<'_, ControlResult<PluginInfo>> {
            if !wasm.starts_with(b"\0asm") {
                return ready(Err(ControlError::Invalid("not a wasm component".into())));
            }
            let mut all = self.plugins.lock();
            let list = all.entry(tenant).or_default();
            let info = PluginInfo {
                version: u32::try_from(list.len()).unwrap_or(u32::MAX) + 1,
                hash: "00".into(),
                uploaded_at_ms: 0,
                active: false,
            };
            list.push(info.clone());
            ready(Ok(info))
        }
        fn activate_plugin(
            &self,
            tenant: TenantId,
            version: u32,
        ) -> BoxFuture<'_, ControlResult<()>> {
            let mut all = self.plugins.lock();
            let list = all.entry(tenant).or_default();
            if !list.iter().any(|p| p.version == version) {
                return ready(Err(ControlError::NotFound(format!("version {version}"))));
            }
            for p in list.iter_mut() {
                p.active = p.version == version;
            }
            ready(Ok(()))
        }
        fn rollback_plugin(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<PluginInfo>> {
            let mut all = self.plugins.lock();
            let list = all.entry(tenant).or_default();
            let Some(i) = list.iter().position(|p| p.active).filter(|&i| i > 0) else {
                return ready(Err(ControlError::NotFound("no earlier version".into())));
            };
            list[i].active = false;
            list[i - 1].active = true;
            ready(Ok(list[i - 1].clone()))
        }
        fn list_policies(&self) -> BoxFuture<'_, ControlResult<Vec<PolicyInfo>>> {
            let mut all = self.policies.lock().clone();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            ready(Ok(all))
        }
        fn install_policy(
            &self,
            name: String,
            tenant: Option<TenantId>,
            wasm: Vec<u8>,
        ) -> BoxFuture<'_, ControlResult<PolicyInfo>> {
            if !wasm.starts_with(b"\0asm") {
                return ready(Err(ControlError::Invalid("not a policy component".into())));
            }
            if name.is_empty() || name.contains('/') {
                return ready(Err(ControlError::Invalid(format!("policy name {name:?}"))));
            }
            let mut all = self.policies.lock();
            let info = PolicyInfo {
                can_roll_back: all.iter().any(|p| p.name == name),
                name,
                tenant,
                hash: "11".into(),
                installed_at_ms: 0,
            };
            all.retain(|p| p.name != info.name);
            all.push(info.clone());
            ready(Ok(info))
        }
        fn install_tenant_policy(
            &self,
            tenant: TenantId,
            name: String,
            wasm: Vec<u8>,
        ) -> BoxFuture<'_, ControlResult<store::TenantPolicy>> {
            if !wasm.starts_with(b"\0asm") {
                return ready(Err(ControlError::Invalid("not a policy component".into())));
            }
            ready(Ok(store::TenantPolicy {
                tenant,
                name,
                hash: "22".into(),
                installed_at_ms: 0,
            }))
        }
        fn rollback_policy(&self, name: String) -> BoxFuture<'_, ControlResult<PolicyInfo>> {
            let mut all = self.policies.lock();
            let Some(p) = all.iter_mut().find(|p| p.name == name) else {
                return ready(Err(ControlError::NotFound(format!("policy {name}"))));
            };
            if !p.can_roll_back {
                return ready(Err(ControlError::Conflict(format!(
                    "policy {name} has no earlier version"
                ))));
            }
            p.hash = "10".into();
            ready(Ok(p.clone()))
        }
        fn remove_policy(&self, name: String) -> BoxFuture<'_, ControlResult<()>> {
            let mut all = self.policies.lock();
            let before = all.len();
            all.retain(|p| p.name != name);
            if all.len() == before {
                return ready(Err(ControlError::NotFound(format!("policy {name}"))));
            }
            ready(Ok(()))
        }
        fn list_alerts(
            &self,
            tenant: Option<TenantId>,
        ) -> BoxFuture<'_, ControlResult<Vec<Alert>>> {
            ready(Ok(vec![Alert {
                id: 1,
                tenant,
                at_ms: 0,
                severity: Severity::Warning,
                message: "test".into(),
            }]))
        }
        fn list_bans(&self) -> BoxFuture<'_, ControlResult<Vec<Ban>>> {
            ready(Ok(vec![Ban {
                address: IpAddr::from([192, 0, 2, 1]),
                reason: "digest failures".into(),
                until_ms: 10,
            }]))
        }
        fn remove_ban(&self, address: IpAddr) -> BoxFuture<'_, ControlResult<()>> {
            if address == IpAddr::from([192, 0, 2, 1]) {
                ready(Ok(()))
            } else {
                ready(Err(ControlError::NotFound(address.to_string())))
            }
        }
        fn list_trunks(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<TrunkInfo>>> {
            ready(Ok(self
                .trunks
                .lock()
                .get(&tenant)
                .cloned()
                .unwrap_or_default()))
        }
        fn add_trunk(
            &self,
            tenant: TenantId,
            trunk: NewTrunk,
        ) -> BoxFuture<'_, ControlResult<TrunkInfo>> {
            let info = TrunkInfo {
                name: trunk.name,
                uri: trunk.uri,
                username: trunk.username,
            };
            self.trunks
                .lock()
                .entry(tenant)
                .or_default()
                .push(info.clone());
            ready(Ok(info))
        }
        fn remove_trunk(&self, tenant: TenantId, name: String) -> BoxFuture<'_, ControlResult<()>> {
            let mut all = self.trunks.lock();
            let list = all.entry(tenant).or_default();
            let before = list.len();
            list.retain(|t| t.name != name);
            if list.len() == before && name != "carrier" {
                return ready(Err(ControlError::NotFound(name)));
            }
            ready(Ok(()))
        }
        fn list_dids(&self, _tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<Did>>> {
            ready(Ok(Vec::new()))
        }
        fn add_did(&self, _tenant: TenantId, did: Did) -> BoxFuture<'_, ControlResult<Did>> {
            ready(Ok(did))
        }
        fn remove_did(
            &self,
            _tenant: TenantId,
            number: String,
        ) -> BoxFuture<'_, ControlResult<()>> {
            if number == "+15550001" {
                ready(Ok(()))
            } else {
                ready(Err(ControlError::NotFound(number)))
            }
        }
        fn list_quarantines(
            &self,
            tenant: TenantId,
        ) -> BoxFuture<'_, ControlResult<Vec<QuarantineInfo>>> {
            ready(Ok(self
                .quarantines
                .lock()
                .get(&tenant)
                .cloned()
                .unwrap_or_default()))
        }
        fn plugin_log(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<PluginLogLine>>> {
            ready(Ok(self
                .plugin_logs
                .lock()
                .get(&tenant)
                .cloned()
                .unwrap_or_default()))
        }
        fn usage(&self, _tenant: TenantId) -> BoxFuture<'_, ControlResult<TenantUsage>> {
            ready(Ok(TenantUsage {
                concurrent_calls: 1,
                max_concurrent: Some(10),
                spend_today_cents: 250,
                daily_cap_cents: Some(5_000),
            }))
        }
        fn lift_quarantine(
            &self,
            tenant: TenantId,
            hash: String,
        ) -> BoxFuture<'_, ControlResult<()>> {
            let mut all = self.quarantines.lock();
            let list = all.entry(tenant).or_default();
            let before = list.len();
            list.retain(|q| q.hash != hash);
            ready(if list.len() < before {
                Ok(())
            } else {
                Err(ControlError::NotFound(hash))
            })
        }
        fn mailbox_changed(&self, tenant: TenantId, mailbox: String) -> BoxFuture<'_, ()> {
            self.mailboxes_changed.lock().push((tenant, mailbox));
            ready(())
        }
    }
}
