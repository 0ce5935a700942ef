-- PostgreSQL twin of migrations/sqlite/0052_record_retention.sql.
ALTER TABLE tenants ADD COLUMN cdr_retention_days BIGINT CHECK (cdr_retention_days >= 1);
ALTER TABLE tenants ADD COLUMN alert_retention_days BIGINT CHECK (alert_retention_days >= 1);
