-- PostgreSQL twin of migrations/sqlite/0050_login_networks.sql.
CREATE TABLE login_networks (
    user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    network  TEXT   NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms  BIGINT NOT NULL,
    PRIMARY KEY (user_id, network)
);
