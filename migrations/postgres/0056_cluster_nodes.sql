-- PostgreSQL twin of migrations/sqlite/0056_cluster_nodes.sql.
CREATE TABLE cluster_nodes (
    id             TEXT   PRIMARY KEY,
    sip_addresses  TEXT   NOT NULL,
    api_address    TEXT,
    version        TEXT   NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    heartbeat_ms   BIGINT NOT NULL,
    state          TEXT   NOT NULL DEFAULT 'active'
        CHECK (state IN ('active', 'draining')),
    calls_up       BIGINT NOT NULL DEFAULT 0 CHECK (calls_up >= 0),
    registrations  BIGINT NOT NULL DEFAULT 0 CHECK (registrations >= 0)
);

CREATE TABLE cluster_calls (
    node            TEXT   NOT NULL,
    call_key        TEXT   NOT NULL,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    caller          TEXT   NOT NULL,
    callee          TEXT   NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    answered_at_ms  BIGINT,
    caller_call_id  TEXT   NOT NULL,
    callee_call_id  TEXT   NOT NULL,
    tags            TEXT   NOT NULL DEFAULT '[]',
    PRIMARY KEY (node, call_key)
);

ALTER TABLE cdrs DROP CONSTRAINT cdrs_disposition_check;
ALTER TABLE cdrs ADD CONSTRAINT cdrs_disposition_check
    CHECK (disposition IN ('answered', 'busy', 'no-answer', 'cancelled', 'failed', 'dropped'));
