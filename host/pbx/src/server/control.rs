//! The running server's side of the admin API ([`pbx_api::Control`]).
//!
//! Live calls belong to the shards, so listing and hanging up go to every
//! shard task as a [`ShardCommand`] over its command queue, and the answers
//! are gathered here. Dial plans, policies, trunks, DIDs, alerts and bans are
//! store rows (components are validated first, as the CLI does):
//! writes bump the store's generation and the server's reload task picks them
//! up, exactly as after a CLI command.
//!
//! The same concept as `pbx-api`'s `control.rs` at another layer: that one declares
//! the `Control` trait, this one implements it in the running server.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use pbx_api::{
    Alert, Ban, BoxFuture, CallInfo, Control, ControlError, ControlResult, Did, NewTrunk,
    PluginInfo, PolicyInfo, QuarantineInfo, TrunkInfo,
};
use pbx_core::{CallSummary, Shard};
use pbx_plugin::World;
use store::{MAX_ALERTS, PluginVersion, Policy, Store, TenantId, Trunk};
use tokio::sync::{mpsc, oneshot};

use super::media::Mailboxes;
use super::plugins::PluginHost;
use super::unix_ms;

/// Commands queued per shard; an operator rarely has more than a few in flight.
pub(crate) const COMMAND_QUEUE: usize = 64;

/// What the API asks of one shard.
#[derive(Debug)]
pub(crate) enum ShardCommand {
    /// Every live call the shard holds.
    Calls(oneshot::Sender<Vec<CallSummary>>),
    /// End the tenant's call with this caller Call-ID; answers whether the
    /// shard had it.
    HangUp {
        tenant: TenantId,
        call_id: String,
        reply: oneshot::Sender<bool>,
    },
}

/// Carries out one command on the shard (its outputs are drained by the
/// caller, like after any other input).
pub(crate) fn apply(shard: &mut Shard, now: Instant, command: ShardCommand) {
    match command {
        ShardCommand::Calls(reply) => {
            let _ = reply.send(shard.calls());
        }
        ShardCommand::HangUp {
            tenant,
            call_id,
            reply,
        } => {
            let _ = reply.send(shard.hang_up_call(now, tenant, &call_id));
        }
    }
}

/// [`Control`] over the running server's shards and store.
#[derive(Clone)]
pub(crate) struct ServerControl {
    store: Store,
    shards: Vec<mpsc::Sender<ShardCommand>>,
    /// The plugin host, when the server runs plugins (quarantines).
    plugins: Option<Arc<PluginHost>>,
    mailboxes: Mailboxes,
}

impl ServerControl {
    pub(crate) fn new(
        store: Store,
        shards: Vec<mpsc::Sender<ShardCommand>>,
        plugins: Option<Arc<PluginHost>>,
        mailboxes: Mailboxes,
    ) -> ServerControl {
        ServerControl {
            store,
            shards,
            plugins,
            mailboxes,
        }
    }

    async fn calls(&self, tenant: TenantId) -> ControlResult<Vec<CallInfo>> {
        let mut replies = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let (tx, rx) = oneshot::channel();
            shard
                .send(ShardCommand::Calls(tx))
                .await
                .map_err(|_| stopped())?;
            replies.push(rx);
        }
        let mut calls = Vec::new();
        for rx in replies {
            calls.extend(rx.await.map_err(|_| stopped())?);
        }
        let mut calls: Vec<CallInfo> = calls
            .into_iter()
            .filter(|c| c.tenant == tenant)
            .map(|c| CallInfo {
                call_id: c.call_id,
                caller: c.caller,
                callee: c.callee,
                started_at_ms: c.started_at_ms,
                answered_at_ms: c.answered_at_ms,
            })
            .collect();
        calls.sort_by(|a, b| (a.started_at_ms, &a.call_id).cmp(&(b.started_at_ms, &b.call_id)));
        Ok(calls)
    }

    async fn hang_up(&self, tenant: TenantId, call_id: String) -> ControlResult<()> {
        // A call lives in exactly one shard; ask each until one has it.
        for shard in &self.shards {
            let (tx, rx) = oneshot::channel();
            let command = ShardCommand::HangUp {
                tenant,
                call_id: call_id.clone(),
                reply: tx,
            };
            shard.send(command).await.map_err(|_| stopped())?;
            if rx.await.map_err(|_| stopped())? {
                return Ok(());
            }
        }
        Err(ControlError::NotFound(format!("call {call_id}")))
    }

    async fn install(&self, tenant: TenantId, wasm: Vec<u8>) -> ControlResult<PluginInfo> {
        // Refuse before compiling anything for a tenant that does not exist.
        if self
            .store
            .tenant(tenant)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(ControlError::NotFound(format!("tenant {tenant}")));
        }
        // A dial plan (0.1) or a call handler (0.2): both fill the tenant's dial
        // plan slot.
        let world = pbx_plugin::handler::dial_plan_world(&wasm);
        let wasm = validated(world, wasm).await?;
        let now = unix_ms(SystemTime::now());
        let v = self
            .store
            .install_dialplan(tenant, &wasm, now)
            .await
            .map_err(store_error)?;
        plugin_info(v)
    }

    async fn install_policy(
        &self,
        name: String,
        tenant: Option<TenantId>,
        wasm: Vec<u8>,
    ) -> ControlResult<PolicyInfo> {
        if let Some(t) = tenant
            && self.store.tenant(t).await.map_err(store_error)?.is_none()
        {
            return Err(ControlError::NotFound(format!("tenant {t}")));
        }
        let wasm = validated(World::Policy, wasm).await?;
        let now = unix_ms(SystemTime::now());
        let p = self
            .store
            .install_policy(&name, tenant, &wasm, now)
            .await
            .map_err(store_error)?;
        Ok(policy_info(p))
    }

    async fn install_tenant_policy(
        &self,
        tenant: TenantId,
        name: String,
        wasm: Vec<u8>,
    ) -> ControlResult<store::TenantPolicy> {
        if self
            .store
            .tenant(tenant)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(ControlError::NotFound(format!("tenant {tenant}")));
        }
        let wasm = validated(World::Policy, wasm).await?;
        let now = unix_ms(SystemTime::now());
        self.store
            .install_tenant_policy(tenant, &name, &wasm, now)
            .await
            .map_err(store_error)
    }

    async fn remove_did(&self, tenant: TenantId, number: String) -> ControlResult<()> {
        let owned = self.store.list_dids(tenant).await.map_err(store_error)?;
        if !owned.contains(&number) {
            return Err(ControlError::NotFound(format!("DID {number}")));
        }
        self.store.remove_did(&number).await.map_err(store_error)
    }
}

/// Compiles the component off the async threads and checks it is a plugin of
/// `world`, as `pbx plugin install` and `pbx policy install` do.
async fn validated(world: World, wasm: Vec<u8>) -> ControlResult<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        crate::uploads::check(world, &wasm, "the component").map(|()| wasm)
    })
    .await
    .map_err(|e| ControlError::Internal(format!("plugin validation task: {e}")))?
    .map_err(|e| ControlError::Invalid(e.to_string()))
}

fn policy_info(p: Policy) -> PolicyInfo {
    PolicyInfo {
        name: p.name,
        tenant: p.tenant,
        hash: p.hash,
        installed_at_ms: p.installed_at_ms,
        can_roll_back: p.previous_hash.is_some(),
    }
}

fn stopped() -> ControlError {
    ControlError::Internal("the SIP server is stopping".into())
}

fn store_error(e: store::Error) -> ControlError {
    match e {
        store::Error::NotFound(m) => ControlError::NotFound(m),
        store::Error::Conflict(m) => ControlError::Conflict(m),
        store::Error::Invalid(m) => ControlError::Invalid(m),
        other => ControlError::Internal(other.to_string()),
    }
}

fn plugin_info(v: PluginVersion) -> ControlResult<PluginInfo> {
    Ok(PluginInfo {
        version: u32::try_from(v.version)
            .map_err(|_| ControlError::Internal(format!("plugin version {}", v.version)))?,
        hash: v.hash,
        uploaded_at_ms: v.uploaded_at_ms,
        active: v.active,
    })
}

fn trunk_info(t: &Trunk) -> TrunkInfo {
    TrunkInfo {
        name: t.name.clone(),
        uri: t.uri(),
        username: t.username.clone(),
    }
}

impl Control for ServerControl {
    fn mailbox_changed(&self, tenant: TenantId, mailbox: String) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.mailboxes.changed(tenant, &mailbox).await })
    }

    fn list_calls(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<CallInfo>>> {
        Box::pin(self.calls(tenant))
    }

    fn hangup(&self, tenant: TenantId, call_id: String) -> BoxFuture<'_, ControlResult<()>> {
        Box::pin(self.hang_up(tenant, call_id))
    }

    fn list_plugins(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<PluginInfo>>> {
        Box::pin(async move {
            let versions = self
                .store
                .list_dialplans(tenant)
                .await
                .map_err(store_error)?;
            versions.into_iter().map(plugin_info).collect()
        })
    }

    fn install_plugin(
        &self,
        tenant: TenantId,
        wasm: Vec<u8>,
    ) -> BoxFuture<'_, ControlResult<PluginInfo>> {
        Box::pin(self.install(tenant, wasm))
    }

    fn activate_plugin(&self, tenant: TenantId, version: u32) -> BoxFuture<'_, ControlResult<()>> {
        Box::pin(async move {
            self.store
                .activate_dialplan(tenant, i64::from(version))
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn rollback_plugin(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<PluginInfo>> {
        Box::pin(async move {
            let v = self
                .store
                .rollback_dialplan(tenant, None)
                .await
                .map_err(store_error)?;
            plugin_info(v)
        })
    }

    fn list_policies(&self) -> BoxFuture<'_, ControlResult<Vec<PolicyInfo>>> {
        Box::pin(async move {
            let policies = self.store.list_policies().await.map_err(store_error)?;
            Ok(policies.into_iter().map(policy_info).collect())
        })
    }

    fn install_policy(
        &self,
        name: String,
        tenant: Option<TenantId>,
        wasm: Vec<u8>,
    ) -> BoxFuture<'_, ControlResult<PolicyInfo>> {
        Box::pin(self.install_policy(name, tenant, wasm))
    }

    fn install_tenant_policy(
        &self,
        tenant: TenantId,
        name: String,
        wasm: Vec<u8>,
    ) -> BoxFuture<'_, ControlResult<store::TenantPolicy>> {
        Box::pin(self.install_tenant_policy(tenant, name, wasm))
    }

    fn remove_policy(&self, name: String) -> BoxFuture<'_, ControlResult<()>> {
        Box::pin(async move { self.store.remove_policy(&name).await.map_err(store_error) })
    }

    fn rollback_policy(&self, name: String) -> BoxFuture<'_, ControlResult<PolicyInfo>> {
        Box::pin(async move {
            let now = unix_ms(SystemTime::now());
            let p = self
                .store
                .rollback_policy(&name, now)
                .await
                .map_err(store_error)?;
            Ok(policy_info(p))
        })
    }

    fn list_alerts(&self, tenant: Option<TenantId>) -> BoxFuture<'_, ControlResult<Vec<Alert>>> {
        Box::pin(async move {
            let records = match tenant {
                Some(t) => self.store.list_alerts(t, MAX_ALERTS).await,
                None => self.store.list_all_alerts(MAX_ALERTS).await,
            }
            .map_err(store_error)?;
            Ok(records
                .into_iter()
                .map(|r| Alert {
                    id: r.id,
                    tenant: r.alert.tenant,
                    at_ms: r.alert.at_ms,
                    severity: r.alert.severity,
                    message: r.alert.message,
                })
                .collect())
        })
    }

    fn list_bans(&self) -> BoxFuture<'_, ControlResult<Vec<Ban>>> {
        Box::pin(async move {
            let now = unix_ms(SystemTime::now());
            let bans = self.store.list_bans(now).await.map_err(store_error)?;
            Ok(bans
                .into_iter()
                .map(|b| Ban {
                    address: b.ip,
                    reason: b.reason,
                    until_ms: b.until_ms,
                })
                .collect())
        })
    }

    fn remove_ban(&self, address: IpAddr) -> BoxFuture<'_, ControlResult<()>> {
        Box::pin(async move {
            if self.store.remove_ban(address).await.map_err(store_error)? {
                Ok(())
            } else {
                Err(ControlError::NotFound(format!("ban of {address}")))
            }
        })
    }

    fn list_trunks(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<TrunkInfo>>> {
        Box::pin(async move {
            let trunks = self.store.list_trunks(tenant).await.map_err(store_error)?;
            Ok(trunks.iter().map(trunk_info).collect())
        })
    }

    fn add_trunk(
        &self,
        tenant: TenantId,
        trunk: NewTrunk,
    ) -> BoxFuture<'_, ControlResult<TrunkInfo>> {
        Box::pin(async move {
            let t = self
                .store
                .add_trunk(
                    tenant,
                    &trunk.name,
                    &trunk.uri,
                    trunk.username.as_deref(),
                    trunk.password.as_deref(),
                )
                .await
                .map_err(store_error)?;
            Ok(trunk_info(&t))
        })
    }

    fn remove_trunk(&self, tenant: TenantId, name: String) -> BoxFuture<'_, ControlResult<()>> {
        Box::pin(async move {
            self.store
                .remove_trunk(tenant, &name)
                .await
                .map_err(store_error)
        })
    }

    fn list_dids(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<Vec<Did>>> {
        Box::pin(async move {
            let numbers = self.store.list_dids(tenant).await.map_err(store_error)?;
            Ok(numbers.into_iter().map(|number| Did { number }).collect())
        })
    }

    fn add_did(&self, tenant: TenantId, did: Did) -> BoxFuture<'_, ControlResult<Did>> {
        Box::pin(async move {
            self.store
                .add_did(tenant, &did.number)
                .await
                .map_err(store_error)?;
            Ok(did)
        })
    }

    fn remove_did(&self, tenant: TenantId, number: String) -> BoxFuture<'_, ControlResult<()>> {
        Box::pin(self.remove_did(tenant, number))
    }

    fn list_quarantines(
        &self,
        tenant: TenantId,
    ) -> BoxFuture<'_, ControlResult<Vec<QuarantineInfo>>> {
        let list = self
            .plugins
            .as_ref()
            .map(|p| p.quarantines(tenant))
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn usage(&self, tenant: TenantId) -> BoxFuture<'_, ControlResult<pbx_api::TenantUsage>> {
        Box::pin(async move {
            let own = self
                .store
                .tenant_limits(tenant)
                .await
                .map_err(|e| ControlError::Internal(e.to_string()))?;
            let Some(plugins) = self.plugins.as_ref() else {
                return Err(ControlError::Internal(
                    "the server runs no call policy".into(),
                ));
            };
            Ok(plugins.usage(tenant, &own))
        })
    }

    fn plugin_log(
        &self,
        tenant: TenantId,
    ) -> BoxFuture<'_, ControlResult<Vec<pbx_api::PluginLogLine>>> {
        let lines = self
            .plugins
            .as_ref()
            .map(|p| p.log_lines(tenant))
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(lines)))
    }

    fn lift_quarantine(&self, tenant: TenantId, hash: String) -> BoxFuture<'_, ControlResult<()>> {
        let lifted = self
            .plugins
            .as_ref()
            .is_some_and(|p| p.lift_quarantine(tenant, &hash));
        Box::pin(std::future::ready(if lifted {
            Ok(())
        } else {
            Err(ControlError::NotFound(hash))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn control_with_tenants() -> (ServerControl, TenantId, TenantId) {
        let store = Store::open_in_memory().await.unwrap();
        let a = store.add_tenant("acme", "acme.example").await.unwrap().id;
        let b = store.add_tenant("beta", "beta.example").await.unwrap().id;
        (
            ServerControl::new(
                store.clone(),
                Vec::new(),
                None,
                Mailboxes::new(store, Vec::new()),
            ),
            a,
            b,
        )
    }

    #[tokio::test]
    async fn dids_and_trunks_stay_with_their_tenant() {
        let (c, a, b) = control_with_tenants().await;
        let did = Did {
            number: "+15550001".into(),
        };
        assert_eq!(c.add_did(a, did.clone()).await, Ok(did.clone()));
        assert!(matches!(
            c.add_did(b, did.clone()).await,
            Err(ControlError::Conflict(_))
        ));
        assert_eq!(c.list_dids(a).await, Ok(vec![did.clone()]));
        assert!(matches!(
            Control::remove_did(&c, b, "+15550001".into()).await,
            Err(ControlError::NotFound(_))
        ));
        assert_eq!(Control::remove_did(&c, a, "+15550001".into()).await, Ok(()));
        assert_eq!(c.list_dids(a).await, Ok(vec![]));

        let trunk = NewTrunk {
            name: "carrier".into(),
            uri: "sip:gw.example:5080".into(),
            username: Some("acct".into()),
            password: Some("trunk-pw".into()),
        };
        let info = c.add_trunk(a, trunk.clone()).await.unwrap();
        assert_eq!(info.uri, "sip:gw.example:5080;transport=udp");
        assert!(c.list_trunks(b).await.unwrap().is_empty());
        assert!(matches!(
            c.remove_trunk(b, "carrier".into()).await,
            Err(ControlError::NotFound(_))
        ));
        assert_eq!(c.remove_trunk(a, "carrier".into()).await, Ok(()));
        let bad = NewTrunk {
            uri: "http://nope".into(),
            ..trunk
        };
        assert!(matches!(
            c.add_trunk(a, bad).await,
            Err(ControlError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn garbage_plugins_are_refused_and_nothing_is_stored() {
        let (c, a, _) = control_with_tenants().await;
        let err = c.install_plugin(a, b"\0asm-not-really".to_vec()).await;
        assert!(matches!(err, Err(ControlError::Invalid(_))), "{err:?}");
        assert_eq!(c.list_plugins(a).await, Ok(vec![]));
        assert!(matches!(
            c.rollback_plugin(a).await,
            Err(ControlError::NotFound(_))
        ));
        assert!(matches!(
            c.install_plugin(TenantId(999), Vec::new()).await,
            Err(ControlError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn policies_are_validated_installed_and_removed() {
        let (c, a, _) = control_with_tenants().await;
        let wasm = pbx_plugin::shipped::DEFAULT_POLICY.to_vec();
        let global = Control::install_policy(&c, "fraud".into(), None, wasm.clone())
            .await
            .unwrap();
        assert_eq!(global.name, "fraud");
        assert_eq!(global.tenant, None);
        assert_eq!(global.hash.len(), 64);
        let own = Control::install_policy(&c, "acme-only".into(), Some(a), wasm.clone())
            .await
            .unwrap();
        assert_eq!(own.tenant, Some(a));
        let names: Vec<String> = c
            .list_policies()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["acme-only", "fraud"]);

        // garbage, a dial plan in place of a policy, a bad name, a missing
        // tenant: all refused, nothing stored
        let refused = [
            ("junk", None, b"\0asm-not-really".to_vec()),
            (
                "dialplan",
                None,
                pbx_plugin::shipped::DEFAULT_DIALPLAN.to_vec(),
            ),
            ("bad/name", None, wasm.clone()),
        ];
        for (name, tenant, bytes) in refused {
            let err = Control::install_policy(&c, name.into(), tenant, bytes).await;
            assert!(
                matches!(err, Err(ControlError::Invalid(_))),
                "{name}: {err:?}"
            );
        }
        assert!(matches!(
            Control::install_policy(&c, "x".into(), Some(TenantId(999)), wasm).await,
            Err(ControlError::NotFound(_))
        ));
        assert_eq!(c.list_policies().await.unwrap().len(), 2);

        assert_eq!(c.remove_policy("fraud".into()).await, Ok(()));
        assert!(matches!(
            c.remove_policy("fraud".into()).await,
            Err(ControlError::NotFound(_))
        ));
        assert_eq!(c.list_policies().await.unwrap(), vec![own]);
    }

    #[tokio::test]
    async fn bans_and_alerts_come_from_the_store() {
        let (c, a, b) = control_with_tenants().await;
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let now = unix_ms(SystemTime::now());
        c.store
            .upsert_ban(&store::BanRecord {
                ip,
                reason: "digest failures".into(),
                count: 10,
                strikes: 1,
                first_ms: now,
                last_ms: now,
                tried: vec![],
                until_ms: now + 3_600_000,
            })
            .await
            .unwrap();
        let bans = c.list_bans().await.unwrap();
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].address, ip);
        assert_eq!(c.remove_ban(ip).await, Ok(()));
        assert!(matches!(
            c.remove_ban(ip).await,
            Err(ControlError::NotFound(_))
        ));
        c.store
            .insert_alert(&store::Alert {
                tenant: Some(a),
                severity: store::Severity::Warning,
                event: "fraud.burst".into(),
                message: "many calls".into(),
                at_ms: now,
            })
            .await
            .unwrap();
        assert_eq!(c.list_alerts(Some(a)).await.unwrap().len(), 1);
        assert!(c.list_alerts(Some(b)).await.unwrap().is_empty());
        assert_eq!(c.list_alerts(None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn calls_need_a_running_shard() {
        let (tx, mut rx) = mpsc::channel(1);
        let (c, a, _) = control_with_tenants().await;
        let mailboxes = Mailboxes::new(c.store.clone(), Vec::new());
        let c = ServerControl::new(c.store, vec![tx], None, mailboxes);
        // A stand-in shard that holds no calls.
        let shard = tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    ShardCommand::Calls(reply) => {
                        let _ = reply.send(Vec::new());
                    }
                    ShardCommand::HangUp { reply, .. } => {
                        let _ = reply.send(false);
                    }
                }
            }
        });
        assert_eq!(c.list_calls(a).await, Ok(vec![]));
        assert!(matches!(
            c.hangup(a, "x".into()).await,
            Err(ControlError::NotFound(_))
        ));
        drop(c);
        shard.await.unwrap();
    }
}
