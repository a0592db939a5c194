-- UIA sessions, bound to one request; data holds e.g. an encrypted held login.
-- flows and completed are JSONB (completed is compared as a value by
-- CompleteStage); params is JSON, which keeps the caller's text as it was.
CREATE TABLE uia_sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    flows      JSONB NOT NULL,
    params     JSON NOT NULL,
    completed  JSONB NOT NULL,
    data       BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX uia_sessions_expiry ON uia_sessions (expires_at);
