//! Row mapping shared by several tables. The types themselves are the model's
//! (`pbx-model`), re-exported from the crate root.

use crate::DigestAlgorithms;

/// The `digest_algorithms` column of a tenants or extensions row.
pub(crate) fn stored_digest(
    row: &sqlx::any::AnyRow,
    whose: impl FnOnce() -> String,
) -> crate::Result<Option<DigestAlgorithms>> {
    use sqlx::Row;
    let text: Option<String> = row.try_get("digest_algorithms")?;
    text.map(|t| {
        DigestAlgorithms::parse(&t).map_err(|e| {
            crate::Error::Invalid(format!(
                "stored {} has digest algorithms {t:?}: {e}",
                whose()
            ))
        })
    })
    .transpose()
}

/// A 0/1 flag column as a `bool`. Flags are stored as integers on every
/// backend, so they are bound as `i64::from(flag)` and read through here.
pub(crate) fn flag(row: &sqlx::any::AnyRow, column: &str) -> crate::Result<bool> {
    use sqlx::Row;
    Ok(row.try_get::<i64, _>(column)? != 0)
}
