-- Human review cases: one row per pending escalation, kept consistent with the checkpoints
-- so the inbox lists cases without scanning checkpoints.

CREATE TABLE reviews (
    review_id       text PRIMARY KEY,
    thread_id       text NOT NULL,
    interrupt_id    text NOT NULL,
    user_id         text,
    assignee        text NOT NULL,
    tool            text NOT NULL,
    escalation_id   text NOT NULL,
    phase           text NOT NULL CHECK (phase IN ('before', 'after', 'input')),
    payload         jsonb NOT NULL,
    timeout_action  text NOT NULL CHECK (timeout_action IN ('approve', 'reject')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    due_at          timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'deciding', 'approved', 'edited', 'rejected', 'expired', 'stale')),
    claimed_by      text,
    claimed_at      timestamptz,
    decision        jsonb,
    reviewer        text,
    decided_at      timestamptz,
    UNIQUE (thread_id, interrupt_id)
);
CREATE INDEX reviews_inbox_idx ON reviews (status, assignee, due_at);
CREATE INDEX reviews_thread_idx ON reviews (thread_id);

-- Server-side secrets shared by every process on this database (e.g. the key that signs
-- reviewer decisions, so a resume value cannot be forged through the graph API).
CREATE TABLE app_secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per accepted, signed decision: replays of a resumed node audit it only once.
CREATE TABLE review_decisions (
    signature      text PRIMARY KEY,
    thread_id      text,
    call_id        text NOT NULL,
    escalation_id  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
