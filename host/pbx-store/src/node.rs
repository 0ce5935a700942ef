//! The nodes of a cluster (several `pbx serve` sharing one database) and the
//! answered calls each has in progress.
//!
//! # Design
//! - Each node writes its row of `cluster_nodes` every second
//!   ([`Store::node_heartbeat`]); the row's `state` belongs to the operator
//!   ([`Store::set_node_state`]), so a heartbeat never changes it and reads
//!   it back instead.
//! - In cluster mode a node records each answered call in `cluster_calls`
//!   when it is answered, and when the call ends writes its record and
//!   deletes that row in one transaction ([`Store::write_cluster_records`]).
//! - A node that stops heartbeating leaves its rows; another node (or the
//!   same id starting again) turns them into records of dropped calls ending
//!   at the dead node's last heartbeat ([`Store::claim_dead_nodes`],
//!   [`Store::claim_own_calls`]). Each row is deleted before its record is
//!   written, in the same transaction, and a call whose row is gone writes no
//!   record of its own: every call is recorded exactly once, whoever gets
//!   there first.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Cdr, CdrMedia, Disposition, Error, Result, Store, TenantId};

/// Whether a node takes new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Serving normally.
    Active,
    /// Refusing new calls and registrations (503) while its calls finish.
    Draining,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        match s {
            "active" => Some(NodeState::Active),
            "draining" => Some(NodeState::Draining),
            _ => None,
        }
    }
}

/// What a node writes with each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHeartbeat {
    pub id: String,
    /// The SIP addresses it listens on, comma-separated.
    pub sip_addresses: String,
    pub api_address: Option<String>,
    pub version: String,
    pub started_at_ms: i64,
    /// When this heartbeat was taken, Unix milliseconds.
    pub now_ms: i64,
    pub calls_up: u64,
    pub registrations: u64,
}

/// A node as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub id: String,
    pub sip_addresses: String,
    pub api_address: Option<String>,
    pub version: String,
    pub started_at_ms: i64,
    pub heartbeat_ms: i64,
    pub state: NodeState,
    pub calls_up: u64,
    pub registrations: u64,
}

impl ClusterNode {
    /// Whether the node still heartbeats at `now_ms`: its last heartbeat is
    /// at most [`DEAD_AFTER_MS`] old.
    pub fn is_up(&self, now_ms: i64) -> bool {
        now_ms - self.heartbeat_ms <= DEAD_AFTER_MS
    }
}

/// What the SIP side calls a call's record that ends on this node: the record,
/// and whether the call was recorded in progress when it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedCall {
    pub cdr: Cdr,
    pub tracked: bool,
}

/// How a call in progress is named in `cluster_calls`: its caller leg's
/// Call-ID (unique per node).
pub fn call_key(cdr: &Cdr) -> &str {
    &cdr.caller_call_id
}

/// Who hung up a dropped call, in its record.
pub const DROPPED_BY: &str = "node-down";

/// How often a node writes its heartbeat, in milliseconds.
pub const HEARTBEAT_MS: i64 = 1_000;

/// A node whose last heartbeat is older than this (milliseconds) is down:
/// its calls are recorded as dropped. Several heartbeats long, so that a
/// slow database write or a pause does not make a live node look dead.
pub const DEAD_AFTER_MS: i64 = 6_000;

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Writes this node's row (made on the first heartbeat) and returns its
    /// state as stored: the operator's, which heartbeats keep.
    pub async fn node_heartbeat(&self, beat: &NodeHeartbeat) -> Result<NodeState> {
        let row = sqlx::query(
            "INSERT INTO cluster_nodes (id, sip_addresses, api_address, version, \
             started_at_ms, heartbeat_ms, state, calls_up, registrations) \
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8) \
             ON CONFLICT (id) DO UPDATE SET sip_addresses = excluded.sip_addresses, \
             api_address = excluded.api_address, version = excluded.version, \
             started_at_ms = excluded.started_at_ms, heartbeat_ms = excluded.heartbeat_ms, \
             calls_up = excluded.calls_up, registrations = excluded.registrations \
             RETURNING state",
        )
        .bind(&beat.id)
        .bind(&beat.sip_addresses)
        .bind(beat.api_address.as_deref())
        .bind(&beat.version)
        .bind(beat.started_at_ms)
        .bind(beat.now_ms)
        .bind(count(beat.calls_up))
        .bind(count(beat.registrations))
        .fetch_one(&self.pool)
        .await?;
        let state: String = row.try_get("state")?;
        NodeState::parse(&state)
            .ok_or_else(|| Error::Invalid(format!("stored node {}: state {state:?}", beat.id)))
    }

    /// Every node that ever heartbeated, by id.
    pub async fn list_nodes(&self) -> Result<Vec<ClusterNode>> {
        let rows = sqlx::query(
            "SELECT id, sip_addresses, api_address, version, started_at_ms, heartbeat_ms, \
             state, calls_up, registrations FROM cluster_nodes ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(node_from_row).collect()
    }

    /// Sets a node's state; `false` when no node has that id.
    pub async fn set_node_state(&self, id: &str, state: NodeState) -> Result<bool> {
        let done = sqlx::query("UPDATE cluster_nodes SET state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Node `node`'s batch, in one transaction: the calls answered (each
    /// recorded as in progress) first, then the records of calls that ended.
    /// A tracked call's row is deleted with its record written; when the row
    /// is already gone (another node recorded the call as dropped) the record
    /// is not written again. Returns how many records were written.
    pub async fn write_cluster_records(
        &self,
        node: &str,
        answered: &[Cdr],
        ended: &[EndedCall],
    ) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        for c in answered {
            sqlx::query(
                "INSERT INTO cluster_calls (node, call_key, tenant_id, caller, callee, \
                 started_at_ms, answered_at_ms, caller_call_id, callee_call_id, tags) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (node, call_key) DO NOTHING",
            )
            .bind(node)
            .bind(call_key(c))
            .bind(c.tenant.0)
            .bind(c.caller.as_str())
            .bind(c.callee.as_str())
            .bind(c.started_at_ms)
            .bind(c.answered_at_ms)
            .bind(c.caller_call_id.as_str())
            .bind(c.callee_call_id.as_str())
            .bind(serde_json::to_string(&c.tags).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
        }
        let mut records = Vec::with_capacity(ended.len());
        for e in ended {
            if e.tracked {
                let done =
                    sqlx::query("DELETE FROM cluster_calls WHERE node = $1 AND call_key = $2")
                        .bind(node)
                        .bind(call_key(&e.cdr))
                        .execute(&mut *tx)
                        .await?;
                if done.rows_affected() == 0 {
                    continue;
                }
            }
            records.push(e.cdr.clone());
        }
        crate::cdr::insert_in(&mut tx, &records).await?;
        tx.commit().await?;
        Ok(records.len() as u64)
    }

    /// Answered calls recorded as in progress on `node`, oldest first.
    pub async fn cluster_calls(&self, node: &str) -> Result<Vec<Cdr>> {
        let rows = sqlx::query(
            "SELECT tenant_id, caller, callee, started_at_ms, answered_at_ms, caller_call_id, \
             callee_call_id, tags FROM cluster_calls WHERE node = $1 \
             ORDER BY started_at_ms, call_key",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| in_progress(r, 0)).collect()
    }

    /// Records the calls of every other node whose last heartbeat is older
    /// than `stale_before_ms` as dropped at that heartbeat, in one
    /// transaction. Returns each such node with the calls recorded for it;
    /// nodes with nothing left are not listed.
    pub async fn claim_dead_nodes(
        &self,
        me: &str,
        stale_before_ms: i64,
    ) -> Result<Vec<(String, u64)>> {
        let mut tx = self.write_tx().await?;
        let dead: Vec<(String, i64)> = sqlx::query_as(
            "SELECT n.id, n.heartbeat_ms FROM cluster_nodes n \
             WHERE n.heartbeat_ms < $1 AND n.id <> $2 \
             AND EXISTS (SELECT 1 FROM cluster_calls c WHERE c.node = n.id) ORDER BY n.id",
        )
        .bind(stale_before_ms)
        .bind(me)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::new();
        for (node, heartbeat_ms) in dead {
            let n = drop_calls(&mut tx, &node, heartbeat_ms).await?;
            if n > 0 {
                claimed.push((node, n));
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records the calls an earlier run under the id `me` left in progress as
    /// dropped at its last heartbeat (or, without one, when each was
    /// answered); run before the node serves. Returns how many.
    pub async fn claim_own_calls(&self, me: &str) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let heartbeat: Option<i64> =
            sqlx::query_scalar("SELECT heartbeat_ms FROM cluster_nodes WHERE id = $1")
                .bind(me)
                .fetch_optional(&mut *tx)
                .await?;
        let n = drop_calls(&mut tx, me, heartbeat.unwrap_or(0)).await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// Turns `node`'s rows into records of calls dropped at `ended_at_ms` (never
/// before a call was answered), deleting each row before writing its record.
async fn drop_calls(
    tx: &mut Transaction<'static, Any>,
    node: &str,
    ended_at_ms: i64,
) -> Result<u64> {
    let rows = sqlx::query(
        "SELECT call_key, tenant_id, caller, callee, started_at_ms, answered_at_ms, \
         caller_call_id, callee_call_id, tags FROM cluster_calls WHERE node = $1 \
         ORDER BY started_at_ms, call_key",
    )
    .bind(node)
    .fetch_all(&mut **tx)
    .await?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let key: String = row.try_get("call_key")?;
        let done = sqlx::query("DELETE FROM cluster_calls WHERE node = $1 AND call_key = $2")
            .bind(node)
            .bind(&key)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() == 1 {
            records.push(in_progress(row, ended_at_ms)?);
        }
    }
    crate::cdr::insert_in(tx, &records).await?;
    Ok(records.len() as u64)
}

/// A `cluster_calls` row as the record of a call dropped at `ended_at_ms`.
fn in_progress(row: &AnyRow, ended_at_ms: i64) -> Result<Cdr> {
    let tenant = TenantId(row.try_get("tenant_id")?);
    let started_at_ms: i64 = row.try_get("started_at_ms")?;
    let answered_at_ms: Option<i64> = row.try_get("answered_at_ms")?;
    let tags: String = row.try_get("tags")?;
    Ok(Cdr {
        tenant,
        caller: row.try_get("caller")?,
        callee: row.try_get("callee")?,
        started_at_ms,
        answered_at_ms,
        ended_at_ms: ended_at_ms.max(answered_at_ms.unwrap_or(started_at_ms)),
        disposition: Disposition::Dropped,
        sip_code: 200,
        hangup_by: DROPPED_BY.into(),
        caller_call_id: row.try_get("caller_call_id")?,
        callee_call_id: row.try_get("callee_call_id")?,
        media: CdrMedia::default(),
        tags: serde_json::from_str(&tags)
            .map_err(|_| Error::Invalid(format!("call in progress of tenant {tenant}: tags")))?,
    })
}

fn node_from_row(row: &AnyRow) -> Result<ClusterNode> {
    let id: String = row.try_get("id")?;
    let bad = |what: &str| Error::Invalid(format!("stored node {id}: {what}"));
    let state: String = row.try_get("state")?;
    let calls_up: i64 = row.try_get("calls_up")?;
    let registrations: i64 = row.try_get("registrations")?;
    Ok(ClusterNode {
        sip_addresses: row.try_get("sip_addresses")?,
        api_address: row.try_get("api_address")?,
        version: row.try_get("version")?,
        started_at_ms: row.try_get("started_at_ms")?,
        heartbeat_ms: row.try_get("heartbeat_ms")?,
        state: NodeState::parse(&state).ok_or_else(|| bad("state"))?,
        calls_up: u64::try_from(calls_up).map_err(|_| bad("calls_up"))?,
        registrations: u64::try_from(registrations).map_err(|_| bad("registrations"))?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use crate::*;

    fn beat(id: &str, now_ms: i64) -> NodeHeartbeat {
        NodeHeartbeat {
            id: id.into(),
            sip_addresses: "udp:10.0.0.1:5060".into(),
            api_address: Some("10.0.0.1:8443".into()),
            version: "1.0.0".into(),
            started_at_ms: 500,
            now_ms,
            calls_up: 3,
            registrations: 7,
        }
    }

    fn answered(tenant: TenantId, key: &str, answered_at_ms: i64) -> Cdr {
        let mut c = crate::cdr::tests::cdr(tenant, "100", "101", answered_at_ms - 2_000);
        c.caller_call_id = key.into();
        c.callee_call_id = format!("b-{key}");
        c.answered_at_ms = Some(answered_at_ms);
        c.tags = vec!["vip".into()];
        c
    }

    async fn all_cdrs(store: &Store, tenant: TenantId) -> Vec<Cdr> {
        store
            .list_cdrs(tenant, &CdrFilter::default())
            .await
            .expect("cdrs")
    }

    backend_test! {
        async fn heartbeats_keep_the_operators_state() {
            let store = crate::testdb::store().await.expect("open");
            assert!(store.list_nodes().await.expect("list").is_empty());
            assert!(!store.set_node_state("a", NodeState::Draining).await.expect("set"));
            assert_eq!(store.node_heartbeat(&beat("a", 1_000)).await.expect("hb"), NodeState::Active);
            store.node_heartbeat(&beat("b", 1_000)).await.expect("hb");
            assert!(store.set_node_state("a", NodeState::Draining).await.expect("set"));
            let mut next = beat("a", 2_000);
            next.calls_up = 1;
            assert_eq!(store.node_heartbeat(&next).await.expect("hb"), NodeState::Draining);
            let nodes = store.list_nodes().await.expect("list");
            assert_eq!(nodes.len(), 2);
            assert_eq!(nodes[0].id, "a");
            assert_eq!(nodes[0].state, NodeState::Draining);
            assert_eq!(nodes[0].heartbeat_ms, 2_000);
            assert_eq!(nodes[0].calls_up, 1);
            assert_eq!(nodes[0].registrations, 7);
            assert_eq!(nodes[0].api_address.as_deref(), Some("10.0.0.1:8443"));
            assert_eq!(nodes[1].state, NodeState::Active);
            assert!(store.set_node_state("a", NodeState::Active).await.expect("set"));
            assert_eq!(store.node_heartbeat(&beat("a", 3_000)).await.expect("hb"), NodeState::Active);
        }
    }

    backend_test! {
        async fn a_call_ending_normally_is_recorded_once_and_leaves_no_row() {
            let store = crate::testdb::store().await.expect("open");
            let t = store.add_tenant("a", "a.example").await.expect("t").id;
            let call = answered(t, "k1", 10_000);
            store.write_cluster_records("n1", std::slice::from_ref(&call), &[]).await.expect("answered");
            assert_eq!(store.cluster_calls("n1").await.expect("rows").len(), 1);
            let failed = Cdr {
                disposition: Disposition::Busy,
                answered_at_ms: None,
                ..answered(t, "k2", 11_000)
            };
            let ended = [
                EndedCall { cdr: call.clone(), tracked: true },
                EndedCall { cdr: failed, tracked: false },
            ];
            assert_eq!(store.write_cluster_records("n1", &[], &ended).await.expect("ended"), 2);
            assert!(store.cluster_calls("n1").await.expect("rows").is_empty());
            let cdrs = all_cdrs(&store, t).await;
            assert_eq!(cdrs.len(), 2);
            assert_eq!(cdrs.iter().filter(|c| c.disposition == Disposition::Answered).count(), 1);
            // Answered and ended in one batch.
            let both = answered(t, "k3", 12_000);
            let ended = [EndedCall { cdr: both.clone(), tracked: true }];
            assert_eq!(
                store.write_cluster_records("n1", std::slice::from_ref(&both), &ended).await.expect("both"),
                1
            );
            assert!(store.cluster_calls("n1").await.expect("rows").is_empty());
        }
    }

    backend_test! {
        async fn a_dead_nodes_calls_are_dropped_exactly_once() {
            let store = crate::testdb::store().await.expect("open");
            let t = store.add_tenant("a", "a.example").await.expect("t").id;
            store.node_heartbeat(&beat("dead", 20_000)).await.expect("hb");
            store.node_heartbeat(&beat("x", 30_000)).await.expect("hb");
            store.node_heartbeat(&beat("y", 30_000)).await.expect("hb");
            let calls: Vec<Cdr> = (0..5).map(|i| answered(t, &format!("d{i}"), 15_000 + i)).collect();
            store.write_cluster_records("dead", &calls, &[]).await.expect("answered");
            let live = answered(t, "live", 29_000);
            store.write_cluster_records("x", std::slice::from_ref(&live), &[]).await.expect("answered");

            // Not stale yet at this threshold.
            assert!(store.claim_dead_nodes("x", 20_000).await.expect("claim").is_empty());
            // Two nodes claim at once: one wins, the other finds nothing.
            let (a, b) = tokio::join!(
                store.claim_dead_nodes("x", 25_000),
                store.claim_dead_nodes("y", 25_000),
            );
            let (a, b) = (a.expect("x claims"), b.expect("y claims"));
            let mut all: Vec<_> = a.iter().chain(b.iter()).cloned().collect();
            all.sort();
            assert_eq!(all, vec![("dead".to_string(), 5)]);
            assert!(store.claim_dead_nodes("y", 25_000).await.expect("again").is_empty());

            let cdrs = all_cdrs(&store, t).await;
            assert_eq!(cdrs.len(), 5);
            for c in &cdrs {
                assert_eq!(c.disposition, Disposition::Dropped);
                assert_eq!(c.ended_at_ms, 20_000);
                assert_eq!(c.hangup_by, DROPPED_BY);
                assert_eq!(c.tags, vec!["vip".to_string()]);
            }
            assert!(store.cluster_calls("dead").await.expect("rows").is_empty());
            assert_eq!(store.cluster_calls("x").await.expect("rows"), vec![Cdr {
                ended_at_ms: 29_000,
                disposition: Disposition::Dropped,
                hangup_by: DROPPED_BY.into(),
                media: CdrMedia::default(),
                ..live
            }]);

            // The dead node comes back and ends a claimed call: no second record.
            let ended = [EndedCall { cdr: calls[0].clone(), tracked: true }];
            assert_eq!(store.write_cluster_records("dead", &[], &ended).await.expect("late"), 0);
            assert_eq!(all_cdrs(&store, t).await.len(), 5);
        }
    }

    backend_test! {
        async fn a_restarted_node_drops_its_own_old_calls() {
            let store = crate::testdb::store().await.expect("open");
            let t = store.add_tenant("a", "a.example").await.expect("t").id;
            store.node_heartbeat(&beat("n1", 40_000)).await.expect("hb");
            let calls: Vec<Cdr> = (0..2).map(|i| answered(t, &format!("o{i}"), 35_000 + i)).collect();
            store.write_cluster_records("n1", &calls, &[]).await.expect("answered");
            store.write_cluster_records("n2", &[answered(t, "other", 39_000)], &[]).await.expect("other");
            assert_eq!(store.claim_own_calls("n1").await.expect("own"), 2);
            assert_eq!(store.claim_own_calls("n1").await.expect("again"), 0);
            let cdrs = all_cdrs(&store, t).await;
            assert_eq!(cdrs.len(), 2);
            assert!(cdrs.iter().all(|c| c.disposition == Disposition::Dropped && c.ended_at_ms == 40_000));
            // Another node's calls are not touched; one with no heartbeat at
            // all ends when it was answered.
            assert_eq!(store.cluster_calls("n2").await.expect("rows").len(), 1);
            assert_eq!(store.claim_own_calls("n2").await.expect("n2"), 1);
            let other = all_cdrs(&store, t).await.into_iter().find(|c| c.caller_call_id == "other");
            assert_eq!(other.expect("other").ended_at_ms, 39_000);
        }
    }
}
