-- One pending e-mail code per user, kept only as a MAC; and the user's
-- verified e-mail addresses as last read from the homeserver.
CREATE TABLE email_codes (
    user_id    TEXT PRIMARY KEY,
    hash       BYTEA NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE user_emails (
    user_id    TEXT PRIMARY KEY,
    addresses  JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
