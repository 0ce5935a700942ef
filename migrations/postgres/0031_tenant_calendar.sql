-- PostgreSQL twin of migrations/sqlite/0031_tenant_calendar.sql.
ALTER TABLE tenants ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE tenant_holidays (
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day       TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

CREATE TRIGGER tenant_holidays_gen AFTER INSERT OR UPDATE OR DELETE ON tenant_holidays
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
