-- Media anchoring: each tenant's SRTP policy and per-leg media counters in call
-- records. Same conventions as 0001_init.sql (TEXT enumerations with CHECK).

-- required: both legs must use SRTP (a plaintext offer gets 488);
-- optional: SRTP where a leg offers or accepts it over TLS;
-- disabled: never SRTP.
ALTER TABLE tenants ADD COLUMN media_encryption TEXT NOT NULL DEFAULT 'optional'
    CHECK (media_encryption IN ('required', 'optional', 'disabled'));

-- "in" is what a leg sent the host, "out" what the host sent it. Records
-- written before media was anchored read as zero.
ALTER TABLE cdrs ADD COLUMN caller_packets_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_bytes_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_packets_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_bytes_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_srtp_auth_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN caller_packets_lost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_packets_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_bytes_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_packets_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_bytes_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_srtp_auth_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN callee_packets_lost INTEGER NOT NULL DEFAULT 0;
