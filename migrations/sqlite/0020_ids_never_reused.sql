-- no-transaction
-- Ids are never reused. A plain INTEGER PRIMARY KEY hands out max(id) + 1, so
-- after the newest tenant, user, token or approval is deleted the next one gets
-- its id, and anything that still names the old id (a token's subject, an audit
-- row, a stored reference) would point at the newcomer. AUTOINCREMENT keeps the
-- high-water mark in sqlite_sequence, so an id is handed out once.
--
-- SQLite cannot change a key in place: each table is rebuilt the documented way
-- (new table, copy, drop, rename), with foreign keys off so that dropping a
-- parent table does not cascade into its children. The whole rebuild is one
-- transaction; foreign-key checks run before it commits.
--
-- The audit head gets the record of when its chain became keyed.
--
-- Users also get what binds a login session to the user's current state:
-- session_epoch goes up on password change, role change, disabling, logout and
-- the suspension of the user's tenant, and a session token carries the epoch it
-- was issued at. `disabled` users cannot log in.

PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

CREATE TABLE tenants_rebuilt (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE,
    status           TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    media_encryption TEXT    NOT NULL DEFAULT 'optional'
        CHECK (media_encryption IN ('required', 'optional', 'disabled'))
);
INSERT INTO tenants_rebuilt (id, name, status, media_encryption)
    SELECT id, name, status, media_encryption FROM tenants;
DROP TABLE tenants;
ALTER TABLE tenants_rebuilt RENAME TO tenants;

CREATE TRIGGER tenants_gen_insert AFTER INSERT ON tenants
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_gen_update AFTER UPDATE ON tenants
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_gen_delete AFTER DELETE ON tenants
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TABLE users_rebuilt (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL CHECK (role IN ('provider-admin', 'tenant-admin', 'user')),
    tenant_id     INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    extension     TEXT,
    password_hash TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    session_epoch INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    CHECK ((role = 'provider-admin') = (tenant_id IS NULL))
);
INSERT INTO users_rebuilt (id, username, role, tenant_id, extension, password_hash, created_at_ms)
    SELECT id, username, role, tenant_id, extension, password_hash, created_at_ms FROM users;
DROP TABLE users;
ALTER TABLE users_rebuilt RENAME TO users;
CREATE INDEX users_tenant ON users (tenant_id);

CREATE TABLE api_tokens_rebuilt (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    jti           TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    scopes        TEXT    NOT NULL,
    token_hash    TEXT    NOT NULL,
    created_by    TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
INSERT INTO api_tokens_rebuilt
    SELECT id, tenant_id, jti, name, scopes, token_hash, created_by, created_at_ms,
           expires_at_ms, revoked_at_ms FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_rebuilt RENAME TO api_tokens;
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);

CREATE TABLE approvals_rebuilt (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('class', 'prefix')),
    target        TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'granted', 'denied')),
    sample_number TEXT,
    requested_ms  INTEGER NOT NULL,
    decided_ms    INTEGER,
    decided_by    TEXT
);
INSERT INTO approvals_rebuilt
    SELECT id, tenant_id, kind, target, status, sample_number, requested_ms, decided_ms,
           decided_by FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_rebuilt RENAME TO approvals;
CREATE UNIQUE INDEX approvals_one_pending ON approvals (tenant_id, kind, target)
    WHERE status = 'pending';
CREATE INDEX approvals_tenant ON approvals (tenant_id, status);
CREATE TRIGGER approvals_gen_insert AFTER INSERT ON approvals
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER approvals_gen_update AFTER UPDATE ON approvals
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

-- Throttle rows expire: the store deletes rows whose last failure is old.
CREATE INDEX login_attempts_age ON login_attempts (last_failure_ms);

-- The audit chain becomes keyed (an HMAC with a key kept outside the
-- database). The store records, MACed with that key, how many entries the log
-- held when that happened; only those may carry the old unkeyed hashes.
ALTER TABLE audit_head ADD COLUMN keyed_after TEXT;

COMMIT;

PRAGMA foreign_keys = ON;
