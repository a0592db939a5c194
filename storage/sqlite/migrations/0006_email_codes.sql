-- One pending e-mail code per user, kept only as a MAC; and the user's
-- verified e-mail addresses as last read from the homeserver.
CREATE TABLE email_codes (
    user_id    TEXT PRIMARY KEY,
    hash       BLOB NOT NULL,
    sent_at    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE user_emails (
    user_id    TEXT PRIMARY KEY,
    addresses  TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
