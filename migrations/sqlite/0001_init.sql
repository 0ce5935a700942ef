-- Durable state of the PBX: tenants, their SIP domains and extensions, registrar
-- bindings and call detail records.
--
-- Conventions (kept so a PostgreSQL twin of this schema is a translation, not a
-- redesign): integer surrogate keys, timestamps as Unix milliseconds in INTEGER
-- columns, enumerations as TEXT with CHECK constraints, booleans as 0/1 INTEGER,
-- every tenant-owned row carries tenant_id with a foreign key to tenants.

CREATE TABLE tenants (
    id      INTEGER PRIMARY KEY,
    name    TEXT    NOT NULL UNIQUE,
    status  TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'))
);

-- A domain names exactly one tenant. position 0 is the primary domain, which is
-- also the digest realm of the tenant's extensions.
CREATE TABLE tenant_domains (
    domain    TEXT    NOT NULL PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL CHECK (position >= 0),
    UNIQUE (tenant_id, position)
);

-- SIP credentials: HA1 digests for realm = the tenant's primary domain. The
-- password itself is never stored.
CREATE TABLE extensions (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    number     TEXT    NOT NULL,
    ha1_md5    TEXT    NOT NULL,
    ha1_sha256 TEXT    NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    PRIMARY KEY (tenant_id, number)
);

-- Registrar bindings, written behind the SIP path in batches. A binding goes
-- away with its extension.
CREATE TABLE registrations (
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    extension     TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    transport     TEXT    NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls')),
    local_addr    TEXT    NOT NULL,
    call_id       TEXT    NOT NULL,
    cseq          INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    user_agent    TEXT,
    PRIMARY KEY (tenant_id, extension, contact),
    FOREIGN KEY (tenant_id, extension)
        REFERENCES extensions (tenant_id, number) ON DELETE CASCADE
);

CREATE INDEX registrations_expiry ON registrations (expires_at_ms);

CREATE TABLE cdrs (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    caller          TEXT    NOT NULL,
    callee          TEXT    NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    answered_at_ms  INTEGER,
    ended_at_ms     INTEGER NOT NULL,
    disposition     TEXT    NOT NULL
        CHECK (disposition IN ('answered', 'busy', 'no-answer', 'cancelled', 'failed')),
    sip_code        INTEGER NOT NULL,
    hangup_by       TEXT    NOT NULL,
    caller_call_id  TEXT    NOT NULL,
    callee_call_id  TEXT    NOT NULL
);

CREATE INDEX cdrs_tenant_started ON cdrs (tenant_id, started_at_ms);

-- Provisioning generation: bumped by any change to tenants, domains or extensions
-- so a running server can poll one row and reload its directory when it moves.
-- Registrations and CDRs do not touch it.
CREATE TABLE directory_generation (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);

INSERT INTO directory_generation (id, value) VALUES (1, 0);

CREATE TRIGGER tenants_gen_insert AFTER INSERT ON tenants
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_gen_update AFTER UPDATE ON tenants
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_gen_delete AFTER DELETE ON tenants
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER tenant_domains_gen_insert AFTER INSERT ON tenant_domains
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_domains_gen_update AFTER UPDATE ON tenant_domains
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_domains_gen_delete AFTER DELETE ON tenant_domains
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER extensions_gen_insert AFTER INSERT ON extensions
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER extensions_gen_update AFTER UPDATE ON extensions
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER extensions_gen_delete AFTER DELETE ON extensions
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
