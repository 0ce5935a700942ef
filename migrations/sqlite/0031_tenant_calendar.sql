-- A tenant's calendar, read by call handlers through `pbx:plugin/clock`: its
-- time zone (an IANA name; UTC until set) and its public holidays, one row per
-- local date (YYYY-MM-DD). Both are checked by the store before writing.
ALTER TABLE tenants ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE tenant_holidays (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    day       TEXT NOT NULL,
    name      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

CREATE TRIGGER tenant_holidays_gen_insert AFTER INSERT ON tenant_holidays
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_holidays_gen_update AFTER UPDATE ON tenant_holidays
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_holidays_gen_delete AFTER DELETE ON tenant_holidays
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
