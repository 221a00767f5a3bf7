-- The truth about every guarded write, stored in the write's own transaction.
--
-- A row exists if and only if the write committed: a node re-run after a crash, a
-- sibling repair or a reconciler reads it back instead of asking or guessing again.
CREATE TABLE tool_outcomes (
    thread_id        text NOT NULL,
    call_id          text NOT NULL,
    tool             text NOT NULL,
    user_id          text,
    idempotency_key  text,
    status           text NOT NULL,
    result           jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, call_id)
);
CREATE INDEX tool_outcomes_key_idx ON tool_outcomes (idempotency_key);
CREATE INDEX tool_outcomes_user_idx ON tool_outcomes (user_id, created_at);

-- A claim whose write timed out is 'unknown' until reconciled by its backend key; the holder
-- (host:pid) lets a waiter take over at once from a process that died.
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_status_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_status_check
    CHECK (status IN ('in_progress', 'completed', 'unknown'));
ALTER TABLE idempotency_keys ADD COLUMN holder text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN write_key text;

-- The airline's window-fact columns that sat here moved to tools/airline/migrations/005_conversation_windows.sql.
