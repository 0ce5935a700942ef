-- Call limits a provider sets per tenant, overriding the host's defaults. NULL
-- in a column means "the host default"; a tenant's plugins cannot change these.
CREATE TABLE tenant_limits (
    tenant_id                INTEGER PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    max_concurrent           INTEGER CHECK (max_concurrent >= 0),
    max_concurrent_extension INTEGER CHECK (max_concurrent_extension >= 0),
    max_calls_per_second     INTEGER CHECK (max_calls_per_second >= 0),
    daily_cap_cents          INTEGER CHECK (daily_cap_cents >= 0)
);

CREATE TRIGGER tenant_limits_gen_insert AFTER INSERT ON tenant_limits
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_limits_gen_update AFTER UPDATE ON tenant_limits
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_limits_gen_delete AFTER DELETE ON tenant_limits
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
