//! This node's place in a cluster (`[cluster] node`): its heartbeat, the
//! operator's drain, and the calls of nodes that died.
//!
//! Every [`store::HEARTBEAT_MS`] the node writes its row of the cluster's
//! node table (addresses, calls in progress, bindings it holds) and reads
//! back its state: `pbx node drain ID` sets it to draining, and the node then
//! refuses new calls, registrations and probes with 503 (the front sends them
//! to the other nodes) while its calls finish; `pbx node resume ID` undoes
//! it. With each heartbeat the node also looks for nodes silent for longer
//! than [`store::DEAD_AFTER_MS`] and records their calls in progress as
//! dropped (see `pbx-store`'s `node` module: each call is recorded once,
//! whichever node gets there first).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pbx_core::Shared;
use store::{NodeHeartbeat, NodeState, Store};
use tokio_util::sync::CancellationToken;

/// What stays the same in each heartbeat.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) id: String,
    pub(crate) sip_addresses: String,
    pub(crate) api_address: Option<String>,
    pub(crate) started_at_ms: i64,
}

/// Before the node serves: records the calls an earlier run under the same
/// id left in progress as dropped, and writes the first heartbeat (so a node
/// drained before a restart starts draining).
pub(crate) async fn start(store: &Store, shared: &Shared, me: &Identity) -> anyhow::Result<()> {
    let dropped = store.claim_own_calls(&me.id).await?;
    if dropped > 0 {
        tracing::warn!(
            node = %me.id,
            calls = dropped,
            "calls in progress when this node last stopped are recorded as dropped"
        );
    }
    beat(store, shared, me).await?;
    Ok(())
}

/// Heartbeats until `stop`.
pub(crate) async fn run(store: Store, shared: Arc<Shared>, me: Identity, stop: CancellationToken) {
    let period = Duration::from_millis(store::HEARTBEAT_MS.unsigned_abs());
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = beat(&store, &shared, &me).await {
            tracing::warn!(error = %e, "cannot write this node's heartbeat");
            continue;
        }
        let stale_before = super::unix_ms(SystemTime::now()) - store::DEAD_AFTER_MS;
        match store.claim_dead_nodes(&me.id, stale_before).await {
            Ok(claimed) => {
                for (node, calls) in claimed {
                    tracing::warn!(
                        %node,
                        calls,
                        "node is down: its calls in progress are recorded as dropped"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for nodes that are down"),
        }
    }
}

/// Writes one heartbeat and takes in the state the operator set.
async fn beat(store: &Store, shared: &Shared, me: &Identity) -> store::Result<()> {
    let state = store
        .node_heartbeat(&NodeHeartbeat {
            id: me.id.clone(),
            sip_addresses: me.sip_addresses.clone(),
            api_address: me.api_address.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at_ms: me.started_at_ms,
            now_ms: super::unix_ms(SystemTime::now()),
            calls_up: shared.calls_up() as u64,
            registrations: shared.own_bindings(Instant::now()) as u64,
        })
        .await?;
    let draining = state == NodeState::Draining;
    if draining != shared.draining() {
        if draining {
            tracing::info!(node = %me.id, "draining: new calls and registrations go to other nodes");
        } else {
            tracing::info!(node = %me.id, "resumed: taking new calls and registrations");
        }
        shared.set_draining(draining);
    }
    Ok(())
}
