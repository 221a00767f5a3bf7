-- The notification outbox (io.notify): a row per message to deliver, written by the audit log in
-- the same transaction as the event it announces (a review decided, a change executed, a
-- confirm gate waiting), so a notification exists if and only if its event committed. Workers
-- (`airlock outbox run`, or inside `airlock serve`) lease rows with FOR UPDATE SKIP LOCKED and
-- deliver them at least once; `message_key` travels as the e-mail's Message-ID and the
-- webhook's Idempotency-Key so receivers drop a repeat.
CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    message_key      text NOT NULL UNIQUE,
    kind             text NOT NULL,            -- review.decided | change.executed | confirm.waiting
    channel          text NOT NULL CHECK (channel IN ('email', 'webhook')),
    audience         text NOT NULL CHECK (audience IN ('staff', 'customer')),
    dedupe_ref       text NOT NULL,            -- the event's identity: one message per event and route
    audit_seq        bigint,
    thread_id        text,
    tool             text,
    payload          jsonb NOT NULL,           -- neutral fields only (no arguments, no addresses)
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'dead', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    holder           text,                     -- host:pid:start of the leasing worker
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    dead_at          timestamptz
);
CREATE UNIQUE INDEX outbox_route_idx ON outbox (kind, channel, audience, dedupe_ref);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX outbox_dead_idx ON outbox (dead_at) WHERE status = 'dead';
