//! Extensions: SIP credentials per tenant, stored as HA1 digests.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::ha1::{Algorithm, compute_ha1};
use crate::{DigestAlgorithms, Error, Extension, Result, Store, TenantId, checks, tenant};

const INSERT: &str = "INSERT INTO extensions (tenant_id, number, ha1_md5, ha1_sha256, enabled) \
                      VALUES ($1, $2, $3, $4, 1)";

impl Store {
    /// Adds an extension to a tenant. Its HA1 digests are computed for the
    /// tenant's realm; the password itself is not kept.
    pub async fn add_extension(
        &self,
        tenant: TenantId,
        number: &str,
        password: &str,
    ) -> Result<Extension> {
        checks::extension_number(number)?;
        checks::password(password)?;
        let mut tx = self.write_tx().await?;
        let realm = tenant::realm(&mut tx, tenant).await?;
        let ext = credentials(tenant, number, &realm, password);
        insert(&mut tx, &ext).await?;
        tx.commit().await?;
        Ok(ext)
    }

    /// Every enabled extension with when its password was last set (Unix
    /// milliseconds), for password ageing.
    pub async fn extension_password_ages(&self) -> Result<Vec<(TenantId, String, i64)>> {
        let rows = sqlx::query(
            "SELECT tenant_id, number, password_changed_ms FROM extensions WHERE enabled = 1 \
             ORDER BY tenant_id, number",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    TenantId(r.try_get("tenant_id")?),
                    r.try_get("number")?,
                    r.try_get::<Option<i64>, _>("password_changed_ms")?
                        .unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Replaces an extension's password (its HA1 digests).
    pub async fn set_extension_password(
        &self,
        tenant: TenantId,
        number: &str,
        password: &str,
    ) -> Result<()> {
        checks::extension_number(number)?;
        checks::password(password)?;
        let mut tx = self.write_tx().await?;
        let realm = tenant::realm(&mut tx, tenant).await?;
        let ext = credentials(tenant, number, &realm, password);
        let done = sqlx::query(
            "UPDATE extensions SET ha1_md5 = $1, ha1_sha256 = $2 WHERE tenant_id = $3 AND number = $4",
        )
        .bind(&ext.ha1_md5)
        .bind(&ext.ha1_sha256)
        .bind(tenant.0)
        .bind(number)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(tenant, number));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Enables or disables an extension without touching its credentials.
    pub async fn set_extension_enabled(
        &self,
        tenant: TenantId,
        number: &str,
        enabled: bool,
    ) -> Result<()> {
        let done =
            sqlx::query("UPDATE extensions SET enabled = $1 WHERE tenant_id = $2 AND number = $3")
                .bind(i64::from(enabled))
                .bind(tenant.0)
                .bind(number)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(tenant, number));
        }
        Ok(())
    }

    /// Sets the digest algorithms offered to the extension's phone (`None`:
    /// its tenant's choice). Running servers pick it up on their next
    /// directory reload.
    pub async fn set_extension_digest(
        &self,
        tenant: TenantId,
        number: &str,
        digest: Option<&DigestAlgorithms>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE extensions SET digest_algorithms = $1 WHERE tenant_id = $2 AND number = $3",
        )
        .bind(digest.map(ToString::to_string))
        .bind(tenant.0)
        .bind(number)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(tenant, number));
        }
        Ok(())
    }

    /// Removes an extension (and its registrar bindings, its voicemail and
    /// their files).
    pub async fn remove_extension(&self, tenant: TenantId, number: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let files = crate::voicemail::take_mailbox_files(&mut tx, tenant, number).await?;
        let done = sqlx::query("DELETE FROM extensions WHERE tenant_id = $1 AND number = $2")
            .bind(tenant.0)
            .bind(number)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(tenant, number));
        }
        tx.commit().await?;
        self.remove_files(files).await;
        Ok(())
    }

    /// The tenant's extensions, ordered by number. [`Error::NotFound`] for an
    /// unknown tenant.
    pub async fn list_extensions(&self, tenant: TenantId) -> Result<Vec<Extension>> {
        let mut tx = self.read_tx().await?;
        tenant::ensure_tenant(&mut tx, tenant).await?;
        let rows = sqlx::query(
            "SELECT tenant_id, number, ha1_md5, ha1_sha256, enabled, digest_algorithms \
             FROM extensions WHERE tenant_id = $1 ORDER BY number",
        )
        .bind(tenant.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// One extension of a tenant; [`Error::NotFound`] when either is unknown.
    pub async fn extension(&self, tenant: TenantId, number: &str) -> Result<Extension> {
        let row = sqlx::query(
            "SELECT tenant_id, number, ha1_md5, ha1_sha256, enabled, digest_algorithms \
             FROM extensions WHERE tenant_id = $1 AND number = $2",
        )
        .bind(tenant.0)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(from_row)
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("extension {number}")))
    }

    /// Adds many extensions `(number, password)` at once: every row is validated
    /// first, then all are written in one transaction, or none is. Returns how many
    /// were added.
    pub async fn import_extensions(
        &self,
        tenant: TenantId,
        rows: &[(String, String)],
    ) -> Result<usize> {
        let mut seen = HashSet::with_capacity(rows.len());
        for (i, (number, password)) in rows.iter().enumerate() {
            let line = i + 1;
            checks::extension_number(number)
                .and_then(|()| checks::password(password))
                .map_err(|e| match e {
                    Error::Invalid(msg) => Error::Invalid(format!("row {line}: {msg}")),
                    other => other,
                })?;
            if !seen.insert(number.as_str()) {
                return Err(Error::Conflict(format!(
                    "row {line}: extension {number:?} appears twice"
                )));
            }
        }
        let mut tx = self.write_tx().await?;
        let realm = tenant::realm(&mut tx, tenant).await?;
        for (number, password) in rows {
            insert(&mut tx, &credentials(tenant, number, &realm, password)).await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }
}

fn not_found(tenant: TenantId, number: &str) -> Error {
    Error::NotFound(format!("extension {number:?} of tenant {tenant}"))
}

fn credentials(tenant: TenantId, number: &str, realm: &str, password: &str) -> Extension {
    Extension {
        tenant,
        number: number.to_owned(),
        ha1_md5: compute_ha1(Algorithm::Md5, number, realm, password),
        ha1_sha256: compute_ha1(Algorithm::Sha256, number, realm, password),
        enabled: true,
        digest: None,
    }
}

async fn insert(conn: &mut AnyConnection, ext: &Extension) -> Result<()> {
    sqlx::query(INSERT)
        .bind(ext.tenant.0)
        .bind(&ext.number)
        .bind(&ext.ha1_md5)
        .bind(&ext.ha1_sha256)
        .execute(conn)
        .await
        .map_err(|e| {
            Error::conflict_on_unique(e, || format!("extension {:?} already exists", ext.number))
        })?;
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<Extension> {
    let enabled: i64 = row.try_get("enabled")?;
    let tenant = TenantId(row.try_get("tenant_id")?);
    let number: String = row.try_get("number")?;
    let digest =
        crate::rows::stored_digest(row, || format!("extension {number:?} of tenant {tenant}"))?;
    Ok(Extension {
        tenant,
        number,
        ha1_md5: row.try_get("ha1_md5")?,
        ha1_sha256: row.try_get("ha1_sha256")?,
        enabled: enabled != 0,
        digest,
    })
}

/// Every extension of every tenant, ordered by tenant then number.
pub(crate) async fn load_all(conn: &mut AnyConnection) -> Result<Vec<Extension>> {
    let rows = sqlx::query(
        "SELECT tenant_id, number, ha1_md5, ha1_sha256, enabled, digest_algorithms \
         FROM extensions ORDER BY tenant_id, number",
    )
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

#[cfg(test)]
mod tests {
    use crate::*;

    async fn store_with_tenant() -> (Store, TenantId) {
        let store = crate::testdb::store().await.expect("open");
        let t = store
            .add_tenant("acme", "acme.example.com")
            .await
            .expect("tenant");
        (store, t.id)
    }

    backend_test! {
        /// SHA-256 is turned on per tenant or per extension; `None` inherits, and
        /// the directory (what the SIP path reads) carries both choices.
        async fn digest_algorithms_per_tenant_and_extension() {
            let (store, t) = store_with_tenant().await;
            store.add_extension(t, "1000", "secret").await.expect("ext");
            store.add_extension(t, "1001", "secret").await.expect("ext");
            let dir = store.directory().await.expect("directory");
            assert_eq!(dir.tenants[0].digest, None, "inherits the server's default");
            assert!(dir.extensions.iter().all(|e| e.digest.is_none()));

            let g0 = store.generation().await.expect("generation");
            let both = DigestAlgorithms::parse("sha-256, MD5").expect("parse");
            store
                .set_tenant_digest(t, Some(&both))
                .await
                .expect("tenant");
            let sha = DigestAlgorithms::parse("SHA-256").expect("parse");
            store
                .set_extension_digest(t, "1001", Some(&sha))
                .await
                .expect("extension");
            assert_ne!(store.generation().await.expect("generation"), g0);
            let dir = store.directory().await.expect("directory");
            assert_eq!(dir.tenants[0].digest.as_ref(), Some(&both));
            assert_eq!(both.to_string(), "SHA-256,MD5");
            let of = |n: &str| {
                dir.extensions
                    .iter()
                    .find(|e| e.number == n)
                    .and_then(|e| e.digest.clone())
            };
            assert_eq!(of("1000"), None);
            assert_eq!(of("1001"), Some(sha.clone()));
            let listed = store.list_extensions(t).await.expect("list");
            assert_eq!(listed[1].digest, Some(sha));
            assert_eq!(
                store.tenant(t).await.expect("tenant").map(|x| x.digest),
                Some(Some(both))
            );

            store.set_tenant_digest(t, None).await.expect("clear");
            store
                .set_extension_digest(t, "1001", None)
                .await
                .expect("clear");
            let dir = store.directory().await.expect("directory");
            assert_eq!(dir.tenants[0].digest, None);
            assert!(dir.extensions.iter().all(|e| e.digest.is_none()));

            assert!(matches!(
                store
                    .set_extension_digest(t, "4711", Some(&DigestAlgorithms::md5()))
                    .await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store.set_tenant_digest(TenantId(99), None).await,
                Err(Error::NotFound(_))
            ));
            for bad in ["", "SHA-512", "MD5,MD5", "MD5-sess", "MD5,,SHA-256"] {
                assert!(DigestAlgorithms::parse(bad).is_err(), "{bad:?}");
            }
            assert_eq!(
                String::from(DigestAlgorithms::parse("md5,sha-256").expect("parse")),
                "MD5,SHA-256"
            );
        }
    }

    backend_test! {
        async fn ha1_is_computed_for_the_primary_domain() {
            let (store, t) = store_with_tenant().await;
            store.add_domain(t, "other.example").await.expect("dom");
            let ext = store.add_extension(t, "1000", "secret").await.expect("ext");
            // printf '1000:acme.example.com:secret' | md5sum / sha256sum
            assert_eq!(ext.ha1_md5, "ce9924efbad1b3e83c139dec690fedbe");
            assert_eq!(
                ext.ha1_sha256,
                "3442a1b183d4d44300ae1a20aaded01f965faf91845f49fa10648cf54ed9455e"
            );
            assert_eq!(store.list_extensions(t).await.expect("list"), vec![ext]);
        }
    }

    backend_test! {
        async fn extension_crud() {
            let (store, t) = store_with_tenant().await;
            let a = store.add_extension(t, "101", "pw-a").await.expect("a");
            store.add_extension(t, "100", "pw-b").await.expect("b");
            assert!(matches!(
                store.add_extension(t, "101", "again").await,
                Err(Error::Conflict(_))
            ));

            store
                .set_extension_password(t, "101", "new-pw")
                .await
                .expect("pw");
            let list = store.list_extensions(t).await.expect("list");
            assert_eq!(
                list.iter().map(|e| e.number.as_str()).collect::<Vec<_>>(),
                ["100", "101"]
            );
            assert_ne!(list[1].ha1_md5, a.ha1_md5);
            assert_ne!(list[1].ha1_sha256, a.ha1_sha256);

            store
                .set_extension_enabled(t, "100", false)
                .await
                .expect("disable");
            assert!(!store.list_extensions(t).await.expect("list")[0].enabled);
            assert!(!store.extension(t, "100").await.expect("one").enabled);
            assert_eq!(store.extension(t, "101").await.expect("one"), list[1]);
            assert!(matches!(
                store.extension(t, "102").await,
                Err(Error::NotFound(_))
            ));

            store.remove_extension(t, "100").await.expect("rm");
            assert!(matches!(
                store.remove_extension(t, "100").await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store.set_extension_password(t, "100", "x").await,
                Err(Error::NotFound(_))
            ));
            assert_eq!(store.list_extensions(t).await.expect("list").len(), 1);
        }
    }

    backend_test! {
        async fn bad_extension_input_is_rejected() {
            let (store, t) = store_with_tenant().await;
            for (number, password) in [("", "pw"), ("10 0", "pw"), ("a@b", "pw"), ("100", "")] {
                assert!(
                    matches!(
                        store.add_extension(t, number, password).await,
                        Err(Error::Invalid(_))
                    ),
                    "{number:?}/{password:?} accepted"
                );
            }
            assert!(matches!(
                store.add_extension(TenantId(77), "100", "pw").await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                store.list_extensions(TenantId(77)).await,
                Err(Error::NotFound(_))
            ));
            assert!(store.list_extensions(t).await.expect("list").is_empty());
        }
    }

    fn rows(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("{}", 10_000 + i), format!("pw-{i}")))
            .collect()
    }

    backend_test! {
        async fn import_is_all_or_nothing() {
            let (store, t) = store_with_tenant().await;
            let generation = store.generation().await.expect("g");

            let mut bad = rows(50);
            bad[37].0 = "no spaces allowed".into();
            assert!(matches!(
                store.import_extensions(t, &bad).await,
                Err(Error::Invalid(msg)) if msg.contains("row 38")
            ));

            let mut dup = rows(50);
            dup[40].0 = dup[3].0.clone();
            assert!(matches!(
                store.import_extensions(t, &dup).await,
                Err(Error::Conflict(_))
            ));

            // a clash with an existing extension is found inside the transaction,
            // after earlier rows were inserted: they must be rolled back
            store.add_extension(t, "10049", "pw").await.expect("ext");
            let generation_after_add = store.generation().await.expect("g");
            assert!(generation_after_add > generation);
            assert!(matches!(
                store.import_extensions(t, &rows(50)).await,
                Err(Error::Conflict(_))
            ));
            assert_eq!(store.list_extensions(t).await.expect("list").len(), 1);
            assert_eq!(store.generation().await.expect("g"), generation_after_add);

            assert!(matches!(
                store.import_extensions(TenantId(9), &rows(3)).await,
                Err(Error::NotFound(_))
            ));
        }
    }

    backend_test! {
        async fn import_of_thousands() {
            let (store, t) = store_with_tenant().await;
            let input = rows(5_000);
            assert_eq!(
                store.import_extensions(t, &input).await.expect("import"),
                5_000
            );
            let list = store.list_extensions(t).await.expect("list");
            assert_eq!(list.len(), 5_000);
            let one = list.iter().find(|e| e.number == "10042").expect("imported");
            let expected = store.add_extension(t, "x42", "pw-42").await.expect("ext");
            // same password and realm, different username: the digest differs, and the
            // imported one matches a fresh computation for its own username
            assert_ne!(one.ha1_md5, expected.ha1_md5);
            assert_eq!(
                one.ha1_md5,
                crate::ha1::compute_ha1(
                    crate::ha1::Algorithm::Md5,
                    "10042",
                    "acme.example.com",
                    "pw-42"
                )
            );
        }
    }

    backend_test! {
        async fn a_password_is_dated_when_set_and_when_changed() {
            let store = crate::testdb::store().await.expect("open");
            let t = store.add_tenant("a", "a.example").await.expect("tenant").id;
            let before = crate::audio::system_now_ms();
            store
                .add_extension(t, "100", "pw-long-enough")
                .await
                .expect("ext");
            let ages = store.extension_password_ages().await.expect("ages");
            assert_eq!(ages.len(), 1);
            let set = ages[0].2;
            assert!(set >= before - 1_000 && set <= crate::audio::system_now_ms() + 1_000);
            // Changing something else keeps the date; a new password moves it.
            store
                .set_extension_password(t, "100", "pw-another-long")
                .await
                .expect("password");
            let changed = store.extension_password_ages().await.expect("ages")[0].2;
            assert!(changed >= set);
            let user = store
                .add_user(&crate::NewUser {
                    username: "old".into(),
                    role: crate::UserRole::TenantAdmin,
                    tenant: Some(t),
                    extension: None,
                    password_hash: "h1".into(),
                    created_at_ms: 1_000,
                })
                .await
                .expect("user");
            assert_eq!(
                store.user_password_changed_ms(user.id).await.expect("at"),
                1_000
            );
            store
                .set_user_password_hash(user.id, "h2")
                .await
                .expect("hash");
            assert!(store.user_password_changed_ms(user.id).await.expect("at") >= before - 1_000);
        }
    }
}
