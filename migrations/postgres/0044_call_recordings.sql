-- PostgreSQL twin of migrations/sqlite/0044_call_recordings.sql.
ALTER TABLE tenants ADD COLUMN call_recording BIGINT NOT NULL DEFAULT 0
    CHECK (call_recording IN (0, 1));

CREATE TABLE call_recordings (
    id            TEXT    PRIMARY KEY,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    caller        TEXT    NOT NULL,
    callee        TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    duration_ms   BIGINT  NOT NULL CHECK (duration_ms >= 0),
    bytes         BIGINT  NOT NULL CHECK (bytes >= 0)
);
CREATE INDEX call_recordings_tenant ON call_recordings (tenant_id, created_at_ms);
CREATE INDEX call_recordings_created ON call_recordings (created_at_ms);
