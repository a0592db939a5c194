-- When the gateway first saw each user under the enforcement policy: the
-- grace period is counted from it.
CREATE TABLE policy_first_seen (
    user_id    TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL
);
