-- Networks a tenant's phones may use: rows without an extension apply to every
-- extension of the tenant, rows with one narrow that extension further (a source
-- must pass both lists). No rows: any address. The tenant-wide rows have an empty
-- extension (not NULL, so the uniqueness constraint holds for them too).
CREATE TABLE network_acls (
    id        INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    extension TEXT    NOT NULL DEFAULT '',
    cidr      TEXT    NOT NULL,
    UNIQUE (tenant_id, extension, cidr)
);

CREATE TRIGGER network_acls_gen_insert AFTER INSERT ON network_acls
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER network_acls_gen_delete AFTER DELETE ON network_acls
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
