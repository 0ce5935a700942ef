-- The version a provider policy had before its last install, so that an
-- install can be rolled back (the bytes stay in plugin_blobs while named here).
ALTER TABLE policies ADD COLUMN previous_hash TEXT;
