-- Tenant media: prompts a tenant's admins upload and voicemail its callers
-- leave. The audio itself lives in files under DATA/media/<tenant id>/,
-- encrypted with the tenant's own key; these tables hold what describes it.
-- None of them bumps the provisioning generation: the server reads them when a
-- call needs them.

-- Each tenant's audio key (256 bits), sealed with DATA/secret.key and bound to
-- the tenant. Deleting the row (with the tenant) makes its files unreadable.
CREATE TABLE tenant_media_keys (
    tenant_id INTEGER PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    sealed_key TEXT NOT NULL
);

-- A prompt: its name within the tenant, the file holding its 8 kHz mono WAV
-- (a fresh random name per upload, so a replacement never overwrites the
-- file it replaces), its size and length.
CREATE TABLE prompts (
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    file          TEXT    NOT NULL UNIQUE,
    bytes         INTEGER NOT NULL CHECK (bytes >= 0),
    duration_ms   INTEGER NOT NULL CHECK (duration_ms >= 0),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- A voicemail message in an extension's mailbox; its id (random, URL-safe) is
-- also its file's name. The messages go with their extension.
CREATE TABLE voicemail_messages (
    id            TEXT    PRIMARY KEY,
    tenant_id     INTEGER NOT NULL,
    mailbox       TEXT    NOT NULL,
    caller        TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL CHECK (duration_ms >= 0),
    bytes         INTEGER NOT NULL CHECK (bytes >= 0),
    heard         INTEGER NOT NULL DEFAULT 0 CHECK (heard IN (0, 1)),
    saved         INTEGER NOT NULL DEFAULT 0 CHECK (saved IN (0, 1)),
    FOREIGN KEY (tenant_id, mailbox) REFERENCES extensions (tenant_id, number) ON DELETE CASCADE
);
CREATE INDEX voicemail_messages_mailbox ON voicemail_messages (tenant_id, mailbox, created_at_ms);
CREATE INDEX voicemail_messages_created ON voicemail_messages (created_at_ms);

-- A mailbox's PIN (argon2id) and its own brute-force state: wrong tries since
-- the last success or lockout, and until when it is locked.
CREATE TABLE voicemail_boxes (
    tenant_id       INTEGER NOT NULL,
    mailbox         TEXT    NOT NULL,
    pin_hash        TEXT    NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until_ms INTEGER,
    PRIMARY KEY (tenant_id, mailbox),
    FOREIGN KEY (tenant_id, mailbox) REFERENCES extensions (tenant_id, number) ON DELETE CASCADE
);

-- How long the tenant keeps voicemail, days; NULL: the host default
-- (pbx-model's DEFAULT_VOICEMAIL_RETENTION_DAYS).
ALTER TABLE tenants ADD COLUMN voicemail_retention_days INTEGER
    CHECK (voicemail_retention_days > 0);

-- The provider's media storage quota for the tenant, bytes; NULL: the default.
ALTER TABLE tenant_limits ADD COLUMN media_storage_bytes INTEGER
    CHECK (media_storage_bytes >= 0);
