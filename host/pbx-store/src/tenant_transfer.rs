//! Moving one tenant to another PBX: its rows are read out table by table in
//! chunks ([`Store::export_tenant`]) and written back under new ids
//! ([`Store::begin_tenant_import`]); its audio is decrypted on the way out
//! ([`Store::export_tenant_audio`]) and sealed again under the new tenant's
//! own key on the way in ([`Store::import_tenant_audio`]).
//!
//! # What moves, what stays
//! [`TABLES`] lists what moves, in the order an import writes it: the tenant
//! and its domains, limits, calendar, extensions (their HA1 digests, which
//! stay valid because the realm, the primary domain, moves with them),
//! forwarding, voicemail boxes, network restrictions, trunks and numbers, the
//! dial plan versions and tenant policies (with the plugin bytes they name),
//! plugin storage, users with their TOTP secrets, approvals, alerts, call
//! records, prompts, voicemail and call recordings.
//!
//! [`STAYS`] lists what does not, and why: registrations (phones register
//! again with the new PBX), API tokens (signed by the old PBX's key), the
//! audit log (the old PBX's chain; `audit export` keeps a copy), the audio key
//! (a new one is made), and the provider's own policies and their settings
//! for the tenant (each PBX's provider decides those).
//!
//! # Separation
//! The tenant, its users and every numbered row get new ids from the target
//! database, and every voicemail message, recording and prompt file a new
//! random name. Nothing in an export names another tenant: every row is read
//! by the tenant's id. An import checks each chunk against [`TABLES`] (table
//! order, column names, value kinds) before it builds any SQL, so a damaged or
//! hostile file cannot reach other tables or columns; it writes everything
//! in one transaction, with the tenant suspended until its audio is in.
//!
//! # Secrets
//! What a data directory's secret key seals (trunk passwords, TOTP secrets) is
//! opened on export and sealed again on import with the target's key, bound to
//! the new ids. An export therefore holds secrets in the clear, and the CLI
//! always writes it encrypted.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AssertSqlSafe, Row, Transaction};
use tokio::sync::mpsc;

use crate::audio::{self, AudioFile, Kind as AudioKind};
use crate::{Error, Result, Store, TenantId, trunk};

/// What an export's header says it is.
pub const TENANT_EXPORT_FORMAT: &str = "pbx-tenant/1";
/// Most rows in one [`TenantChunk`].
pub const TENANT_CHUNK_ROWS: usize = 2_000;

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob { base64: String },
}

/// What an export starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantExportHeader {
    pub format: String,
    /// The newest schema migration of the exporting PBX; an import needs the
    /// same.
    pub schema_version: i64,
    /// The tenant's name on the exporting PBX.
    pub tenant: String,
    pub exported_at_ms: i64,
}

/// Up to [`TENANT_CHUNK_ROWS`] rows of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantChunk {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// One audio file of an exported tenant, named as on the exporting PBX.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AudioRef {
    /// `prompt`, `voicemail` or `recording`.
    pub kind: String,
    /// The prompt's file name, or the message's or recording's id.
    pub id: String,
    /// The mailbox of a voicemail message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
}

/// What an export held: row counts per table and the audio to carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantExport {
    pub rows: Vec<(String, u64)>,
    pub audio: Vec<AudioRef>,
}

/// A tenant whose rows are in: its new id, the status to give it once its
/// audio is in, and the new name of each audio file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTenant {
    pub tenant: TenantId,
    pub name: String,
    status: String,
    audio: HashMap<AudioRef, AudioRef>,
}

impl ImportedTenant {
    /// The audio files the rows name, as the export named them.
    pub fn audio(&self) -> impl Iterator<Item = &AudioRef> {
        self.audio.keys()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Blob,
}
use Kind::{Blob as B, Int as I, Text as T};

/// How a table's rows of one tenant are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The `tenants` row itself.
    Itself,
    /// `tenant_id = tenant`.
    Column,
    /// `user_id` of one of the tenant's users.
    User,
    /// The plugin bytes its dial plans and policies name.
    Blobs,
}

/// A table that moves with its tenant; `columns` leaves out `tenant_id`.
struct Table {
    name: &'static str,
    owner: Owner,
    columns: &'static [(&'static str, Kind)],
}

/// Every table that moves, in the order an import writes it (parents first).
const TABLES: &[Table] = &[
    Table {
        name: "tenants",
        owner: Owner::Itself,
        columns: &[
            ("name", T),
            ("status", T),
            ("media_encryption", T),
            ("digest_algorithms", T),
            ("time_zone", T),
            ("voicemail_retention_days", I),
            ("call_recording", I),
            ("cdr_retention_days", I),
            ("alert_retention_days", I),
        ],
    },
    Table {
        name: "tenant_domains",
        owner: Owner::Column,
        columns: &[("domain", T), ("position", I)],
    },
    Table {
        name: "tenant_limits",
        owner: Owner::Column,
        columns: &[
            ("max_concurrent", I),
            ("max_concurrent_extension", I),
            ("max_calls_per_second", I),
            ("daily_cap_cents", I),
            ("media_storage_bytes", I),
            ("max_media_sessions", I),
            ("recording_minutes", I),
        ],
    },
    Table {
        name: "tenant_holidays",
        owner: Owner::Column,
        columns: &[("day", T), ("name", T)],
    },
    Table {
        name: "extensions",
        owner: Owner::Column,
        columns: &[
            ("number", T),
            ("ha1_md5", T),
            ("ha1_sha256", T),
            ("enabled", I),
            ("digest_algorithms", T),
            ("password_changed_ms", I),
        ],
    },
    Table {
        name: "extension_forwarding",
        owner: Owner::Column,
        columns: &[
            ("number", T),
            ("always_to", T),
            ("busy_to", T),
            ("no_answer_to", T),
            ("no_answer_secs", I),
            ("dnd", I),
        ],
    },
    Table {
        name: "voicemail_boxes",
        owner: Owner::Column,
        columns: &[
            ("mailbox", T),
            ("pin_hash", T),
            ("failed_attempts", I),
            ("locked_until_ms", I),
        ],
    },
    Table {
        name: "network_acls",
        owner: Owner::Column,
        columns: &[("extension", T), ("cidr", T)],
    },
    Table {
        name: "trunks",
        owner: Owner::Column,
        columns: &[
            ("name", T),
            ("host", T),
            ("port", I),
            ("transport", T),
            ("username", T),
            ("password_enc", T),
            ("register", I),
        ],
    },
    Table {
        name: "dids",
        owner: Owner::Column,
        columns: &[("number", T)],
    },
    Table {
        name: "plugin_blobs",
        owner: Owner::Blobs,
        columns: &[("hash", T), ("bytes", B), ("size", I), ("created_ms", I)],
    },
    Table {
        name: "dialplan_versions",
        owner: Owner::Column,
        columns: &[("version", I), ("hash", T), ("uploaded_ms", I)],
    },
    Table {
        name: "dialplan_active",
        owner: Owner::Column,
        columns: &[("version", I)],
    },
    Table {
        name: "tenant_policies",
        owner: Owner::Column,
        columns: &[("name", T), ("hash", T), ("installed_ms", I)],
    },
    Table {
        name: "tenant_policy_config",
        owner: Owner::Column,
        columns: &[("policy", T), ("key", T), ("value", T)],
    },
    Table {
        name: "plugin_kv",
        owner: Owner::Column,
        columns: &[("key", T), ("value", B)],
    },
    Table {
        name: "users",
        owner: Owner::Column,
        columns: &[
            ("id", I),
            ("username", T),
            ("role", T),
            ("extension", T),
            ("password_hash", T),
            ("created_at_ms", I),
            ("session_epoch", I),
            ("disabled", I),
            ("password_changed_ms", I),
        ],
    },
    Table {
        name: "totp",
        owner: Owner::User,
        columns: &[
            ("user_id", I),
            ("secret", T),
            ("confirmed", I),
            ("last_step", I),
        ],
    },
    Table {
        name: "login_networks",
        owner: Owner::User,
        columns: &[
            ("user_id", I),
            ("network", T),
            ("first_ms", I),
            ("last_ms", I),
        ],
    },
    Table {
        name: "approvals",
        owner: Owner::Column,
        columns: &[
            ("kind", T),
            ("target", T),
            ("status", T),
            ("sample_number", T),
            ("requested_ms", I),
            ("decided_ms", I),
            ("decided_by", T),
        ],
    },
    Table {
        name: "alerts",
        owner: Owner::Column,
        columns: &[
            ("severity", T),
            ("event", T),
            ("message", T),
            ("created_ms", I),
            ("acknowledged", I),
        ],
    },
    Table {
        name: "cdrs",
        owner: Owner::Column,
        columns: &[
            ("caller", T),
            ("callee", T),
            ("started_at_ms", I),
            ("answered_at_ms", I),
            ("ended_at_ms", I),
            ("disposition", T),
            ("sip_code", I),
            ("hangup_by", T),
            ("caller_call_id", T),
            ("callee_call_id", T),
            ("caller_packets_in", I),
            ("caller_bytes_in", I),
            ("caller_packets_out", I),
            ("caller_bytes_out", I),
            ("caller_srtp_auth_failures", I),
            ("caller_packets_lost", I),
            ("callee_packets_in", I),
            ("callee_bytes_in", I),
            ("callee_packets_out", I),
            ("callee_bytes_out", I),
            ("callee_srtp_auth_failures", I),
            ("callee_packets_lost", I),
            ("tags", T),
        ],
    },
    Table {
        name: "prompts",
        owner: Owner::Column,
        columns: &[
            ("name", T),
            ("file", T),
            ("bytes", I),
            ("duration_ms", I),
            ("created_at_ms", I),
        ],
    },
    Table {
        name: "voicemail_messages",
        owner: Owner::Column,
        columns: &[
            ("id", T),
            ("mailbox", T),
            ("caller", T),
            ("created_at_ms", I),
            ("duration_ms", I),
            ("bytes", I),
            ("heard", I),
            ("saved", I),
        ],
    },
    Table {
        name: "call_recordings",
        owner: Owner::Column,
        columns: &[
            ("id", T),
            ("caller", T),
            ("callee", T),
            ("created_at_ms", I),
            ("duration_ms", I),
            ("bytes", I),
        ],
    },
];

/// Tables that hold tenant rows and do not move, each with the reason.
pub const STAYS: &[(&str, &str)] = &[
    ("registrations", "phones register again with the new PBX"),
    ("api_tokens", "tokens are signed by the old PBX's key"),
    (
        "audit_log",
        "the old PBX's chain; `audit export` keeps a copy",
    ),
    ("tenant_media_keys", "the tenant gets a new audio key"),
    ("policies", "the provider's own policies, decided per PBX"),
    ("policy_config", "the provider's settings, decided per PBX"),
    (
        "cluster_calls",
        "calls in progress on the old PBX's nodes, recorded there",
    ),
];

fn spec(name: &str) -> Option<(usize, &'static Table)> {
    TABLES.iter().enumerate().find(|(_, t)| t.name == name)
}

fn column(table: &Table, name: &str) -> usize {
    table
        .columns
        .iter()
        .position(|(c, _)| *c == name)
        .unwrap_or_else(|| panic!("{} has no column {name}", table.name))
}

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("tenant import: {what}"))
}

impl Cell {
    fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(n) => Some(*n),
            _ => None,
        }
    }

    fn fits(&self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Cell::Null, _) | (Cell::Int(_), I) | (Cell::Text(_), T) | (Cell::Blob { .. }, B)
        )
    }
}

fn read_cell(row: &AnyRow, i: usize, kind: Kind) -> Result<Cell> {
    Ok(match kind {
        I => row
            .try_get::<Option<i64>, _>(i)?
            .map_or(Cell::Null, Cell::Int),
        T => row
            .try_get::<Option<String>, _>(i)?
            .map_or(Cell::Null, Cell::Text),
        B => row
            .try_get::<Option<Vec<u8>>, _>(i)?
            .map_or(Cell::Null, |b| Cell::Blob {
                base64: STANDARD.encode(b),
            }),
    })
}

/// Binds `cell`; a null is bound typed as the column's `kind` (PostgreSQL
/// checks the type of a null too).
fn bind_cell<'q>(
    query: sqlx::query::Query<'q, Any, AnyArguments>,
    cell: &Cell,
    kind: Kind,
) -> Result<sqlx::query::Query<'q, Any, AnyArguments>> {
    Ok(match cell {
        Cell::Null => match kind {
            I => query.bind(None::<i64>),
            T => query.bind(None::<String>),
            B => query.bind(None::<Vec<u8>>),
        },
        Cell::Int(n) => query.bind(*n),
        Cell::Text(s) => query.bind(s.clone()),
        Cell::Blob { base64 } => query.bind(
            STANDARD
                .decode(base64)
                .map_err(|_| invalid("a binary value is not base64"))?,
        ),
    })
}

impl Store {
    /// The header an export of `tenant` starts with.
    pub async fn tenant_export_header(
        &self,
        tenant: TenantId,
        now_ms: i64,
    ) -> Result<TenantExportHeader> {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1")
            .bind(tenant.0)
            .fetch_optional(&self.pool)
            .await?;
        let name = name.ok_or_else(|| Error::NotFound(format!("tenant {tenant}")))?;
        Ok(TenantExportHeader {
            format: TENANT_EXPORT_FORMAT.into(),
            schema_version: self.schema_version().await?,
            tenant: name,
            exported_at_ms: now_ms,
        })
    }

    /// Sends every row of `tenant` that moves ([`TABLES`], in order) to
    /// `out` in chunks, all read in one transaction so they agree; secrets
    /// sealed with this data directory's key are sent opened. Returns what
    /// was sent and the audio files its rows name.
    pub async fn export_tenant(
        &self,
        tenant: TenantId,
        out: mpsc::Sender<TenantChunk>,
    ) -> Result<TenantExport> {
        let mut tx = self.pool.begin().await?;
        crate::tenant::ensure_tenant(&mut tx, tenant).await?;
        let mut export = TenantExport::default();
        for table in TABLES {
            let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
            let list = columns.join(", ");
            let sql = match table.owner {
                Owner::Itself => format!("SELECT {list} FROM tenants WHERE id = $1"),
                Owner::Column => {
                    format!("SELECT {list} FROM {} WHERE tenant_id = $1", table.name)
                }
                Owner::User => format!(
                    "SELECT {list} FROM {} WHERE user_id IN \
                     (SELECT id FROM users WHERE tenant_id = $1) ORDER BY user_id",
                    table.name
                ),
                Owner::Blobs => format!(
                    "SELECT {list} FROM plugin_blobs WHERE hash IN \
                     (SELECT hash FROM dialplan_versions WHERE tenant_id = $1 \
                      UNION SELECT hash FROM tenant_policies WHERE tenant_id = $1)"
                ),
            };
            let mut chunk = TenantChunk {
                table: table.name.into(),
                columns: columns.iter().map(|c| c.to_string()).collect(),
                rows: Vec::new(),
            };
            let mut count = 0u64;
            {
                let mut rows = sqlx::query(AssertSqlSafe(sql))
                    .bind(tenant.0)
                    .fetch(&mut *tx);
                while let Some(row) = rows.try_next().await? {
                    let mut cells = table
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, (_, kind))| read_cell(&row, i, *kind))
                        .collect::<Result<Vec<_>>>()?;
                    self.open_secrets(tenant, table, &mut cells)?;
                    if let Some(audio) = audio_of(table, &cells) {
                        export.audio.push(audio);
                    }
                    chunk.rows.push(cells);
                    count += 1;
                    if chunk.rows.len() == TENANT_CHUNK_ROWS {
                        let full = TenantChunk {
                            table: chunk.table.clone(),
                            columns: chunk.columns.clone(),
                            rows: std::mem::take(&mut chunk.rows),
                        };
                        out.send(full)
                            .await
                            .map_err(|_| invalid("the export's writer stopped"))?;
                    }
                }
            }
            if !chunk.rows.is_empty() {
                out.send(chunk)
                    .await
                    .map_err(|_| invalid("the export's writer stopped"))?;
            }
            export.rows.push((table.name.into(), count));
        }
        tx.commit().await?;
        Ok(export)
    }

    /// Replaces sealed values of an exported row by their plain text.
    fn open_secrets(&self, tenant: TenantId, table: &Table, cells: &mut [Cell]) -> Result<()> {
        match table.name {
            "trunks" => {
                let at = column(table, "password_enc");
                if let Cell::Text(sealed) = &cells[at] {
                    let name = cells[column(table, "name")].text().unwrap_or_default();
                    let plain = self
                        .secrets
                        .open(&trunk::aad(tenant, name), sealed)
                        .ok_or_else(|| {
                            Error::Invalid(format!(
                                "the password of trunk {name} does not open with this \
                                 data directory's secret key"
                            ))
                        })?;
                    cells[at] = Cell::Text(
                        String::from_utf8(plain)
                            .map_err(|_| Error::Invalid("a trunk password is not UTF-8".into()))?,
                    );
                }
            }
            "totp" => {
                let user = cells[column(table, "user_id")].int().unwrap_or_default();
                let at = column(table, "secret");
                if let Cell::Text(stored) = &cells[at] {
                    cells[at] = Cell::Text(self.open_totp_secret(user, stored)?);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// One audio file of `tenant`, decrypted, as [`Store::export_tenant`]
    /// named it.
    pub async fn export_tenant_audio(&self, tenant: TenantId, file: &AudioRef) -> Result<Vec<u8>> {
        let (kind, aad) = audio_binding(tenant, file)?;
        let key = self
            .tenant_key(tenant)
            .await?
            .ok_or_else(|| Error::NotFound(format!("audio key of tenant {tenant}")))?;
        self.read_sealed(AudioFile::new(tenant, kind, &file.id), key, aad)
            .await
    }

    /// Starts importing a tenant exported with `header`, as `name` (the
    /// exported name when `None`). Nothing is visible until
    /// [`TenantImport::commit`].
    pub async fn begin_tenant_import(
        &self,
        header: &TenantExportHeader,
        name: Option<&str>,
    ) -> Result<TenantImport> {
        if header.format != TENANT_EXPORT_FORMAT {
            return Err(invalid(format!(
                "format {:?}, expected {TENANT_EXPORT_FORMAT:?}",
                header.format
            )));
        }
        let ours = self.schema_version().await?;
        if header.schema_version != ours {
            return Err(invalid(format!(
                "the export is of schema version {}, this PBX has {ours}: \
                 run the same PBX version on both sides",
                header.schema_version
            )));
        }
        let name = match name {
            Some(n) => crate::checks::tenant_name(n)?,
            None => header.tenant.clone(),
        };
        let tx = self.write_tx().await?;
        Ok(TenantImport {
            store: self.clone(),
            tx: Some(tx),
            chunks: 0,
            committed: false,
            name,
            next_table: 0,
            tenant: None,
            status: String::new(),
            users: HashMap::new(),
            audio: HashMap::new(),
        })
    }

    /// Writes one audio file of an imported tenant, named as the export named
    /// it, sealed under the tenant's new key.
    pub async fn import_tenant_audio(
        &self,
        imported: &ImportedTenant,
        exported: &AudioRef,
        wav: Vec<u8>,
    ) -> Result<()> {
        let target = imported
            .audio
            .get(exported)
            .ok_or_else(|| invalid(format!("no row names the audio file {}", exported.id)))?;
        audio::check_wav(&wav, crate::MAX_CALL_RECORDING_BYTES, "imported audio")?;
        let (kind, aad) = audio_binding(imported.tenant, target)?;
        let key = self.tenant_key_or_create(imported.tenant).await?;
        self.write_sealed(
            AudioFile::new(imported.tenant, kind, &target.id),
            key,
            aad,
            wav,
        )
        .await
    }

    /// Ends an import: the tenant gets the status it was exported with.
    pub async fn finish_tenant_import(&self, imported: &ImportedTenant) -> Result<()> {
        sqlx::query("UPDATE tenants SET status = $1 WHERE id = $2")
            .bind(&imported.status)
            .bind(imported.tenant.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The audio file an exported row names.
fn audio_of(table: &Table, cells: &[Cell]) -> Option<AudioRef> {
    let text = |c: &str| cells[column(table, c)].text().map(str::to_owned);
    let (kind, id, mailbox) = match table.name {
        "prompts" => ("prompt", text("file")?, None),
        "voicemail_messages" => ("voicemail", text("id")?, Some(text("mailbox")?)),
        "call_recordings" => ("recording", text("id")?, None),
        _ => return None,
    };
    Some(AudioRef {
        kind: kind.into(),
        id,
        mailbox,
    })
}

/// The file kind and encryption binding of an audio file of `tenant`.
fn audio_binding(tenant: TenantId, file: &AudioRef) -> Result<(AudioKind, Vec<u8>)> {
    if !audio::is_id(&file.id) {
        return Err(invalid(format!("{:?} is not an audio file name", file.id)));
    }
    match (file.kind.as_str(), &file.mailbox) {
        ("prompt", None) => Ok((AudioKind::Prompt, audio::prompt_aad(tenant, &file.id))),
        ("voicemail", Some(mailbox)) => Ok((
            AudioKind::Voicemail,
            audio::voicemail_aad(tenant, mailbox, &file.id),
        )),
        ("recording", None) => Ok((AudioKind::Recording, audio::recording_aad(tenant, &file.id))),
        _ => Err(invalid(format!("unknown audio kind {:?}", file.kind))),
    }
}

/// Chunks an import writes in one transaction: a serving PBX's own writes
/// wait for at most this many between two of them.
const CHUNKS_PER_TRANSACTION: u32 = 8;

/// An import in progress. Chunks are written in transactions of
/// [`CHUNKS_PER_TRANSACTION`], the tenant suspended until
/// [`Store::finish_tenant_import`]; whoever gives up on an import deletes
/// the tenant ([`TenantImport::tenant`]) if it has one.
pub struct TenantImport {
    store: Store,
    tx: Option<Transaction<'static, Any>>,
    chunks: u32,
    /// Whether a transaction of this import was committed.
    committed: bool,
    name: String,
    /// The index in [`TABLES`] the next chunk may have at least.
    next_table: usize,
    tenant: Option<TenantId>,
    status: String,
    /// Old user id → new.
    users: HashMap<i64, i64>,
    audio: HashMap<AudioRef, AudioRef>,
}

impl TenantImport {
    /// The new tenant, once its row is committed (so whoever gives up on the
    /// import has it to delete).
    pub fn tenant(&self) -> Option<TenantId> {
        self.tenant.filter(|_| self.committed)
    }

    /// The open transaction, begun again after a commit.
    async fn tx(&mut self) -> Result<&mut Transaction<'static, Any>> {
        if self.tx.is_none() {
            self.tx = Some(self.store.write_tx().await?);
        }
        Ok(self.tx.as_mut().expect("a transaction was just begun"))
    }

    /// Writes one chunk, after checking it against [`TABLES`]: tables come
    /// in their order, the `tenants` row first, with exactly the listed
    /// columns and values of their kinds.
    pub async fn add(&mut self, chunk: TenantChunk) -> Result<()> {
        let (index, table) = spec(&chunk.table)
            .ok_or_else(|| invalid(format!("unknown table {:?}", chunk.table)))?;
        if index < self.next_table {
            return Err(invalid(format!("table {} out of order", table.name)));
        }
        self.next_table = index;
        let expected: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        if chunk.columns != expected {
            return Err(invalid(format!(
                "the columns of {} do not match",
                table.name
            )));
        }
        if chunk.rows.len() > TENANT_CHUNK_ROWS {
            return Err(invalid(format!("a chunk of {} is too long", table.name)));
        }
        for (n, row) in chunk.rows.into_iter().enumerate() {
            if row.len() != table.columns.len()
                || !row.iter().zip(table.columns).all(|(c, (_, k))| c.fits(*k))
            {
                return Err(invalid(format!("row {n} of {} is malformed", table.name)));
            }
            self.insert(table, row).await?;
        }
        self.chunks += 1;
        if self.chunks.is_multiple_of(CHUNKS_PER_TRANSACTION)
            && let Some(tx) = self.tx.take()
        {
            tx.commit().await?;
            self.committed = true;
        }
        Ok(())
    }

    async fn insert(&mut self, table: &Table, mut cells: Vec<Cell>) -> Result<()> {
        let mut columns: Vec<(&str, Kind)> = table.columns.to_vec();
        if table.owner == Owner::Itself {
            if self.tenant.is_some() {
                return Err(invalid("more than one tenants row"));
            }
            self.status = cells[column(table, "status")]
                .text()
                .unwrap_or("active")
                .to_owned();
            cells[column(table, "name")] = Cell::Text(self.name.clone());
            cells[column(table, "status")] = Cell::Text("suspended".into());
            let id = self.insert_row("tenants", &columns, &cells, true).await?;
            self.tenant = Some(TenantId(id));
            return Ok(());
        }
        let tenant = self
            .tenant
            .ok_or_else(|| invalid("the tenants row must come first"))?;
        match table.name {
            "plugin_blobs" => return self.insert_blob(table, &cells).await,
            "users" => {
                let old = cells[0].int().ok_or_else(|| invalid("a user without id"))?;
                columns.remove(0);
                cells.remove(0);
                columns.push(("tenant_id", I));
                cells.push(Cell::Int(tenant.0));
                let id = self.insert_row("users", &columns, &cells, true).await?;
                self.users.insert(old, id);
                return Ok(());
            }
            "totp" | "login_networks" => {
                let old = cells[0].int().unwrap_or_default();
                let user = *self
                    .users
                    .get(&old)
                    .ok_or_else(|| invalid(format!("{} of an unknown user", table.name)))?;
                cells[0] = Cell::Int(user);
                if table.name == "totp"
                    && let Cell::Text(secret) = &cells[column(table, "secret")]
                {
                    cells[column(table, "secret")] =
                        Cell::Text(self.store.seal_totp_secret(user, secret)?);
                }
            }
            "trunks" => {
                let at = column(table, "password_enc");
                if let Cell::Text(plain) = &cells[at] {
                    let name = cells[column(table, "name")].text().unwrap_or_default();
                    cells[at] = Cell::Text(
                        self.store
                            .secrets
                            .seal(&trunk::aad(tenant, name), plain.as_bytes())?,
                    );
                }
                columns.push(("tenant_id", I));
                cells.push(Cell::Int(tenant.0));
            }
            "prompts" | "voicemail_messages" | "call_recordings" => {
                let old = audio_of(table, &cells).ok_or_else(|| invalid("an audio row"))?;
                audio_binding(tenant, &old)?;
                let fresh = AudioRef {
                    id: audio::new_id(),
                    ..old.clone()
                };
                let at = column(
                    table,
                    if table.name == "prompts" {
                        "file"
                    } else {
                        "id"
                    },
                );
                cells[at] = Cell::Text(fresh.id.clone());
                self.audio.insert(old, fresh);
                columns.push(("tenant_id", I));
                cells.push(Cell::Int(tenant.0));
            }
            _ => {
                columns.push(("tenant_id", I));
                cells.push(Cell::Int(tenant.0));
            }
        }
        self.insert_row(table.name, &columns, &cells, false).await?;
        Ok(())
    }

    /// Plugin bytes are shared by content: a copy already here is kept, and
    /// bytes that do not match their hash are refused.
    async fn insert_blob(&mut self, table: &Table, cells: &[Cell]) -> Result<()> {
        let hash = cells[column(table, "hash")].text().unwrap_or_default();
        let Cell::Blob { base64 } = &cells[column(table, "bytes")] else {
            return Err(invalid("plugin bytes missing"));
        };
        let bytes = STANDARD
            .decode(base64)
            .map_err(|_| invalid("plugin bytes are not base64"))?;
        if hex::encode(Sha256::digest(&bytes)) != hash {
            return Err(invalid(format!("plugin {hash} does not match its hash")));
        }
        sqlx::query(
            "INSERT INTO plugin_blobs (hash, bytes, size, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash)
        .bind(&bytes)
        .bind(bytes.len() as i64)
        .bind(cells[column(table, "created_ms")].int().unwrap_or_default())
        .execute(&mut **self.tx().await?)
        .await?;
        Ok(())
    }

    /// Inserts one row; with `returning`, gives the id the database chose.
    async fn insert_row(
        &mut self,
        table: &str,
        columns: &[(&str, Kind)],
        cells: &[Cell],
        returning: bool,
    ) -> Result<i64> {
        let marks: Vec<String> = (1..=cells.len()).map(|i| format!("${i}")).collect();
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let mut sql = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            marks.join(", ")
        );
        if returning {
            sql.push_str(" RETURNING id");
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (cell, (_, kind)) in cells.iter().zip(columns) {
            query = bind_cell(query, cell, *kind)?;
        }
        let taken = || {
            let key = cells.first().and_then(Cell::text).unwrap_or_default();
            format!("{table}: {key:?} already exists on this PBX")
        };
        if returning {
            let row = query
                .fetch_one(&mut **self.tx().await?)
                .await
                .map_err(|e| Error::conflict_on_unique(e, taken))?;
            Ok(row.try_get(0)?)
        } else {
            query
                .execute(&mut **self.tx().await?)
                .await
                .map_err(|e| Error::conflict_on_unique(e, taken))?;
            Ok(0)
        }
    }

    /// Makes the rows visible, the tenant still suspended, and tells what
    /// audio to write next ([`Store::import_tenant_audio`]).
    pub async fn commit(self) -> Result<ImportedTenant> {
        let tenant = self
            .tenant
            .ok_or_else(|| invalid("the export holds no tenant"))?;
        if let Some(tx) = self.tx {
            tx.commit().await?;
        }
        Ok(ImportedTenant {
            tenant,
            name: self.name,
            status: self.status,
            audio: self.audio,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    /// Exports `tenant` of `store` into a list of chunks.
    pub(crate) async fn export(
        store: &Store,
        tenant: TenantId,
    ) -> (TenantExportHeader, Vec<TenantChunk>, TenantExport) {
        let header = store.tenant_export_header(tenant, 1).await.expect("header");
        let (tx, mut rx) = mpsc::channel(4);
        let collect = tokio::spawn(async move {
            let mut chunks = Vec::new();
            while let Some(c) = rx.recv().await {
                chunks.push(c);
            }
            chunks
        });
        let export = store.export_tenant(tenant, tx).await.expect("export");
        (header, collect.await.expect("chunks"), export)
    }

    async fn import(
        store: &Store,
        header: &TenantExportHeader,
        chunks: &[TenantChunk],
        name: Option<&str>,
    ) -> Result<ImportedTenant> {
        let mut import = store.begin_tenant_import(header, name).await?;
        for chunk in chunks {
            import.add(chunk.clone()).await?;
        }
        import.commit().await
    }

    /// Every table with tenant rows either moves or is listed as staying.
    #[tokio::test]
    async fn every_tenant_table_moves_or_stays_for_a_reason() {
        let store = Store::open_in_memory().await.expect("open");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&store.pool)
                .await
                .expect("tables");
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(&table)
                .fetch_all(&store.pool)
                .await
                .expect("columns");
            if !columns.iter().any(|c| c == "tenant_id" || c == "user_id") && table != "tenants" {
                continue;
            }
            let stays = STAYS.iter().any(|(t, _)| *t == table);
            let moves = spec(&table);
            assert!(
                stays ^ moves.is_some(),
                "{table} must either move or be listed as staying"
            );
            if let Some((_, spec)) = moves {
                for column in &columns {
                    let listed = spec.columns.iter().any(|(c, _)| c == column);
                    let implied = column == "tenant_id"
                        || (column == "id" && !matches!(table.as_str(), "users"));
                    assert!(
                        listed || implied,
                        "column {table}.{column} is neither exported nor implied"
                    );
                }
            }
        }
    }

    backend_test! {
        async fn a_tenant_moves_with_new_ids_and_nothing_of_its_neighbours() {
            let source = crate::testdb::store().await.expect("source");
            let other = source
                .add_tenant("other", "other.example")
                .await
                .expect("o");
            let acme = source.add_tenant("acme", "acme.example").await.expect("a");
            for t in [other.id, acme.id] {
                source
                    .add_extension(t, "100", "pw-100-long")
                    .await
                    .expect("ext");
                source
                    .insert_cdrs(&[crate::cdr::tests::cdr(t, "100", "101", 5_000)])
                    .await
                    .expect("cdr");
            }
            source
                .add_trunk(
                    acme.id,
                    "carrier",
                    "sip:gw.example.net",
                    Some("u"),
                    Some("trunk-pw"),
                )
                .await
                .expect("trunk");
            let wav = crate::prompt::tests::wav(800);
            source
                .put_prompt(acme.id, "menu", &wav, 100)
                .await
                .expect("prompt");
            source
                .save_voicemail(acme.id, "100", "555", &wav, 100)
                .await
                .expect("vm");
            source
                .plugin_kv_admin_put(acme.id, "ring-group:sales", Some(b"100"))
                .await
                .expect("kv");

            let (header, chunks, export) = export(&source, acme.id).await;
            assert_eq!(header.tenant, "acme");
            assert_eq!(export.audio.len(), 2, "{:?}", export.audio);
            let text = serde_json::to_string(&chunks).expect("json");
            assert!(
                !text.contains("other.example"),
                "nothing of the other tenant"
            );
            assert!(
                text.contains("trunk-pw"),
                "the trunk password travels opened"
            );

            // The target already has tenants of its own.
            let target = crate::testdb::store().await.expect("target");
            let mut ids = Vec::new();
            for n in 0..3 {
                let t = target
                    .add_tenant(&format!("t{n}"), &format!("t{n}.example"))
                    .await
                    .expect("t");
                target
                    .add_extension(t.id, "100", "pw-100-long")
                    .await
                    .expect("ext");
                target
                    .insert_cdrs(&[crate::cdr::tests::cdr(t.id, "100", "101", 1_000)])
                    .await
                    .expect("cdr");
                ids.push(t.id);
            }
            let imported = import(&target, &header, &chunks, Some("acme2"))
                .await
                .expect("import");
            assert!(!ids.contains(&imported.tenant));
            for file in export.audio.clone() {
                let bytes = source
                    .export_tenant_audio(acme.id, &file)
                    .await
                    .expect("read");
                target
                    .import_tenant_audio(&imported, &file, bytes)
                    .await
                    .expect("write");
            }
            target
                .finish_tenant_import(&imported)
                .await
                .expect("finish");

            let t = target
                .tenant(imported.tenant)
                .await
                .expect("get")
                .expect("tenant");
            assert_eq!(t.name, "acme2");
            assert_eq!(t.status, TenantStatus::Active);
            assert_eq!(t.domains, vec!["acme.example".to_string()]);
            let trunks = target.list_trunks(imported.tenant).await.expect("trunks");
            assert_eq!(trunks[0].password.as_deref(), Some("trunk-pw"));
            assert_eq!(
                target
                    .prompt_audio(imported.tenant, "menu")
                    .await
                    .expect("p"),
                Some(wav.clone())
            );
            let messages = target
                .voicemail_messages(imported.tenant, "100")
                .await
                .expect("vm");
            assert_eq!(messages.len(), 1);
            assert_eq!(
                target
                    .voicemail_audio(imported.tenant, "100", &messages[0].id)
                    .await
                    .expect("audio"),
                Some(wav.clone())
            );
            let cdrs = target
                .list_cdrs(imported.tenant, &CdrFilter::default())
                .await
                .expect("cdrs");
            assert_eq!(cdrs.len(), 1);
            // Every numbered row the import wrote has an id of its own on the
            // target: none is shared with another tenant's rows.
            let shared: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM cdrs a JOIN cdrs b ON a.id = b.id AND a.tenant_id <> b.tenant_id",
            )
            .fetch_one(&target.pool)
            .await
            .expect("ids");
            assert_eq!(shared, 0);
            let other_rows: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tenant_domains WHERE domain = 'other.example'",
            )
            .fetch_one(&target.pool)
            .await
            .expect("other");
            assert_eq!(other_rows, 0);
            assert_eq!(
                target
                    .plugin_kv_get(imported.tenant, "ring-group:sales")
                    .await
                    .expect("kv"),
                Some(b"100".to_vec())
            );
            // The same export again clashes on the domain, with a clear error and
            // nothing written.
            let err = import(&target, &header, &chunks, Some("acme3"))
                .await
                .expect_err("domain taken");
            assert!(err.to_string().contains("acme.example"), "{err}");
            assert!(target.tenant_by_name("acme3").await.expect("get").is_none());
        }
    }

    backend_test! {
        async fn a_malformed_export_is_refused_before_any_sql() {
            let source = crate::testdb::store().await.expect("source");
            let acme = source.add_tenant("acme", "acme.example").await.expect("a");
            let (header, chunks, _) = export(&source, acme.id).await;
            let target = crate::testdb::store().await.expect("target");

            let mut bad = chunks.clone();
            bad[1].columns[0] = "domain) VALUES ('x'); DROP TABLE cdrs; --".into();
            let err = import(&target, &header, &bad, None)
                .await
                .expect_err("columns");
            assert!(err.to_string().contains("do not match"), "{err}");

            let mut bad = chunks.clone();
            bad[0].table = "audit_log".into();
            assert!(import(&target, &header, &bad, None).await.is_err());

            let mut old = header.clone();
            old.schema_version -= 1;
            let err = import(&target, &old, &chunks, None)
                .await
                .expect_err("version");
            assert!(err.to_string().contains("schema version"), "{err}");
            assert!(target.list_tenants().await.expect("list").is_empty());
        }
    }
}
