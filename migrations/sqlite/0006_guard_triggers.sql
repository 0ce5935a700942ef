-- A running server learns of ban and approval changes made by the CLI or the
-- API through the same provisioning generation it already polls (0001_init.sql):
-- a ban deleted from the store is lifted in memory at the next reload, and a
-- decided approval is seen by the call path without a restart. Bans written by
-- the server itself (INSERT/UPDATE) do not bump it.

CREATE TRIGGER bans_gen_delete AFTER DELETE ON bans
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER approvals_gen_insert AFTER INSERT ON approvals
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER approvals_gen_update AFTER UPDATE ON approvals
BEGIN UPDATE directory_generation SET value = value + 1 WHERE id = 1; END;
