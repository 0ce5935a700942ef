-- Audit log retention: entries 1..through_id were verified and then deleted;
-- `hash` is the hash of entry through_id, which the first remaining entry
-- links to. Each checkpoint is MACed with the audit key over its fields and
-- the previous checkpoint's MAC, so checkpoints chain like the log.
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY,
    through_id INTEGER NOT NULL CHECK (through_id > 0),
    hash       TEXT    NOT NULL,
    entries    INTEGER NOT NULL CHECK (entries >= 0),
    at_ms      INTEGER NOT NULL,
    mac        TEXT    NOT NULL
);
