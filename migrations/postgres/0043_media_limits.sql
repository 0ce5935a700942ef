-- PostgreSQL twin of migrations/sqlite/0043_media_limits.sql.
ALTER TABLE tenant_limits ADD COLUMN max_media_sessions BIGINT
    CHECK (max_media_sessions >= 0);
ALTER TABLE tenant_limits ADD COLUMN recording_minutes BIGINT
    CHECK (recording_minutes >= 0);
