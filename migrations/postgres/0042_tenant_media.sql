-- PostgreSQL twin of migrations/sqlite/0042_tenant_media.sql.
CREATE TABLE tenant_media_keys (
    tenant_id  BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    sealed_key TEXT   NOT NULL
);

CREATE TABLE prompts (
    tenant_id     BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    file          TEXT    NOT NULL UNIQUE,
    bytes         BIGINT  NOT NULL CHECK (bytes >= 0),
    duration_ms   BIGINT  NOT NULL CHECK (duration_ms >= 0),
    created_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE voicemail_messages (
    id            TEXT    PRIMARY KEY,
    tenant_id     BIGINT  NOT NULL,
    mailbox       TEXT    NOT NULL,
    caller        TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    duration_ms   BIGINT  NOT NULL CHECK (duration_ms >= 0),
    bytes         BIGINT  NOT NULL CHECK (bytes >= 0),
    heard         BIGINT  NOT NULL DEFAULT 0 CHECK (heard IN (0, 1)),
    saved         BIGINT  NOT NULL DEFAULT 0 CHECK (saved IN (0, 1)),
    FOREIGN KEY (tenant_id, mailbox) REFERENCES extensions (tenant_id, number) ON DELETE CASCADE
);
CREATE INDEX voicemail_messages_mailbox ON voicemail_messages (tenant_id, mailbox, created_at_ms);
CREATE INDEX voicemail_messages_created ON voicemail_messages (created_at_ms);

CREATE TABLE voicemail_boxes (
    tenant_id       BIGINT  NOT NULL,
    mailbox         TEXT    NOT NULL,
    pin_hash        TEXT    NOT NULL,
    failed_attempts BIGINT  NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until_ms BIGINT,
    PRIMARY KEY (tenant_id, mailbox),
    FOREIGN KEY (tenant_id, mailbox) REFERENCES extensions (tenant_id, number) ON DELETE CASCADE
);

ALTER TABLE tenants ADD COLUMN voicemail_retention_days BIGINT
    CHECK (voicemail_retention_days > 0);

ALTER TABLE tenant_limits ADD COLUMN media_storage_bytes BIGINT
    CHECK (media_storage_bytes >= 0);
