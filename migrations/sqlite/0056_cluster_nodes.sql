-- Nodes of a cluster: several `pbx serve` sharing one database. Each node
-- writes its row every second (heartbeat_ms); `state` is set by the CLI
-- (`pbx node drain|resume`) and kept by the heartbeats. Runtime state of the
-- running nodes: a move to another database does not copy it.
CREATE TABLE cluster_nodes (
    id             TEXT    PRIMARY KEY,
    sip_addresses  TEXT    NOT NULL,
    api_address    TEXT,
    version        TEXT    NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    heartbeat_ms   INTEGER NOT NULL,
    state          TEXT    NOT NULL DEFAULT 'active'
        CHECK (state IN ('active', 'draining')),
    calls_up       INTEGER NOT NULL DEFAULT 0 CHECK (calls_up >= 0),
    registrations  INTEGER NOT NULL DEFAULT 0 CHECK (registrations >= 0)
);

-- Answered calls in progress on a node (cluster mode only): the record so
-- far. The node deletes the row when it writes the call's record, in the same
-- transaction; a node that dies leaves its rows, which another node turns
-- into records of dropped calls.
CREATE TABLE cluster_calls (
    node            TEXT    NOT NULL,
    call_key        TEXT    NOT NULL,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    caller          TEXT    NOT NULL,
    callee          TEXT    NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    answered_at_ms  INTEGER,
    caller_call_id  TEXT    NOT NULL,
    callee_call_id  TEXT    NOT NULL,
    tags            TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (node, call_key)
);

-- Call records gain the 'dropped' disposition (a call whose node died).
-- SQLite cannot change a CHECK constraint: the table is rebuilt.
CREATE TABLE cdrs_new (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    caller          TEXT    NOT NULL,
    callee          TEXT    NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    answered_at_ms  INTEGER,
    ended_at_ms     INTEGER NOT NULL,
    disposition     TEXT    NOT NULL
        CHECK (disposition IN ('answered', 'busy', 'no-answer', 'cancelled', 'failed', 'dropped')),
    sip_code        INTEGER NOT NULL,
    hangup_by       TEXT    NOT NULL,
    caller_call_id  TEXT    NOT NULL,
    callee_call_id  TEXT    NOT NULL,
    caller_packets_in INTEGER NOT NULL DEFAULT 0,
    caller_bytes_in INTEGER NOT NULL DEFAULT 0,
    caller_packets_out INTEGER NOT NULL DEFAULT 0,
    caller_bytes_out INTEGER NOT NULL DEFAULT 0,
    caller_srtp_auth_failures INTEGER NOT NULL DEFAULT 0,
    caller_packets_lost INTEGER NOT NULL DEFAULT 0,
    callee_packets_in INTEGER NOT NULL DEFAULT 0,
    callee_bytes_in INTEGER NOT NULL DEFAULT 0,
    callee_packets_out INTEGER NOT NULL DEFAULT 0,
    callee_bytes_out INTEGER NOT NULL DEFAULT 0,
    callee_srtp_auth_failures INTEGER NOT NULL DEFAULT 0,
    callee_packets_lost INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '[]'
);
INSERT INTO cdrs_new SELECT
    id, tenant_id, caller, callee, started_at_ms, answered_at_ms, ended_at_ms,
    disposition, sip_code, hangup_by, caller_call_id, callee_call_id,
    caller_packets_in, caller_bytes_in, caller_packets_out, caller_bytes_out,
    caller_srtp_auth_failures, caller_packets_lost,
    callee_packets_in, callee_bytes_in, callee_packets_out, callee_bytes_out,
    callee_srtp_auth_failures, callee_packets_lost, tags
FROM cdrs;
DROP TABLE cdrs;
ALTER TABLE cdrs_new RENAME TO cdrs;
CREATE INDEX cdrs_tenant_started ON cdrs (tenant_id, started_at_ms);
