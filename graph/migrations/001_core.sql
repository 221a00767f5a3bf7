-- Core tables: the hash-chained audit log, idempotency keys and chat feedback.

CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL,
    event_type  text NOT NULL,
    actor       text NOT NULL,
    thread_id   text,
    tool        text,
    payload     jsonb NOT NULL,
    prev_hash   text NOT NULL,
    hash        text NOT NULL UNIQUE
);
CREATE INDEX audit_events_thread_idx ON audit_events (thread_id, id);
CREATE INDEX audit_events_type_idx ON audit_events (event_type, id);

-- Append-only: updates and deletes are refused by the database itself.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END $$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE idempotency_keys (
    key           text PRIMARY KEY,
    tool          text NOT NULL,
    user_id       text,
    status        text NOT NULL CHECK (status IN ('in_progress', 'completed')),
    owner         text NOT NULL,
    result        jsonb,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    expires_at    timestamptz
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

CREATE TABLE feedback (
    id          bigserial PRIMARY KEY,
    thread_id   text NOT NULL,
    message_id  text,
    user_id     text,
    rating      smallint NOT NULL CHECK (rating IN (-1, 1)),
    comment     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_thread_idx ON feedback (thread_id);

-- Threads the app knows about, so the UI can list them without scanning checkpoints.
CREATE TABLE threads (
    thread_id   text PRIMARY KEY,
    user_id     text NOT NULL,
    title       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_user_idx ON threads (user_id, updated_at DESC);
