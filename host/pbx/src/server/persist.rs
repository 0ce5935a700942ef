//! The write-behind task: registrar changes and call records leave the SIP path
//! through a bounded queue and reach the store in batches, one transaction per
//! batch and kind.

use store::{Cdr, RegistrationChange, Store};
use tokio::sync::mpsc;

use super::Limits;

/// Attempts at the final flush on shutdown.
const FINAL_ATTEMPTS: usize = 3;

/// Something to write.
#[derive(Debug, Clone)]
pub(crate) enum Persist {
    Registration(RegistrationChange),
    Cdr(Cdr),
}

#[derive(Debug, Default)]
struct Pending {
    registrations: Vec<RegistrationChange>,
    cdrs: Vec<Cdr>,
    written: u64,
}

impl Pending {
    fn len(&self) -> usize {
        self.registrations.len() + self.cdrs.len()
    }

    fn push(&mut self, item: Persist) {
        match item {
            Persist::Registration(r) => self.registrations.push(r),
            Persist::Cdr(c) => self.cdrs.push(c),
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
        if !self.cdrs.is_empty() {
            match store.insert_cdrs(&self.cdrs).await {
                Ok(()) => {
                    self.written += self.cdrs.len() as u64;
                    self.cdrs.clear();
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
/// items were written.
pub(crate) async fn run(store: Store, mut rx: mpsc::Receiver<Persist>, limits: Limits) -> u64 {
    let batch = limits.flush_batch.max(1);
    let cap = limits.persist_queue.max(batch) * 16;
    let mut pending = Pending::default();
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
        let task = tokio::spawn(run(store.clone(), rx, Limits::default()));
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

    #[test]
    fn shedding_drops_the_oldest() {
        let mut v: Vec<u32> = (0..10).collect();
        assert_eq!(shed_vec(&mut v, 4), 6);
        assert_eq!(v, vec![6, 7, 8, 9]);
        assert_eq!(shed_vec(&mut v, 10), 0);
    }
}
