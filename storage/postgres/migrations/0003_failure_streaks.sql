-- Consecutive failed 2FA attempts since the last success, and the back-off
-- they have earned (locked_until, NULL for none). ReserveAttempt locks a
-- user's row here, so it is also what serializes one user's attempts.
CREATE TABLE failure_streaks (
    user_id      TEXT PRIMARY KEY,
    count        INTEGER NOT NULL,
    locked_until TIMESTAMPTZ
);
