-- Sessions say what they are: a UIA session, a held login (password right,
-- second factor pending), a sign-in page login, a login token, a web session.
ALTER TABLE uia_sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'uia';
UPDATE uia_sessions SET kind = 'held_login' WHERE method = 'POST' AND path = '/login';
UPDATE uia_sessions SET kind = 'signin' WHERE method = 'SIGNIN' AND path = '/login';
UPDATE uia_sessions SET kind = 'login_token' WHERE path = '/login/token';
UPDATE uia_sessions SET kind = 'web' WHERE method = 'WEB';
DROP INDEX uia_sessions_user;
CREATE INDEX uia_sessions_user_kind ON uia_sessions (user_id, kind, created_at);
