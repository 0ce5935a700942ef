//! The write-behind task: registrar changes and call records leave the SIP path
//! through a bounded queue and reach the store in batches, one transaction per
//! batch and kind.
//!
//! On a node of a cluster, answered calls are recorded as in progress too,
//! and each call's record replaces that row in the same transaction
//! ([`Store::write_cluster_records`]): when a node dies, another turns its
//! rows into records of dropped calls, and no call is recorded twice.

use store::{Cdr, EndedCall, RegistrationChange, Store};
use tokio::sync::mpsc;

use super::Limits;

/// Attempts at the final flush on shutdown.
const FINAL_ATTEMPTS: usize = 3;

/// Something to write.
#[derive(Debug, Clone)]
pub(crate) enum Persist {
    Registration(RegistrationChange),
    Cdr(Cdr),
    /// A call answered on this node of a cluster (its record so far).
    Answered(Cdr),
}

#[derive(Debug, Default)]
struct Pending {
    /// This node's id in a cluster.
    node: Option<String>,
    registrations: Vec<RegistrationChange>,
    answered: Vec<Cdr>,
    cdrs: Vec<Cdr>,
    written: u64,
}

impl Pending {
    fn len(&self) -> usize {
        self.registrations.len() + self.answered.len() + self.cdrs.len()
    }

    fn push(&mut self, item: Persist) {
        match item {
            Persist::Registration(r) => self.registrations.push(r),
            Persist::Cdr(c) => self.cdrs.push(c),
            Persist::Answered(c) => self.answered.push(c),
        }
    }

    /// Writes the call records (and, in a cluster, the calls answered);
    /// returns how many records were written.
    async fn write_calls(&self, store: &Store) -> store::Result<u64> {
        match &self.node {
            Some(node) => {
                // Every call answered here was recorded as in progress
                // (answered calls are announced before they end, and
                // both go through this queue in order).
                let ended: Vec<EndedCall> = self
                    .cdrs
                    .iter()
                    .map(|c| EndedCall {
                        tracked: c.answered_at_ms.is_some(),
                        cdr: c.clone(),
                    })
                    .collect();
                store
                    .write_cluster_records(node, &self.answered, &ended)
                    .await
            }
            None => {
                store.insert_cdrs(&self.cdrs).await?;
                Ok(self.cdrs.len() as u64)
            }
        }
    }

    /// Writes what is pending; what fails stays for the next attempt. `true` when
    /// nothing is left.
    async fn flush(&mut self, store: &Store) -> bool {
        if !self.registrations.is_empty() {
            match store.apply_registrations(&self.registrations).await {
                Ok(()) => {
                    self.written += self.registrations.len() as u64;
                    self.registrations.clear();
                }
                Err(e) => tracing::error!(
                    error = %e,
                    pending = self.registrations.len(),
                    "writing registrations failed; will retry"
                ),
            }
        }
        if !self.cdrs.is_empty() || !self.answered.is_empty() {
            match self.write_calls(store).await {
                Ok(n) => {
                    self.written += n + self.answered.len() as u64;
                    self.cdrs.clear();
                    self.answered.clear();
                }
                Err(e) => tracing::error!(
                    error = %e,
                    pending = self.cdrs.len(),
                    "writing call records failed; will retry"
                ),
            }
        }
        self.len() == 0
    }

    /// Bounds memory while the database is failing: the oldest items go first.
    fn shed(&mut self, cap: usize) {
        for (name, len) in [
            ("registrations", shed_vec(&mut self.registrations, cap)),
            ("call records", shed_vec(&mut self.cdrs, cap)),
            ("calls in progress", shed_vec(&mut self.answered, cap)),
        ] {
            if len > 0 {
                tracing::error!(dropped = len, "database unavailable: dropped {name}");
            }
        }
    }
}

fn shed_vec<T>(v: &mut Vec<T>, cap: usize) -> usize {
    let excess = v.len().saturating_sub(cap);
    v.drain(..excess);
    excess
}

/// Runs until every sender is gone, then writes what is left. Returns how many
/// items were written. `node` is this node's id in a cluster.
pub(crate) async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Persist>,
    limits: Limits,
    node: Option<String>,
) -> u64 {
    let batch = limits.flush_batch.max(1);
    let cap = limits.persist_queue.max(batch) * 16;
    let mut pending = Pending {
        node,
        ..Pending::default()
    };
    let mut incoming = Vec::with_capacity(batch);
    let mut tick = tokio::time::interval(
        limits
            .flush_interval
            .max(std::time::Duration::from_millis(1)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut incoming, batch) => {
                if n == 0 {
                    break;
                }
                for item in incoming.drain(..) {
                    pending.push(item);
                }
                if pending.len() >= batch {
                    pending.flush(&store).await;
                    pending.shed(cap);
                }
            }
            _ = tick.tick() => {
                if pending.len() > 0 {
                    pending.flush(&store).await;
                    pending.shed(cap);
                }
            }
        }
    }
    for _ in 0..FINAL_ATTEMPTS {
        if pending.flush(&store).await {
            break;
        }
    }
    if pending.len() > 0 {
        tracing::error!(
            lost = pending.len(),
            "could not write everything at shutdown"
        );
    }
    pending.written
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{CdrFilter, Disposition, TenantId};

    fn cdr(tenant: TenantId, i: i64) -> Cdr {
        Cdr {
            tenant,
            caller: "1000".into(),
            callee: "1001".into(),
            started_at_ms: 1_000 + i,
            answered_at_ms: None,
            ended_at_ms: 2_000 + i,
            disposition: Disposition::NoAnswer,
            sip_code: 480,
            hangup_by: "caller".into(),
            caller_call_id: format!("call-{i}"),
            callee_call_id: String::new(),
            media: store::CdrMedia::default(),
            tags: Vec::new(),
        }
    }

    #[tokio::test]
    async fn every_record_is_written_when_the_senders_go_away() {
        let store = Store::open_in_memory().await.unwrap();
        let tenant = store.add_tenant("acme", "acme.example").await.unwrap();
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(run(store.clone(), rx, Limits::default(), None));
        for i in 0..1_234 {
            tx.send(Persist::Cdr(cdr(tenant.id, i))).await.unwrap();
        }
        drop(tx);
        let written = task.await.unwrap();
        assert_eq!(written, 1_234);
        let filter = CdrFilter {
            limit: Some(CdrFilter::MAX_LIMIT),
            ..CdrFilter::default()
        };
        let cdrs = store.list_cdrs(tenant.id, &filter).await.unwrap();
        assert_eq!(cdrs.len(), 1_234);
    }

    /// On a node of a cluster: an answered call is in progress until its
    /// record replaces it; an unanswered one is simply recorded; and the
    /// calls a dead node left are recorded as dropped by another, once.
    #[tokio::test]
    async fn a_node_records_calls_in_progress_until_they_end() {
        let store = Store::open_in_memory().await.unwrap();
        let tenant = store.add_tenant("acme", "acme.example").await.unwrap();
        let answered = |i| Cdr {
            answered_at_ms: Some(1_500 + i),
            disposition: Disposition::Answered,
            sip_code: 200,
            ..cdr(tenant.id, i)
        };
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(run(store.clone(), rx, Limits::default(), Some("a".into())));
        tx.send(Persist::Answered(answered(1))).await.unwrap();
        tx.send(Persist::Answered(answered(2))).await.unwrap();
        tx.send(Persist::Cdr(cdr(tenant.id, 3))).await.unwrap();
        tx.send(Persist::Cdr(answered(1))).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let in_progress = store.cluster_calls("a").await.unwrap();
        assert_eq!(in_progress.len(), 1, "call 2 is still up");
        assert_eq!(in_progress[0].caller_call_id, "call-2");

        // Node a is gone: call 2 is recorded as dropped, once.
        let claimed = store.claim_dead_nodes("b", i64::MAX).await;
        // Node a never heartbeated; its own next start claims its calls.
        assert_eq!(claimed.unwrap(), Vec::new());
        assert_eq!(store.claim_own_calls("a").await.unwrap(), 1);
        assert_eq!(store.claim_own_calls("a").await.unwrap(), 0);
        let filter = CdrFilter {
            limit: Some(CdrFilter::MAX_LIMIT),
            ..CdrFilter::default()
        };
        let mut cdrs = store.list_cdrs(tenant.id, &filter).await.unwrap();
        cdrs.sort_by(|a, b| a.caller_call_id.cmp(&b.caller_call_id));
        let seen: Vec<(&str, Disposition)> = cdrs
            .iter()
            .map(|c| (c.caller_call_id.as_str(), c.disposition))
            .collect();
        assert_eq!(
            seen,
            [
                ("call-1", Disposition::Answered),
                ("call-2", Disposition::Dropped),
                ("call-3", Disposition::NoAnswer),
            ]
        );
    }

    #[test]
    fn shedding_drops_the_oldest() {
        let mut v: Vec<u32> = (0..10).collect();
        assert_eq!(shed_vec(&mut v, 4), 6);
        assert_eq!(v, vec![6, 7, 8, 9]);
        assert_eq!(shed_vec(&mut v, 10), 0);
    }
}
