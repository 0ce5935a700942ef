-- PostgreSQL twin of migrations/sqlite/0055_cluster_registrations.sql, and the
-- notifications that carry changes to every node of a cluster at once
-- (LISTEN/NOTIFY; a notification is delivered when its transaction commits,
-- and identical ones of one transaction are delivered once).
ALTER TABLE registrations ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE registrations ADD COLUMN path TEXT NOT NULL DEFAULT '';

-- Provisioning changed: nodes reload now rather than at their next poll.
CREATE OR REPLACE FUNCTION bump_directory_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE directory_generation SET value = value + 1 WHERE id = 1;
    PERFORM pg_notify('pbx_generation', '');
    RETURN NULL;
END;
$$;

-- A ban was made, extended or lifted on some node.
CREATE FUNCTION notify_bans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pbx_bans', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER bans_notify AFTER INSERT OR UPDATE OR DELETE ON bans
    FOR EACH STATEMENT EXECUTE FUNCTION notify_bans();

-- A binding changed: 'TENANT NODE EXTENSION' of the row (the old row when
-- deleted), so the other nodes re-read that address-of-record.
CREATE FUNCTION notify_registrations() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r registrations%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('pbx_registrations', r.tenant_id || ' ' || r.node || ' ' || r.extension);
    RETURN NULL;
END;
$$;

CREATE TRIGGER registrations_notify AFTER INSERT OR UPDATE OR DELETE ON registrations
    FOR EACH ROW EXECUTE FUNCTION notify_registrations();
