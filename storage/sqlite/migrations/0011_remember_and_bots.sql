-- Remembered browsers (only the SHA-256 of the cookie) and tokens for bots
-- and scripts (the SHA-256 of the access token, and the token sealed for its
-- user so that revoking it can log it out).
CREATE TABLE remembered_browsers (
    hash       BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    addr       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX remembered_browsers_user ON remembered_browsers (user_id, expires_at);
CREATE TABLE bot_tokens (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    secret     BLOB NOT NULL,
    key_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX bot_tokens_user ON bot_tokens (user_id, created_at);
