-- Call recording: a tenant setting (off by default) and the recordings of
-- its calls. The audio lives in DATA/media/<tenant id>/recordings/<id>,
-- encrypted with the tenant's key like its voicemail; a recording counts
-- against the same media quotas and is deleted after the tenant's retention.
ALTER TABLE tenants ADD COLUMN call_recording INTEGER NOT NULL DEFAULT 0
    CHECK (call_recording IN (0, 1));

CREATE TABLE call_recordings (
    id            TEXT    PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    caller        TEXT    NOT NULL,
    callee        TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL CHECK (duration_ms >= 0),
    bytes         INTEGER NOT NULL CHECK (bytes >= 0)
);
CREATE INDEX call_recordings_tenant ON call_recordings (tenant_id, created_at_ms);
CREATE INDEX call_recordings_created ON call_recordings (created_at_ms);
