//! Changes made by any node of a cluster, as PostgreSQL announces them
//! (LISTEN/NOTIFY, raised by the triggers of migration 0055): provisioning (the
//! directory generation moved), bans, and registrar bindings. A node listens
//! on one connection of its own and acts at once instead of at its next poll.
//!
//! A notification is sent when its transaction commits, so a node that reads
//! after hearing one sees the change. Notifications that arrive while the
//! connection is down are lost: [`Changes::next`] then says so
//! ([`Change::Resync`]) and the node re-reads everything.

use sqlx::postgres::PgListener;

use crate::{Result, Store, TenantId};

const GENERATION: &str = "pbx_generation";
const BANS: &str = "pbx_bans";
const REGISTRATIONS: &str = "pbx_registrations";

/// One announced change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Provisioning changed (tenants, extensions, plugins, limits, ...).
    Generation,
    /// A ban was made, extended or lifted.
    Bans,
    /// A binding of this address-of-record changed; `node` is the node the
    /// binding row names (the one that made it, or held it if deleted).
    Registration {
        tenant: TenantId,
        node: String,
        extension: String,
    },
    /// The connection was lost and is being re-made: anything may have
    /// changed meanwhile.
    Resync,
}

/// The listening connection.
pub struct Changes {
    listener: PgListener,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").finish_non_exhaustive()
    }
}

impl Store {
    /// Starts listening for other nodes' changes: on PostgreSQL only (a
    /// single SQLite node has no one else to hear), `None` on SQLite.
    pub async fn listen_changes(&self) -> Result<Option<Changes>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut listener = PgListener::connect(url).await?;
        listener
            .listen_all([GENERATION, BANS, REGISTRATIONS])
            .await?;
        Ok(Some(Changes { listener }))
    }
}

impl Changes {
    /// Waits for the next change. Payloads that do not parse (written by
    /// something else on the same channel) are skipped.
    pub async fn next(&mut self) -> Result<Change> {
        loop {
            let Some(n) = self.listener.try_recv().await? else {
                return Ok(Change::Resync);
            };
            let change = match n.channel() {
                GENERATION => Some(Change::Generation),
                BANS => Some(Change::Bans),
                REGISTRATIONS => parse_registration(n.payload()),
                _ => None,
            };
            if let Some(change) = change {
                return Ok(change);
            }
        }
    }
}

/// `TENANT NODE EXTENSION`; node ids hold no spaces, extension numbers may.
fn parse_registration(payload: &str) -> Option<Change> {
    let mut parts = payload.splitn(3, ' ');
    let tenant = parts.next()?.parse().ok()?;
    let node = parts.next()?.to_string();
    let extension = parts.next()?.to_string();
    Some(Change::Registration {
        tenant: TenantId(tenant),
        node,
        extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Registration, RegistrationChange, TransportKind};

    #[test]
    fn registration_payloads_parse() {
        assert_eq!(
            parse_registration("7 node-a 100"),
            Some(Change::Registration {
                tenant: TenantId(7),
                node: "node-a".into(),
                extension: "100".into()
            })
        );
        assert_eq!(
            parse_registration("7  front desk"),
            Some(Change::Registration {
                tenant: TenantId(7),
                node: String::new(),
                extension: "front desk".into()
            })
        );
        assert_eq!(parse_registration("x a 1"), None);
        assert_eq!(parse_registration("7 a"), None);
    }

    /// On PostgreSQL, a binding written by one store handle, a ban and a
    /// provisioning change are each heard by a listener on another.
    #[tokio::test]
    async fn changes_are_heard_on_postgres() {
        crate::testdb::on(crate::Backend::Postgres, heard()).await;
    }

    async fn heard() {
        let url = crate::testdb::fresh_database().await;
        let writer = Store::connect_ephemeral(&url).await.expect("writer");
        let reader = Store::connect_ephemeral(&url).await.expect("reader");
        let mut changes = reader
            .listen_changes()
            .await
            .expect("listen")
            .expect("PostgreSQL listens");
        let t = writer
            .add_tenant("n", "n.example")
            .await
            .expect("tenant")
            .id;
        assert_eq!(changes.next().await.expect("change"), Change::Generation);
        writer.add_extension(t, "100", "pw").await.expect("ext");
        assert_eq!(changes.next().await.expect("change"), Change::Generation);
        let binding = Registration {
            node: "node-a".into(),
            path: vec!["<sip:192.0.2.9;lr>".into()],
            transport: TransportKind::Udp,
            ..crate::registration::tests::binding(t, "100", "sip:100@192.0.2.7", i64::MAX)
        };
        writer
            .apply_registrations(&[RegistrationChange::Upsert(binding.clone())])
            .await
            .expect("bind");
        assert_eq!(
            changes.next().await.expect("change"),
            Change::Registration {
                tenant: t,
                node: "node-a".into(),
                extension: "100".into()
            }
        );
        let read = reader
            .registrations_of(&[(t, "100".into())], 0)
            .await
            .expect("read");
        assert_eq!(read, vec![binding]);
        writer
            .upsert_ban(&crate::BanRecord {
                ip: "192.0.2.66".parse().expect("ip"),
                reason: "test".into(),
                count: 1,
                strikes: 1,
                first_ms: 0,
                last_ms: 0,
                tried: Vec::new(),
                until_ms: i64::MAX,
            })
            .await
            .expect("ban");
        assert_eq!(changes.next().await.expect("change"), Change::Bans);
    }
}
