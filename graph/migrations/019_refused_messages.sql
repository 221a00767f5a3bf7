-- Messages refused before the graph read them (over the input guard's length limit): kept whole
-- for the record, masked and encrypted with the checkpoint serializer as the transcript is, and
-- erased with the thread by `airlock privacy forget`. The audit event (`input.too_long`) holds
-- only the counts and this row's id: audit payloads never hold a message's text.
CREATE TABLE refused_messages (
    id          bigserial PRIMARY KEY,
    thread_id   text NOT NULL,
    user_id     text NOT NULL,
    reason      text NOT NULL,
    chars       integer NOT NULL,
    serde_type  text NOT NULL,
    blob        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refused_messages_thread_idx ON refused_messages (thread_id, id);
