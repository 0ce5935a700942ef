-- State of the admin API: users, integration tokens, login throttling and the
-- hash-chained audit log. Same conventions as 0001_init.sql.

-- People who log in to the API. Provider admins have no tenant; everyone else
-- belongs to exactly one. A `user` may be tied to one extension of its tenant.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL CHECK (role IN ('provider-admin', 'tenant-admin', 'user')),
    tenant_id     INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    extension     TEXT,
    -- argon2id PHC string; the password itself is never stored
    password_hash TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    CHECK ((role = 'provider-admin') = (tenant_id IS NULL))
);

CREATE INDEX users_tenant ON users (tenant_id);

-- TOTP (RFC 6238) secrets, one per user. `confirmed` is 0 while enrollment waits
-- for the first valid code.
CREATE TABLE totp (
    user_id   INTEGER NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret    TEXT    NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    last_step INTEGER NOT NULL DEFAULT -1
);

-- Integration tokens: tenant-bound, scoped, expiring, revocable. Only a SHA-256
-- of the token is kept.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
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

CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);

-- Failed logins per key ("user:NAME" or "addr:IP"), for backoff and lockout.
CREATE TABLE login_attempts (
    key             TEXT    NOT NULL PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_ms INTEGER NOT NULL
);

-- Append-only audit log. Each row stores hash = sha256(prev_hash || canonical
-- row); tenant_id has no foreign key so entries outlive a purged tenant.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at_ms     INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    tenant_id INTEGER,
    source    TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

-- The newest entry, so removing rows from the end of the chain is noticed too.
CREATE TABLE audit_head (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL,
    hash    TEXT    NOT NULL
);

INSERT INTO audit_head (id, last_id, hash) VALUES (1, 0, '');
