-- Logins name users without regard to the localpart's case (homeservers fold
-- it): finding a user's authenticator that way must not scan the table.
CREATE INDEX totp_user_nocase ON totp (user_id COLLATE NOCASE);
-- A user's live held logins (to keep their number bounded).
CREATE INDEX uia_sessions_user ON uia_sessions (user_id, path, created_at);
