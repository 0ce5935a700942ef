//! The live alert feed behind `GET /api/v1/alerts/stream`.
//!
//! One poller per API reads the alerts stored since the last it saw
//! ([`Store::alerts_after`], by id) once a second, while at least one stream
//! is open, and hands each to the streams whose scope it is in: a provider's
//! stream sees every alert (or one tenant's), a tenant's only its own. The
//! store is polled rather than hooked where alerts are written because they
//! are written in many places (the guard, policies, the host, the API's own
//! login watch) and, in a cluster, by other nodes sharing the database: the
//! table is the one place that sees them all.
//!
//! Each stream has a bounded channel; the poller never waits on one. A
//! stream whose channel is full (its client reads too slowly) is dropped:
//! its answer ends, and the browser reconnects with `Last-Event-ID` and
//! catches up from the store. The streams open at once are capped per
//! tenant (per token for provider callers) and in all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use store::{AlertRecord, MAX_ALERTS, Store, TenantId};
use tokio::sync::mpsc;

/// How often the poller reads new alerts.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);
/// Alerts waiting for one stream's client before it is dropped.
pub(crate) const STREAM_BUFFER: usize = 64;
/// Streams open at once per tenant (per token for provider callers).
pub(crate) const STREAMS_PER_KEY: usize = 4;
/// Streams open at once in all.
pub(crate) const STREAMS_IN_ALL: usize = 256;

/// An open stream as the poller sees it.
struct Subscriber {
    /// `None`: every alert (a provider's unnarrowed stream).
    scope: Option<TenantId>,
    tx: mpsc::Sender<Arc<AlertRecord>>,
}

#[derive(Default)]
struct FeedState {
    subscribers: Vec<Subscriber>,
    /// Whether a poller task runs.
    polling: bool,
    /// Streams open per limit key.
    open: HashMap<String, usize>,
}

/// The feed: its subscribers and the poller's state.
#[derive(Default)]
pub(crate) struct AlertFeed {
    state: parking_lot::Mutex<FeedState>,
}

/// What a stream holds: its channel, and its place under the caps (given
/// back when dropped).
pub(crate) struct Subscription {
    pub(crate) alerts: mpsc::Receiver<Arc<AlertRecord>>,
    _slot: Slot,
}

struct Slot {
    feed: Arc<AlertFeed>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.feed.state.lock();
        if let Some(n) = state.open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                state.open.remove(&self.key);
            }
        }
    }
}

/// Whether an alert is in a stream's scope.
fn in_scope(scope: Option<TenantId>, alert: &AlertRecord) -> bool {
    scope.is_none() || scope == alert.alert.tenant
}

impl AlertFeed {
    /// Opens a stream of the alerts stored from now on in `scope`, counted
    /// under `key`; starts the poller if none runs. `None` when `key`, or
    /// the API, has as many streams open as allowed.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        store: &Store,
        key: String,
        scope: Option<TenantId>,
    ) -> Option<Subscription> {
        let mut state = self.state.lock();
        let in_all: usize = state.open.values().sum();
        let for_key = state.open.get(&key).copied().unwrap_or(0);
        if in_all >= STREAMS_IN_ALL || for_key >= STREAMS_PER_KEY {
            return None;
        }
        state.open.insert(key.clone(), for_key + 1);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        state.subscribers.push(Subscriber { scope, tx });
        if !state.polling {
            state.polling = true;
            tokio::spawn(poll(Arc::clone(self), store.clone()));
        }
        Some(Subscription {
            alerts: rx,
            _slot: Slot {
                feed: Arc::clone(self),
                key,
            },
        })
    }

    /// Hands `alert` to every stream whose scope it is in, without waiting:
    /// a stream whose buffer is full, or whose client is gone, is dropped.
    fn deliver(&self, alert: &Arc<AlertRecord>) {
        self.state.lock().subscribers.retain(|s| {
            if !in_scope(s.scope, alert) {
                return !s.tx.is_closed();
            }
            s.tx.try_send(Arc::clone(alert)).is_ok()
        });
    }

    /// Ends every open stream (their answers finish, so a graceful shutdown
    /// need not wait for them); the poller then stops.
    pub(crate) fn close(&self) {
        self.state.lock().subscribers.clear();
    }

    /// Forgets the streams whose client is gone; when none is left, marks
    /// the poller stopped and returns `true` (it must then end).
    fn stop_if_idle(&self) -> bool {
        let mut state = self.state.lock();
        state.subscribers.retain(|s| !s.tx.is_closed());
        if state.subscribers.is_empty() {
            state.polling = false;
            return true;
        }
        false
    }
}

/// The poller: from the newest alert stored when it starts, reads the newer
/// ones every [`POLL_EVERY`] and delivers them, until no stream is open.
async fn poll(feed: Arc<AlertFeed>, store: Store) {
    let mut last = None;
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if feed.stop_if_idle() {
            return;
        }
        let after = match last {
            Some(id) => id,
            None => match store.last_alert_id().await {
                Ok(id) => {
                    last = Some(id);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alert feed: reading the newest alert failed");
                    continue;
                }
            },
        };
        match store.alerts_after(after, MAX_ALERTS).await {
            Ok(fresh) => {
                for alert in fresh {
                    last = Some(alert.id);
                    feed.deliver(&Arc::new(alert));
                }
            }
            Err(e) => tracing::warn!(error = %e, "alert feed: reading new alerts failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Alert, Severity};

    fn record(id: i64, tenant: Option<i64>) -> Arc<AlertRecord> {
        Arc::new(AlertRecord {
            id,
            alert: Alert {
                tenant: tenant.map(TenantId),
                severity: Severity::Warning,
                event: "test".into(),
                message: format!("alert {id}"),
                at_ms: id,
            },
            acknowledged: false,
        })
    }

    #[tokio::test]
    async fn streams_see_their_scope_and_a_slow_one_is_dropped() {
        let store = Store::open_in_memory().await.expect("store");
        let feed = Arc::new(AlertFeed::default());
        let mut all = feed.subscribe(&store, "p".into(), None).expect("all");
        let mut one = feed
            .subscribe(&store, "t1".into(), Some(TenantId(1)))
            .expect("one");
        feed.deliver(&record(1, Some(1)));
        feed.deliver(&record(2, Some(2)));
        feed.deliver(&record(3, None));
        assert_eq!(all.alerts.recv().await.map(|a| a.id), Some(1));
        assert_eq!(all.alerts.recv().await.map(|a| a.id), Some(2));
        assert_eq!(all.alerts.recv().await.map(|a| a.id), Some(3));
        assert_eq!(one.alerts.recv().await.map(|a| a.id), Some(1));
        assert!(one.alerts.try_recv().is_err(), "not another tenant's");
        // `one` stops reading; its buffer fills and it is dropped, while the
        // poller never waits and `all` goes on.
        for id in 0..=i64::try_from(STREAM_BUFFER).expect("small") {
            feed.deliver(&record(10 + id, Some(1)));
            all.alerts.recv().await.expect("all keeps up");
        }
        let mut got = 0;
        while one.alerts.recv().await.is_some() {
            got += 1;
        }
        assert_eq!(got, STREAM_BUFFER, "the buffer, then the end");
        feed.deliver(&record(100, Some(1)));
        assert_eq!(all.alerts.recv().await.map(|a| a.id), Some(100));
    }

    #[tokio::test]
    async fn closing_ends_every_stream() {
        let store = Store::open_in_memory().await.expect("store");
        let feed = Arc::new(AlertFeed::default());
        let mut one = feed.subscribe(&store, "a".into(), None).expect("one");
        let mut two = feed
            .subscribe(&store, "b".into(), Some(TenantId(2)))
            .expect("two");
        feed.close();
        assert!(one.alerts.recv().await.is_none());
        assert!(two.alerts.recv().await.is_none());
    }

    #[tokio::test]
    async fn streams_are_capped_per_key_and_given_back() {
        let store = Store::open_in_memory().await.expect("store");
        let feed = Arc::new(AlertFeed::default());
        let open: Vec<_> = (0..STREAMS_PER_KEY)
            .map(|_| {
                feed.subscribe(&store, "k".into(), None)
                    .expect("under the cap")
            })
            .collect();
        assert!(feed.subscribe(&store, "k".into(), None).is_none());
        assert!(feed.subscribe(&store, "other".into(), None).is_some());
        drop(open);
        assert!(feed.subscribe(&store, "k".into(), None).is_some());
    }
}
