-- An extension's call forwarding and do-not-disturb, read by call handlers
-- through `pbx:plugin/features` and set by the tenant's admins (API, CLI) or
-- its call handlers (feature codes). One row per extension that set anything
-- (an extension without a row has the defaults); the row goes with its
-- extension. Targets and the ring time are checked by the store (pbx-model's
-- `Forwarding::validate`) before writing.
CREATE TABLE extension_forwarding (
    tenant_id      INTEGER NOT NULL,
    number         TEXT    NOT NULL,
    always_to      TEXT,
    busy_to        TEXT,
    no_answer_to   TEXT,
    no_answer_secs INTEGER NOT NULL,
    dnd            INTEGER NOT NULL DEFAULT 0 CHECK (dnd IN (0, 1)),
    PRIMARY KEY (tenant_id, number),
    FOREIGN KEY (tenant_id, number) REFERENCES extensions (tenant_id, number) ON DELETE CASCADE
);

CREATE TRIGGER extension_forwarding_gen_insert AFTER INSERT ON extension_forwarding
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER extension_forwarding_gen_update AFTER UPDATE ON extension_forwarding
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER extension_forwarding_gen_delete AFTER DELETE ON extension_forwarding
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
