//! Each tenant's SRTP policy for anchored media.

use sqlx::Row;

use crate::{Error, MediaEncryption, Result, Store, TenantId};

impl Store {
    /// The tenant's media encryption policy.
    pub async fn media_encryption(&self, tenant: TenantId) -> Result<MediaEncryption> {
        let row = sqlx::query("SELECT media_encryption FROM tenants WHERE id = $1")
            .bind(tenant.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {tenant}")))?;
        let value: String = row.try_get("media_encryption")?;
        MediaEncryption::parse(&value).ok_or_else(|| {
            Error::Invalid(format!(
                "stored tenant {tenant} has media encryption {value:?}"
            ))
        })
    }

    /// Sets the tenant's media encryption policy; running servers pick it up on
    /// their next directory reload.
    pub async fn set_media_encryption(
        &self,
        tenant: TenantId,
        policy: MediaEncryption,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE tenants SET media_encryption = $1 WHERE id = $2")
            .bind(policy.as_str())
            .bind(tenant.0)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("tenant {tenant}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    backend_test! {
        async fn policy_defaults_to_optional_and_reaches_the_directory() {
            let store = crate::testdb::store().await.expect("open");
            let a = store.add_tenant("a", "a.example").await.expect("a").id;
            let b = store.add_tenant("b", "b.example").await.expect("b").id;
            assert_eq!(
                store.media_encryption(a).await.expect("get"),
                MediaEncryption::Optional
            );
            let g0 = store.generation().await.expect("generation");
            store
                .set_media_encryption(a, MediaEncryption::Required)
                .await
                .expect("set");
            assert_ne!(store.generation().await.expect("generation"), g0);
            assert_eq!(
                store.media_encryption(a).await.expect("get"),
                MediaEncryption::Required
            );
            let dir = store.directory().await.expect("directory");
            let policy = |id| {
                dir.tenants
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| t.media_encryption)
            };
            assert_eq!(policy(a), Some(MediaEncryption::Required));
            assert_eq!(policy(b), Some(MediaEncryption::Optional));
            assert_eq!(
                store
                    .tenant(a)
                    .await
                    .expect("tenant")
                    .map(|t| t.media_encryption),
                Some(MediaEncryption::Required)
            );
            assert!(matches!(
                store
                    .set_media_encryption(TenantId(99), MediaEncryption::Disabled)
                    .await,
                Err(Error::NotFound(_))
            ));
        }
    }

    #[test]
    fn policy_names_round_trip() {
        for p in [
            MediaEncryption::Required,
            MediaEncryption::Optional,
            MediaEncryption::Disabled,
        ] {
            assert_eq!(MediaEncryption::parse(p.as_str()), Some(p));
        }
        assert_eq!(MediaEncryption::parse("maybe"), None);
    }
}
