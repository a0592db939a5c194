-- UIA sessions, bound to one request; data holds e.g. an encrypted held login.
CREATE TABLE uia_sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    flows      TEXT NOT NULL,
    params     TEXT NOT NULL,
    completed  TEXT NOT NULL,
    data       BLOB,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX uia_sessions_expiry ON uia_sessions (expires_at);
