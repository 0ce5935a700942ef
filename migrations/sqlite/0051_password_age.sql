-- When each admin API user's and each extension's password was last set, for
-- password ageing (the provider's maximum age, off by default). Kept by
-- triggers, so every way of setting a password counts. Existing extensions
-- count from this migration; existing users from their creation.
ALTER TABLE users ADD COLUMN password_changed_ms INTEGER;
UPDATE users SET password_changed_ms = created_at_ms;

CREATE TRIGGER users_password_set_at_insert AFTER INSERT ON users
BEGIN UPDATE users SET password_changed_ms = NEW.created_at_ms WHERE id = NEW.id; END;

CREATE TRIGGER users_password_changed AFTER UPDATE OF password_hash ON users
WHEN NEW.password_hash IS NOT OLD.password_hash
BEGIN
    UPDATE users SET password_changed_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE id = NEW.id;
END;

ALTER TABLE extensions ADD COLUMN password_changed_ms INTEGER;
UPDATE extensions SET password_changed_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);

CREATE TRIGGER extensions_password_set_at_insert AFTER INSERT ON extensions
BEGIN
    UPDATE extensions SET password_changed_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE tenant_id = NEW.tenant_id AND number = NEW.number;
END;

CREATE TRIGGER extensions_password_changed AFTER UPDATE OF ha1_md5 ON extensions
WHEN NEW.ha1_md5 IS NOT OLD.ha1_md5
BEGIN
    UPDATE extensions SET password_changed_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE tenant_id = NEW.tenant_id AND number = NEW.number;
END;
