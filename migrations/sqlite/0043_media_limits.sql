-- Media limits a provider sets per tenant (pbx-model's limits.rs): host media
-- sessions at once and minutes of recorded audio kept. NULL: the default.
ALTER TABLE tenant_limits ADD COLUMN max_media_sessions INTEGER
    CHECK (max_media_sessions >= 0);
ALTER TABLE tenant_limits ADD COLUMN recording_minutes INTEGER
    CHECK (recording_minutes >= 0);
