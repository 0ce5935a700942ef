-- The networks each admin API user has logged in from (a /24 or /48, or a
-- GeoIP country and network), so that a login from a network never seen for
-- that user raises an alert. Rows go with their user.
CREATE TABLE login_networks (
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    network  TEXT    NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    PRIMARY KEY (user_id, network)
);
