-- The OAuth 2.0 API: registered clients, authorization codes (kept only as
-- hashes, with the sealed homeserver login they stand for) and grants (the
-- sealed homeserver login behind a rotating refresh token, kept as a hash).
CREATE TABLE oauth_clients (
    id         TEXT PRIMARY KEY,
    metadata   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE oauth_codes (
    hash         BYTEA PRIMARY KEY,
    client_id    TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    challenge    TEXT NOT NULL,
    scope        TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    login        BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_codes_expiry ON oauth_codes (expires_at);
CREATE TABLE oauth_grants (
    id           TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    scope        TEXT NOT NULL,
    refresh_hash BYTEA NOT NULL UNIQUE,
    access_hash  BYTEA NOT NULL,
    login        BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_grants_access ON oauth_grants (access_hash);
