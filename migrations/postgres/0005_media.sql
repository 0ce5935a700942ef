-- PostgreSQL twin of migrations/sqlite/0005_media.sql.

ALTER TABLE tenants ADD COLUMN media_encryption TEXT NOT NULL DEFAULT 'optional'
    CHECK (media_encryption IN ('required', 'optional', 'disabled'));

ALTER TABLE cdrs ADD COLUMN caller_packets_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_bytes_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_packets_out BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_bytes_out BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_srtp_auth_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_packets_lost BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_packets_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_bytes_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_packets_out BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_bytes_out BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_srtp_auth_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_packets_lost BIGINT NOT NULL DEFAULT 0;
