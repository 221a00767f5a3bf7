-- The minimal test domain: notes owned by customers, and its idempotent write requests.
CREATE TABLE minimal_notes (
    note_id  text PRIMARY KEY,
    owner_id text NOT NULL,
    body     text NOT NULL,
    version  integer NOT NULL DEFAULT 1
);

CREATE TABLE minimal_write_requests (
    idempotency_key text PRIMARY KEY,
    tool            text NOT NULL,
    result          jsonb NOT NULL DEFAULT '{}'::jsonb
);
