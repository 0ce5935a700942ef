-- PostgreSQL twin of migrations/sqlite/0002_plugins.sql.

CREATE TABLE plugin_blobs (
    hash       TEXT    NOT NULL PRIMARY KEY,
    bytes      BYTEA   NOT NULL,
    size       BIGINT  NOT NULL CHECK (size >= 0),
    created_ms BIGINT  NOT NULL
);

CREATE TABLE dialplan_versions (
    tenant_id   BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     BIGINT  NOT NULL CHECK (version > 0),
    hash        TEXT    NOT NULL REFERENCES plugin_blobs (hash),
    uploaded_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE dialplan_active (
    tenant_id BIGINT  NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    version   BIGINT  NOT NULL,
    FOREIGN KEY (tenant_id, version)
        REFERENCES dialplan_versions (tenant_id, version) ON DELETE CASCADE
);

CREATE TABLE policies (
    name         TEXT    NOT NULL PRIMARY KEY,
    tenant_id    BIGINT  REFERENCES tenants (id) ON DELETE CASCADE,
    hash         TEXT    NOT NULL REFERENCES plugin_blobs (hash),
    installed_ms BIGINT  NOT NULL
);

CREATE TABLE plugin_kv (
    tenant_id BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key       TEXT    NOT NULL,
    value     BYTEA   NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE trunks (
    tenant_id    BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    port         BIGINT  NOT NULL CHECK (port BETWEEN 1 AND 65535),
    transport    TEXT    NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls')),
    username     TEXT,
    password_enc TEXT,
    register     BIGINT  NOT NULL DEFAULT 0 CHECK (register IN (0, 1)),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE dids (
    number    TEXT    NOT NULL PRIMARY KEY,
    tenant_id BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);

CREATE INDEX dids_tenant ON dids (tenant_id);

CREATE TRIGGER dialplan_versions_gen AFTER INSERT OR UPDATE OR DELETE ON dialplan_versions
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER dialplan_active_gen AFTER INSERT OR UPDATE OR DELETE ON dialplan_active
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER policies_gen AFTER INSERT OR UPDATE OR DELETE ON policies
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER trunks_gen AFTER INSERT OR UPDATE OR DELETE ON trunks
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER dids_gen AFTER INSERT OR UPDATE OR DELETE ON dids
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
