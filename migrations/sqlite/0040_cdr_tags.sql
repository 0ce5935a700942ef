-- Tags a tenant's call handler put on a call (`pbx:plugin@0.2.0`, action
-- `tag`): a JSON array of strings, at most 8 of at most 64 bytes each.
ALTER TABLE cdrs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
