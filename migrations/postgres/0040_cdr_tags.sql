-- PostgreSQL twin of migrations/sqlite/0040_cdr_tags.sql.
ALTER TABLE cdrs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
