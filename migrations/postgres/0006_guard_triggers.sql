-- PostgreSQL twin of migrations/sqlite/0006_guard_triggers.sql.

CREATE TRIGGER bans_gen AFTER DELETE ON bans
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER approvals_gen AFTER INSERT OR UPDATE ON approvals
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
