-- PostgreSQL twin of migrations/sqlite/0020_ids_never_reused.sql. The ids are
-- identity columns here from the start (a sequence never hands an id out
-- twice), so what is left is the rest of that migration: the users' session
-- epoch and `disabled`, the throttle rows' age index and the audit head's
-- record of when its chain became keyed.
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));

CREATE INDEX login_attempts_age ON login_attempts (last_failure_ms);

ALTER TABLE audit_head ADD COLUMN keyed_after TEXT;
