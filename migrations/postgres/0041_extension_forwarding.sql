-- PostgreSQL twin of migrations/sqlite/0041_extension_forwarding.sql.
CREATE TABLE extension_forwarding (
    tenant_id      BIGINT  NOT NULL,
    number         TEXT    NOT NULL,
    always_to      TEXT,
    busy_to        TEXT,
    no_answer_to   TEXT,
    no_answer_secs BIGINT  NOT NULL,
    dnd            BIGINT  NOT NULL DEFAULT 0 CHECK (dnd IN (0, 1)),
    PRIMARY KEY (tenant_id, number),
    FOREIGN KEY (tenant_id, number) REFERENCES extensions (tenant_id, number) ON DELETE CASCADE
);

CREATE TRIGGER extension_forwarding_gen AFTER INSERT OR UPDATE OR DELETE ON extension_forwarding
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
