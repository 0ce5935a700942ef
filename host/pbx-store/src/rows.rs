//! Row mapping shared by several tables. The types themselves are the model's
//! (`pbx-model`), re-exported from the crate root.

use crate::DigestAlgorithms;

/// The `digest_algorithms` column of a tenants or extensions row.
pub(crate) fn stored_digest(
    row: &sqlx::sqlite::SqliteRow,
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
