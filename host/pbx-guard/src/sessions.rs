//! Host media sessions: calls whose media the host itself plays, gathers or
//! records (IVR, voicemail, the mailbox menu), bounded per tenant and for the
//! whole host.
//!
//! [`MediaSessions::acquire`] checks both caps and counts the session under
//! one lock; the [`SessionGuard`] it returns gives the session back when
//! dropped, on any thread. Calls that only relay media between two phones
//! hold no session here: the concurrent-call limits of [`crate::usage`]
//! bound them. The defaults and how a provider sets them are documented once,
//! in `pbx_model::limits`.

use std::collections::HashMap;
use std::sync::Arc;

use model::{TenantId, TenantLimits};
use parking_lot::Mutex;

/// The caps of [`MediaSessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCaps {
    /// Sessions of the whole host.
    pub total: u32,
    /// Sessions of a tenant without its own
    /// [`TenantLimits::max_media_sessions`].
    pub per_tenant: u32,
}

impl Default for SessionCaps {
    fn default() -> SessionCaps {
        SessionCaps {
            total: model::limits::DEFAULT_MAX_MEDIA_SESSIONS,
            per_tenant: model::limits::DEFAULT_MAX_MEDIA_SESSIONS_TENANT,
        }
    }
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionsFull {
    /// The tenant holds all of its own.
    #[error("the tenant's {limit} host media sessions are in use")]
    Tenant { limit: u32 },
    /// The host holds all it may.
    #[error("the host's {limit} media sessions are in use")]
    Host { limit: u32 },
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_tenant: HashMap<TenantId, u32>,
    /// Tenants' own caps.
    own: HashMap<TenantId, u32>,
}

/// Host media sessions in use, shared by every call.
#[derive(Debug)]
pub struct MediaSessions {
    caps: SessionCaps,
    counts: Mutex<Counts>,
}

impl MediaSessions {
    pub fn new(caps: SessionCaps) -> Arc<MediaSessions> {
        Arc::new(MediaSessions {
            caps,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Replaces the tenants' own caps (a tenant not listed, or listed
    /// without [`TenantLimits::max_media_sessions`], gets the default).
    /// Sessions already held stay held.
    pub fn set_tenant_limits(&self, limits: &[(TenantId, TenantLimits)]) {
        let own = limits
            .iter()
            .filter_map(|(t, l)| l.max_media_sessions.map(|m| (*t, m)))
            .collect();
        self.counts.lock().own = own;
    }

    /// The tenant's cap in force.
    pub fn tenant_cap(&self, tenant: TenantId) -> u32 {
        self.counts
            .lock()
            .own
            .get(&tenant)
            .copied()
            .unwrap_or(self.caps.per_tenant)
    }

    /// One more session for `tenant`, unless it or the host holds its cap.
    pub fn acquire(self: &Arc<Self>, tenant: TenantId) -> Result<SessionGuard, SessionsFull> {
        let mut counts = self.counts.lock();
        let limit = counts
            .own
            .get(&tenant)
            .copied()
            .unwrap_or(self.caps.per_tenant);
        let held = counts.by_tenant.get(&tenant).copied().unwrap_or(0);
        if held >= limit {
            return Err(SessionsFull::Tenant { limit });
        }
        if counts.total >= self.caps.total {
            return Err(SessionsFull::Host {
                limit: self.caps.total,
            });
        }
        counts.total += 1;
        *counts.by_tenant.entry(tenant).or_insert(0) += 1;
        Ok(SessionGuard {
            sessions: self.clone(),
            tenant,
        })
    }

    /// Sessions the tenant holds now.
    pub fn held(&self, tenant: TenantId) -> u32 {
        self.counts
            .lock()
            .by_tenant
            .get(&tenant)
            .copied()
            .unwrap_or(0)
    }

    /// Sessions held now, per tenant (tenants holding none left out), in
    /// tenant order.
    pub fn snapshot(&self) -> Vec<(TenantId, u32)> {
        let mut out: Vec<_> = self
            .counts
            .lock()
            .by_tenant
            .iter()
            .map(|(t, n)| (*t, *n))
            .collect();
        out.sort_unstable();
        out
    }

    fn release(&self, tenant: TenantId) {
        let mut counts = self.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_tenant.get_mut(&tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_tenant.remove(&tenant);
            }
        }
    }
}

/// One session held; given back when dropped.
#[derive(Debug)]
pub struct SessionGuard {
    sessions: Arc<MediaSessions>,
    tenant: TenantId,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.release(self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_has_its_share_and_the_host_its_total() {
        let sessions = MediaSessions::new(SessionCaps {
            total: 3,
            per_tenant: 2,
        });
        let (a, b, c) = (TenantId(1), TenantId(2), TenantId(3));
        let a1 = sessions.acquire(a).expect("a1");
        let _a2 = sessions.acquire(a).expect("a2");
        assert_eq!(
            sessions.acquire(a).unwrap_err(),
            SessionsFull::Tenant { limit: 2 }
        );
        // Another tenant is not affected by a's being full.
        let _b1 = sessions.acquire(b).expect("b1");
        // The host is full now.
        assert_eq!(
            sessions.acquire(c).unwrap_err(),
            SessionsFull::Host { limit: 3 }
        );
        assert_eq!(sessions.snapshot(), vec![(a, 2), (b, 1)]);
        drop(a1);
        assert_eq!(sessions.held(a), 1);
        let _c1 = sessions.acquire(c).expect("room again");
    }

    #[test]
    fn a_tenants_own_cap_wins_over_the_default() {
        let sessions = MediaSessions::new(SessionCaps {
            total: 100,
            per_tenant: 2,
        });
        let (a, b) = (TenantId(1), TenantId(2));
        sessions.set_tenant_limits(&[(
            a,
            TenantLimits {
                max_media_sessions: Some(0),
                ..TenantLimits::default()
            },
        )]);
        assert_eq!(sessions.tenant_cap(a), 0);
        assert_eq!(sessions.tenant_cap(b), 2);
        assert_eq!(
            sessions.acquire(a).unwrap_err(),
            SessionsFull::Tenant { limit: 0 }
        );
        let held: Vec<_> = (0..2).map(|_| sessions.acquire(b).expect("b")).collect();
        assert!(sessions.acquire(b).is_err());
        // Raising a tenant's cap applies to its next session.
        sessions.set_tenant_limits(&[(
            b,
            TenantLimits {
                max_media_sessions: Some(3),
                ..TenantLimits::default()
            },
        )]);
        let _third = sessions.acquire(b).expect("raised");
        drop(held);
        assert_eq!(sessions.held(b), 1);
        assert_eq!(sessions.tenant_cap(a), 2, "a's own cap was cleared");
    }
}
