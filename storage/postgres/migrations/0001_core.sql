-- Core 2FA state: authenticators, pending enrolments, recovery codes,
-- failure counters, audit events and store-wide metadata. The PostgreSQL
-- counterpart of the SQLite engine's 0001_core.sql; times are TIMESTAMPTZ,
-- written at millisecond precision like SQLite's Unix ms.
CREATE TABLE totp (
    user_id    TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    key_id     TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    digits     INTEGER NOT NULL,
    period     INTEGER NOT NULL,
    last_step  BIGINT NOT NULL,
    enabled_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE totp_pending (
    user_id    TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    key_id     TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    digits     INTEGER NOT NULL,
    period     INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE recovery_sets (
    user_id      TEXT PRIMARY KEY,
    set_id       TEXT NOT NULL,
    salt         BYTEA NOT NULL,
    generated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES recovery_sets(user_id) ON DELETE CASCADE,
    set_id  TEXT NOT NULL,
    idx     INTEGER NOT NULL,
    hash    BYTEA NOT NULL,
    used_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, idx)
);

CREATE TABLE failures (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX failures_user_at ON failures (user_id, at);

CREATE TABLE audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '',
    at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_user ON audit (user_id, id);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
