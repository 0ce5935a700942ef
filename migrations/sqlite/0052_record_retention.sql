-- How long a tenant's call records and alerts are kept, in days; NULL: the
-- provider's default ([retention] in the configuration; none: kept). The
-- provider's maximum bounds both.
ALTER TABLE tenants ADD COLUMN cdr_retention_days INTEGER CHECK (cdr_retention_days >= 1);
ALTER TABLE tenants ADD COLUMN alert_retention_days INTEGER CHECK (alert_retention_days >= 1);
