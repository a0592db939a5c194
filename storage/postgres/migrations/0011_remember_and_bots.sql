-- Remembered browsers (only the SHA-256 of the cookie) and tokens for bots
-- and scripts (the SHA-256 of the access token, and the token sealed for its
-- user so that revoking it can log it out).
CREATE TABLE remembered_browsers (
    hash       BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    addr       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX remembered_browsers_user ON remembered_browsers (user_id, expires_at);
CREATE TABLE bot_tokens (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    secret     BYTEA NOT NULL,
    key_id     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX bot_tokens_user ON bot_tokens (user_id, created_at);
