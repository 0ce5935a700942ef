-- PostgreSQL twin of migrations/sqlite/0030_digest_algorithms.sql.
ALTER TABLE tenants ADD COLUMN digest_algorithms TEXT
    CHECK (digest_algorithms IN ('MD5', 'SHA-256', 'MD5,SHA-256', 'SHA-256,MD5'));
ALTER TABLE extensions ADD COLUMN digest_algorithms TEXT
    CHECK (digest_algorithms IN ('MD5', 'SHA-256', 'MD5,SHA-256', 'SHA-256,MD5'));
