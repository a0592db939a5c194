-- Core 2FA state: authenticators, pending enrolments, recovery codes,
-- failure counters, audit events and store-wide metadata. Times are Unix ms.
CREATE TABLE totp (
    user_id    TEXT PRIMARY KEY,
    secret     BLOB NOT NULL,
    key_id     TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    digits     INTEGER NOT NULL,
    period     INTEGER NOT NULL,
    last_step  INTEGER NOT NULL,
    enabled_at INTEGER NOT NULL
);

CREATE TABLE totp_pending (
    user_id    TEXT PRIMARY KEY,
    secret     BLOB NOT NULL,
    key_id     TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    digits     INTEGER NOT NULL,
    period     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE recovery_sets (
    user_id      TEXT PRIMARY KEY,
    set_id       TEXT NOT NULL,
    salt         BLOB NOT NULL,
    generated_at INTEGER NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES recovery_sets(user_id) ON DELETE CASCADE,
    set_id  TEXT NOT NULL,
    idx     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, idx)
);

CREATE TABLE failures (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX failures_user_at ON failures (user_id, at);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '',
    at      INTEGER NOT NULL
);
CREATE INDEX audit_user ON audit (user_id, id);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
