-- Login throttling shared by every process on the database (ui/login_throttle.py).
-- One row per throttle key and fixed time window. An attempt reserves its slot with one
-- INSERT ... ON CONFLICT DO UPDATE ... RETURNING before the password is checked, so concurrent
-- guesses are counted atomically and a guess over the limit is never checked at all. Keys are
-- SHA-256 digests ("pair" = username + client address, "ip" = client address): a mistyped
-- username may be a password, so none is stored in clear.
CREATE TABLE login_attempts (
    key          text        NOT NULL,
    window_start timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX login_attempts_window ON login_attempts (window_start);
