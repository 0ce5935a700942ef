-- Digest algorithms offered to a tenant's phones, per tenant and per extension.
-- NULL: inherit (an extension its tenant's, a tenant the server's [auth]
-- algorithms, MD5 alone as shipped). Otherwise a comma-separated list of
-- "MD5" and "SHA-256", most preferred first, as the store writes it.
ALTER TABLE tenants ADD COLUMN digest_algorithms TEXT
    CHECK (digest_algorithms IN ('MD5', 'SHA-256', 'MD5,SHA-256', 'SHA-256,MD5'));
ALTER TABLE extensions ADD COLUMN digest_algorithms TEXT
    CHECK (digest_algorithms IN ('MD5', 'SHA-256', 'MD5,SHA-256', 'SHA-256,MD5'));
