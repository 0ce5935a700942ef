-- Fraud and abuse defenses: source bans, alerts and approvals of costly
-- destinations. Same conventions as 0001_init.sql (Unix milliseconds, TEXT
-- enumerations with CHECK, 0/1 booleans, tenant_id on tenant-owned rows).

-- Banned source addresses, provider-wide. A row outlives its ban until it is
-- purged, so the history of a source is visible while it lasts.
CREATE TABLE bans (
    ip       TEXT    NOT NULL PRIMARY KEY,
    reason   TEXT    NOT NULL,
    count    INTEGER NOT NULL CHECK (count >= 0),
    strikes  INTEGER NOT NULL DEFAULT 1 CHECK (strikes >= 0),
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    -- what was tried, one item per line
    tried    TEXT    NOT NULL DEFAULT '',
    until_ms INTEGER NOT NULL
);

CREATE INDEX bans_until ON bans (until_ms);

-- Alerts. tenant_id is NULL for provider-wide alerts (bans, scanners).
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    severity     TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    event        TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    acknowledged INTEGER NOT NULL DEFAULT 0 CHECK (acknowledged IN (0, 1))
);

CREATE INDEX alerts_tenant_created ON alerts (tenant_id, created_ms);
CREATE INDEX alerts_created ON alerts (created_ms);

-- A tenant's request to call a destination class (e.g. 'international') or an
-- E.164 prefix (a country code is a prefix), and the provider's decision.
CREATE TABLE approvals (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('class', 'prefix')),
    target        TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'granted', 'denied')),
    sample_number TEXT,
    requested_ms  INTEGER NOT NULL,
    decided_ms    INTEGER,
    decided_by    TEXT
);

-- At most one open request per tenant and destination.
CREATE UNIQUE INDEX approvals_one_pending ON approvals (tenant_id, kind, target)
    WHERE status = 'pending';
CREATE INDEX approvals_tenant ON approvals (tenant_id, status);
