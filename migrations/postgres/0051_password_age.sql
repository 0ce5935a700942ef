-- PostgreSQL twin of migrations/sqlite/0051_password_age.sql: the same rules,
-- as BEFORE triggers that set the column on the row being written.
ALTER TABLE users ADD COLUMN password_changed_ms BIGINT;
UPDATE users SET password_changed_ms = created_at_ms;

ALTER TABLE extensions ADD COLUMN password_changed_ms BIGINT;
UPDATE extensions
    SET password_changed_ms = CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT);

CREATE FUNCTION users_password_set_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.password_changed_ms := NEW.created_at_ms;
    ELSIF NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN
        NEW.password_changed_ms := CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_password_set_at BEFORE INSERT OR UPDATE OF password_hash ON users
    FOR EACH ROW EXECUTE FUNCTION users_password_set_at();

CREATE FUNCTION extensions_password_set_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.ha1_md5 IS DISTINCT FROM OLD.ha1_md5 THEN
        NEW.password_changed_ms := CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER extensions_password_set_at BEFORE INSERT OR UPDATE OF ha1_md5 ON extensions
    FOR EACH ROW EXECUTE FUNCTION extensions_password_set_at();
