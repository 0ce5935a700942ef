-- Plugin configuration as a first-class object, by owner.
--
-- policy_config: the provider's configuration of a policy (the shipped ones such
-- as `default-policy`, or any provider-installed one), by policy name. A row with
-- tenant_id NULL is the provider-wide value; a row with a tenant_id overrides it
-- for that tenant. Only the provider writes these rows (CLI, provider-admin API);
-- a tenant, its admins and its plugins can neither read nor write them. A policy
-- reads them through the read-only `config` capability.
CREATE TABLE policy_config (
    policy    TEXT    NOT NULL,
    tenant_id INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL
);

-- Tenant ids start at 1, so 0 stands for "provider-wide" in the uniqueness key.
CREATE UNIQUE INDEX policy_config_key ON policy_config (policy, IFNULL(tenant_id, 0), key);

-- Policies a tenant's admins installed for the tenant's own calls. They run after
-- every provider policy (any deny wins) and have their own name space per tenant.
CREATE TABLE tenant_policies (
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    hash         TEXT    NOT NULL REFERENCES plugin_blobs (hash),
    installed_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- The tenant's own configuration of its own policies, set by its admins. A
-- tenant policy's `config` capability reads only these rows.
CREATE TABLE tenant_policy_config (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    policy    TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, policy, key)
);

-- What the running server loads moves the provisioning generation, so a change
-- reaches it on its next poll.
CREATE TRIGGER policy_config_gen_insert AFTER INSERT ON policy_config
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER policy_config_gen_update AFTER UPDATE ON policy_config
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER policy_config_gen_delete AFTER DELETE ON policy_config
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER tenant_policies_gen_insert AFTER INSERT ON tenant_policies
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_policies_gen_update AFTER UPDATE ON tenant_policies
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_policies_gen_delete AFTER DELETE ON tenant_policies
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER tenant_policy_config_gen_insert AFTER INSERT ON tenant_policy_config
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_policy_config_gen_update AFTER UPDATE ON tenant_policy_config
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_policy_config_gen_delete AFTER DELETE ON tenant_policy_config
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
