-- Consecutive failed 2FA attempts since the last success, and the back-off
-- they have earned (locked_until, Unix ms).
CREATE TABLE failure_streaks (
    user_id      TEXT PRIMARY KEY,
    count        INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
);
