-- Logins name users without regard to the localpart's case (homeservers fold
-- it): finding a user's authenticator that way must not scan the table.
CREATE INDEX totp_user_lower ON totp (lower(user_id));
-- A user's live held logins (to keep their number bounded).
CREATE INDEX uia_sessions_user ON uia_sessions (user_id, path, created_at);
-- Creation order for sessions created within the same millisecond.
ALTER TABLE uia_sessions ADD COLUMN seq BIGSERIAL;
