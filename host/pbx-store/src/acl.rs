//! Networks a tenant's phones may register and call from.
//!
//! The same concept as `pbx-guard`'s `acl.rs` at another layer: this one stores the
//! network ACLs, that one enforces them.

use sqlx::{AnyConnection, Row};

use crate::{Error, NetworkAcl, Result, Store, TenantId};

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address into canonical form.
fn canonical(cidr: &str) -> Result<String> {
    let cidr = cidr.trim();
    if let Ok(net) = cidr.parse::<ipnet::IpNet>() {
        return Ok(net.trunc().to_string());
    }
    cidr.parse::<std::net::IpAddr>()
        .map(|ip| ipnet::IpNet::from(ip).to_string())
        .map_err(|_| Error::Invalid(format!("not an address or CIDR network: {cidr}")))
}

impl Store {
    /// Allows `cidr` for the tenant (or one of its extensions).
    pub async fn allow_network(
        &self,
        tenant: TenantId,
        extension: Option<&str>,
        cidr: &str,
    ) -> Result<NetworkAcl> {
        let cidr = canonical(cidr)?;
        if let Some(ext) = extension {
            crate::checks::extension_number(ext)?;
        }
        let mut tx = self.write_tx().await?;
        crate::tenant::ensure_tenant(&mut tx, tenant).await?;
        sqlx::query(
            "INSERT INTO network_acls (tenant_id, extension, cidr) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.0)
        .bind(extension.unwrap_or(""))
        .bind(&cidr)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(NetworkAcl {
            tenant,
            extension: extension.map(str::to_string),
            cidr,
        })
    }

    /// Removes an allowed network; `NotFound` when it was not there.
    pub async fn disallow_network(
        &self,
        tenant: TenantId,
        extension: Option<&str>,
        cidr: &str,
    ) -> Result<()> {
        let cidr = canonical(cidr)?;
        let done = sqlx::query(
            "DELETE FROM network_acls WHERE tenant_id = $1 AND cidr = $2 AND extension = $3",
        )
        .bind(tenant.0)
        .bind(&cidr)
        .bind(extension.unwrap_or(""))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("network {cidr}")));
        }
        Ok(())
    }

    /// The tenant's allowed networks.
    pub async fn list_networks(&self, tenant: TenantId) -> Result<Vec<NetworkAcl>> {
        let rows = sqlx::query(
            "SELECT tenant_id, extension, cidr FROM network_acls WHERE tenant_id = $1 \
             ORDER BY extension, cidr",
        )
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

/// Every tenant's allowed networks (for the directory).
pub(crate) async fn load_all(conn: &mut AnyConnection) -> Result<Vec<NetworkAcl>> {
    let rows = sqlx::query(
        "SELECT tenant_id, extension, cidr FROM network_acls ORDER BY tenant_id, extension, cidr",
    )
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<NetworkAcl> {
    let extension: String = row.try_get("extension")?;
    Ok(NetworkAcl {
        tenant: TenantId(row.try_get("tenant_id")?),
        extension: (!extension.is_empty()).then_some(extension),
        cidr: row.try_get("cidr")?,
    })
}

#[cfg(test)]
mod tests {
    backend_test! {
        async fn networks_are_kept_per_tenant_and_extension() {
            let store = crate::testdb::store().await.unwrap();
            let a = store.add_tenant("acme", "acme.example").await.unwrap().id;
            let b = store.add_tenant("beta", "beta.example").await.unwrap().id;
            let before = store.generation().await.unwrap();
            let n = store.allow_network(a, None, "10.1.2.3/8").await.unwrap();
            assert_eq!(n.cidr, "10.0.0.0/8");
            store
                .allow_network(a, Some("1000"), "192.0.2.7")
                .await
                .unwrap();
            store.allow_network(a, None, "10.0.0.0/8").await.unwrap();
            assert!(store.generation().await.unwrap() > before);
            let list = store.list_networks(a).await.unwrap();
            assert_eq!(list.len(), 2);
            assert!(
                list.iter()
                    .any(|n| n.extension.as_deref() == Some("1000") && n.cidr == "192.0.2.7/32")
            );
            assert!(store.list_networks(b).await.unwrap().is_empty());
            assert_eq!(store.directory().await.unwrap().acls.len(), 2);
            assert!(store.allow_network(a, None, "not-a-net").await.is_err());
            assert!(store.disallow_network(b, None, "10.0.0.0/8").await.is_err());
            store.disallow_network(a, None, "10.0.0.0/8").await.unwrap();
            store
                .disallow_network(a, Some("1000"), "192.0.2.7")
                .await
                .unwrap();
            assert!(store.list_networks(a).await.unwrap().is_empty());
        }
    }
}
