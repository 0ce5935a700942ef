-- Plugins (tenants' dial plans and policies, stored by content hash, versioned),
-- the plugins' per-tenant key-value storage, SIP trunks and DIDs.
--
-- Same conventions as 0001_init.sql: timestamps as Unix milliseconds, booleans as
-- 0/1 INTEGER, enumerations as TEXT with CHECK constraints, tenant_id on every
-- tenant-owned row.

-- Uploaded WebAssembly components, stored once per content hash.
CREATE TABLE plugin_blobs (
    hash       TEXT    NOT NULL PRIMARY KEY, -- lower-case hex SHA-256 of bytes
    bytes      BLOB    NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_ms INTEGER NOT NULL
);

-- Every dial plan a tenant uploaded, numbered 1, 2, ... per tenant.
CREATE TABLE dialplan_versions (
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version > 0),
    hash        TEXT    NOT NULL REFERENCES plugin_blobs (hash),
    uploaded_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- The version a tenant's calls run. No row: the shipped default dial plan.
CREATE TABLE dialplan_active (
    tenant_id INTEGER NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    version   INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, version)
        REFERENCES dialplan_versions (tenant_id, version) ON DELETE CASCADE
);

-- Policy components. tenant_id NULL: provider-wide, applies to every tenant.
CREATE TABLE policies (
    name         TEXT    NOT NULL PRIMARY KEY,
    tenant_id    INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    hash         TEXT    NOT NULL REFERENCES plugin_blobs (hash),
    installed_ms INTEGER NOT NULL
);

-- The plugins' `storage` capability: one key space per tenant.
CREATE TABLE plugin_kv (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key       TEXT    NOT NULL,
    value     BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- Outbound SIP trunks. The password is encrypted (ChaCha20-Poly1305, key in
-- DATA_DIR/secret.key, bound to tenant and trunk name) and never stored in clear.
CREATE TABLE trunks (
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    port         INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    transport    TEXT    NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls')),
    username     TEXT,
    password_enc TEXT,
    register     INTEGER NOT NULL DEFAULT 0 CHECK (register IN (0, 1)),
    PRIMARY KEY (tenant_id, name)
);

-- Inbound numbers: a DID routes to exactly one tenant.
CREATE TABLE dids (
    number    TEXT    NOT NULL PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);

CREATE INDEX dids_tenant ON dids (tenant_id);

-- What the running server loads (plugins, trunks, DIDs) moves the provisioning
-- generation like the directory does. Blobs only change together with a version
-- or policy row, and plugin storage is written at call time, so neither does.
CREATE TRIGGER dialplan_versions_gen_insert AFTER INSERT ON dialplan_versions
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER dialplan_versions_gen_update AFTER UPDATE ON dialplan_versions
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER dialplan_versions_gen_delete AFTER DELETE ON dialplan_versions
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER dialplan_active_gen_insert AFTER INSERT ON dialplan_active
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER dialplan_active_gen_update AFTER UPDATE ON dialplan_active
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER dialplan_active_gen_delete AFTER DELETE ON dialplan_active
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER policies_gen_insert AFTER INSERT ON policies
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER policies_gen_update AFTER UPDATE ON policies
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER policies_gen_delete AFTER DELETE ON policies
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER trunks_gen_insert AFTER INSERT ON trunks
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER trunks_gen_update AFTER UPDATE ON trunks
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER trunks_gen_delete AFTER DELETE ON trunks
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER dids_gen_insert AFTER INSERT ON dids
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER dids_gen_update AFTER UPDATE ON dids
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER dids_gen_delete AFTER DELETE ON dids
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
