-- PostgreSQL twin of migrations/sqlite/0007_limits.sql.
CREATE TABLE tenant_limits (
    tenant_id                BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    max_concurrent           BIGINT CHECK (max_concurrent >= 0),
    max_concurrent_extension BIGINT CHECK (max_concurrent_extension >= 0),
    max_calls_per_second     BIGINT CHECK (max_calls_per_second >= 0),
    daily_cap_cents          BIGINT CHECK (daily_cap_cents >= 0)
);

CREATE TRIGGER tenant_limits_gen AFTER INSERT OR UPDATE OR DELETE ON tenant_limits
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
