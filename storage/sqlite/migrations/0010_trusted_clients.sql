-- Clients trusted to skip the 2FA stage for a short window after one: a
-- keyed hash of the access token and of the user agent and address, never
-- the token itself.
CREATE TABLE trusted_clients (
    token_hash  BLOB NOT NULL,
    client_hash BLOB NOT NULL,
    user_id     TEXT NOT NULL,
    until       INTEGER NOT NULL,
    PRIMARY KEY (token_hash, client_hash)
);
CREATE INDEX trusted_clients_user ON trusted_clients (user_id);
