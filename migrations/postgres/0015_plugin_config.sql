-- PostgreSQL twin of migrations/sqlite/0015_plugin_config.sql.
CREATE TABLE policy_config (
    policy    TEXT    NOT NULL,
    tenant_id BIGINT  REFERENCES tenants (id) ON DELETE CASCADE,
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL
);

-- Tenant ids start at 1, so 0 stands for "provider-wide" in the uniqueness key.
CREATE UNIQUE INDEX policy_config_key ON policy_config (policy, COALESCE(tenant_id, 0), key);

CREATE TABLE tenant_policies (
    tenant_id    BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    hash         TEXT    NOT NULL REFERENCES plugin_blobs (hash),
    installed_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE tenant_policy_config (
    tenant_id BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    policy    TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, policy, key)
);

CREATE TRIGGER policy_config_gen AFTER INSERT OR UPDATE OR DELETE ON policy_config
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER tenant_policies_gen AFTER INSERT OR UPDATE OR DELETE ON tenant_policies
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER tenant_policy_config_gen AFTER INSERT OR UPDATE OR DELETE ON tenant_policy_config
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
