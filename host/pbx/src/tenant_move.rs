//! `pbx tenant export | import`: one tenant moved between PBXs in an
//! encrypted file.
//!
//! The file is an age file (a passphrase, or X25519 recipients, as for
//! backups) holding a tar stream:
//! - `HEADER.json`: the format, the schema version and the tenant's name;
//! - `rows/NNNNNN.json`: the tenant's rows, one chunk of one table each, in
//!   the order an import writes them (pbx-store's `tenant_transfer`);
//! - `audio/prompt/ID`, `audio/voicemail/MAILBOX/ID`, `audio/recording/ID`:
//!   its audio as WAV (decrypted from this PBX's tenant key: the age layer
//!   protects it);
//! - `END.json`: how many rows of each table and audio files came before, so
//!   a cut-short file is refused.
//!
//! Both sides stream: an export holds one chunk and one audio file in memory
//! at a time, an import the same. An import that fails deletes what it wrote.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use store::{AudioRef, ImportedTenant, Store, TenantChunk, TenantExportHeader, TenantId};
use tokio::sync::mpsc;

use crate::backup::{self, Seal, Unseal};

const HEADER: &str = "HEADER.json";
const END: &str = "END.json";
/// The largest entry an import reads into memory (a chunk of rows, or one
/// audio file).
const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// The last entry: what came before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    pub audio: u64,
}

/// Writes `tenant` of `store` to `out` (a new file), encrypted to `seal`.
pub async fn export(
    store: &Store,
    tenant: TenantId,
    out: &Path,
    seal: Seal,
) -> anyhow::Result<Totals> {
    ensure!(!out.exists(), "{} exists already", out.display());
    let header = store.tenant_export_header(tenant, backup::now_ms()).await?;
    let (entries, pending) = mpsc::channel::<(String, Vec<u8>)>(4);
    let path = out.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || write_entries(&path, seal, pending));
    let written = send_tenant(store, tenant, &header, &entries).await;
    drop(entries);
    let closed = writer.await.context("the export's writer")?;
    let totals = written.and_then(|totals| closed.map(|()| totals));
    if totals.is_err() {
        let _ = std::fs::remove_file(out);
    }
    totals
}

async fn send_tenant(
    store: &Store,
    tenant: TenantId,
    header: &TenantExportHeader,
    entries: &mpsc::Sender<(String, Vec<u8>)>,
) -> anyhow::Result<Totals> {
    let send = |name: String, bytes: Vec<u8>| async move {
        entries
            .send((name, bytes))
            .await
            .map_err(|_| anyhow::anyhow!("the export's writer stopped"))
    };
    send(HEADER.into(), serde_json::to_vec(header)?).await?;
    let (chunks, mut ready) = mpsc::channel::<TenantChunk>(2);
    let forward = {
        let entries = entries.clone();
        async move {
            let mut n = 0u32;
            while let Some(chunk) = ready.recv().await {
                n += 1;
                let bytes = serde_json::to_vec(&chunk)?;
                entries
                    .send((format!("rows/{n:06}.json"), bytes))
                    .await
                    .map_err(|_| anyhow::anyhow!("the export's writer stopped"))?;
            }
            anyhow::Ok(())
        }
    };
    let (exported, forwarded) = tokio::join!(store.export_tenant(tenant, chunks), forward);
    let exported = exported?;
    forwarded?;
    let mut totals = Totals {
        rows: exported.rows.into_iter().collect(),
        audio: 0,
    };
    for file in &exported.audio {
        let wav = store.export_tenant_audio(tenant, file).await?;
        send(audio_entry(file), wav).await?;
        totals.audio += 1;
    }
    send(END.into(), serde_json::to_vec(&totals)?).await?;
    Ok(totals)
}

fn write_entries(
    out: &Path,
    seal: Seal,
    mut pending: mpsc::Receiver<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(backup::sealed_file(out, seal)?);
    while let Some((name, bytes)) = pending.blocking_recv() {
        backup::append(&mut tar, &name, bytes.len() as u64, &bytes[..])?;
    }
    let sealed = tar.into_inner()?;
    let mut file = sealed.finish()?;
    file.flush()?;
    file.get_ref().sync_all()?;
    Ok(())
}

fn audio_entry(file: &AudioRef) -> String {
    match &file.mailbox {
        Some(mailbox) => format!("audio/{}/{mailbox}/{}", file.kind, file.id),
        None => format!("audio/{}/{}", file.kind, file.id),
    }
}

fn audio_ref(entry: &str) -> Option<AudioRef> {
    let parts: Vec<&str> = entry.strip_prefix("audio/")?.split('/').collect();
    let (kind, mailbox, id) = match parts.as_slice() {
        [kind, id] => (*kind, None, *id),
        [kind, mailbox, id] => (*kind, Some(mailbox.to_string()), *id),
        _ => return None,
    };
    Some(AudioRef {
        kind: kind.into(),
        id: id.into(),
        mailbox,
    })
}

/// What the reading thread finds in the file.
enum Item {
    Header(TenantExportHeader),
    Chunk(TenantChunk),
    Audio(AudioRef, Vec<u8>),
    End(Totals),
}

/// Imports the tenant in `file` into `store`, as `name` when given.
pub async fn import(
    store: &Store,
    file: &Path,
    unseal: Unseal,
    name: Option<&str>,
) -> anyhow::Result<(ImportedTenant, Totals)> {
    let (items, mut found) = mpsc::channel::<Item>(2);
    let path: PathBuf = file.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_entries(&path, &unseal, items));
    let mut written = None;
    let imported = import_items(store, name, &mut found, &mut written).await;
    drop(found);
    let read = reader.await.context("the import's reader")?;
    let result = match (imported, read) {
        (Ok(done), Ok(())) => Ok(done),
        // The reader's error says why the items stopped.
        (_, Err(e)) | (Err(e), Ok(())) => Err(e),
    };
    if result.is_err()
        && let Some(tenant) = written
    {
        store
            .delete_tenant(tenant)
            .await
            .context("removing the half-imported tenant")?;
    }
    result
}

async fn import_items(
    store: &Store,
    name: Option<&str>,
    found: &mut mpsc::Receiver<Item>,
    written: &mut Option<TenantId>,
) -> anyhow::Result<(ImportedTenant, Totals)> {
    let Some(Item::Header(header)) = found.recv().await else {
        bail!("the file does not start with a tenant export header");
    };
    let mut import = Some(store.begin_tenant_import(&header, name).await?);
    let mut seen = Totals::default();
    let mut imported: Option<ImportedTenant> = None;
    while let Some(item) = found.recv().await {
        match item {
            Item::Header(_) => bail!("a second header"),
            Item::Chunk(chunk) => {
                let Some(import) = import.as_mut() else {
                    bail!("rows after audio");
                };
                *seen.rows.entry(chunk.table.clone()).or_default() += chunk.rows.len() as u64;
                let added = import.add(chunk).await;
                *written = import.tenant();
                added?;
            }
            Item::Audio(file, wav) => {
                if let Some(rows) = import.take() {
                    imported = Some(rows.commit().await?);
                }
                let done = imported.as_ref().expect("committed above");
                store.import_tenant_audio(done, &file, wav).await?;
                seen.audio += 1;
            }
            Item::End(totals) => {
                let done = match (imported, import) {
                    (Some(done), _) => done,
                    (None, Some(rows)) => rows.commit().await?,
                    (None, None) => bail!("the file holds no tenant"),
                };
                *written = Some(done.tenant);
                seen.rows.retain(|_, n| *n > 0);
                let mut expected = totals.clone();
                expected.rows.retain(|_, n| *n > 0);
                ensure!(
                    seen == expected,
                    "the file is incomplete: it lists {expected:?} but holds {seen:?}"
                );
                ensure!(
                    done.audio().count() as u64 == seen.audio,
                    "the rows name {} audio files, the file holds {}",
                    done.audio().count(),
                    seen.audio
                );
                store.finish_tenant_import(&done).await?;
                return Ok((done, totals));
            }
        }
    }
    bail!("the file ends before its last entry: it is incomplete")
}

fn read_entries(file: &Path, unseal: &Unseal, items: mpsc::Sender<Item>) -> anyhow::Result<()> {
    let mut tar = tar::Archive::new(backup::opened_file(file, unseal)?);
    for entry in tar.entries().map_err(backup::damaged)? {
        let mut entry = entry.map_err(backup::damaged)?;
        let name = entry
            .path()
            .map_err(backup::damaged)?
            .to_string_lossy()
            .into_owned();
        let size = entry.header().size().map_err(backup::damaged)?;
        ensure!(size <= MAX_ENTRY_BYTES, "{name}: {size} bytes is too large");
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .by_ref()
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut bytes)
            .map_err(backup::damaged)?;
        let item = if name == HEADER {
            Item::Header(serde_json::from_slice(&bytes).context("the header")?)
        } else if name == END {
            Item::End(serde_json::from_slice(&bytes).context("the last entry")?)
        } else if name.starts_with("rows/") {
            Item::Chunk(serde_json::from_slice(&bytes).with_context(|| name.clone())?)
        } else if let Some(file) = audio_ref(&name) {
            Item::Audio(file, bytes)
        } else {
            bail!("unexpected entry {name:?}: not a tenant export");
        };
        let last = matches!(item, Item::End(_));
        if items.blocking_send(item).is_err() {
            // The importer stopped; its error says why.
            return Ok(());
        }
        if last {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_entries_name_their_files_both_ways() {
        for file in [
            AudioRef {
                kind: "prompt".into(),
                id: "abc".into(),
                mailbox: None,
            },
            AudioRef {
                kind: "voicemail".into(),
                id: "def".into(),
                mailbox: Some("100".into()),
            },
        ] {
            assert_eq!(audio_ref(&audio_entry(&file)), Some(file));
        }
        assert_eq!(audio_ref("audio/a/b/c/d"), None);
        assert_eq!(audio_ref("rows/1.json"), None);
    }
}
