-- PostgreSQL twin of migrations/sqlite/0053_audit_checkpoints.sql.
CREATE TABLE audit_checkpoints (
    id         BIGINT PRIMARY KEY,
    through_id BIGINT NOT NULL CHECK (through_id > 0),
    hash       TEXT   NOT NULL,
    entries    BIGINT NOT NULL CHECK (entries >= 0),
    at_ms      BIGINT NOT NULL,
    mac        TEXT   NOT NULL
);
