-- 017: the audit chain split into streams, each with its own head row, so appends no longer
-- serialise on one database-wide lock.
--
-- * stream: which chain an event belongs to (nodes.audit.stream_of: a hash of the thread, or of
--   the actor for events without a thread, modulo the number of streams). seq is gap-free per
--   stream; (stream, seq) is unique. Every event written before this migration is stream 0, with
--   its hashes and sequence numbers unchanged, so old rows and old anchors still verify.
-- * audit_heads: one row per stream with the newest (seq, hash). An append locks its stream's
--   row (SELECT ... FOR UPDATE), links to it, inserts the event and moves the head in the same
--   transaction. The head is a lock and a cache, never trusted by `airlock audit verify`, which
--   recomputes every stream from its events and reports a head that disagrees with them (e.g.
--   events deleted from the end of a stream).
-- * audit_anchors.stream: an anchor signs the head of one stream.
-- * outbox.audit_stream: with audit_seq, the identity of the announcing event.

ALTER TABLE audit_events ADD COLUMN stream integer NOT NULL DEFAULT 0;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_stream_range CHECK (stream >= 0);
ALTER TABLE audit_events DROP CONSTRAINT audit_events_seq_key;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_stream_seq_key UNIQUE (stream, seq);
-- New rows must name their stream: a row inserted without one is not silently put in stream 0.
ALTER TABLE audit_events ALTER COLUMN stream DROP DEFAULT;

ALTER TABLE audit_anchors ADD COLUMN stream integer NOT NULL DEFAULT 0;
DROP INDEX audit_anchors_seq_idx;
CREATE INDEX audit_anchors_stream_seq_idx ON audit_anchors (database, stream, seq);

CREATE TABLE audit_heads (
    stream  integer PRIMARY KEY CHECK (stream >= 0),
    seq     bigint NOT NULL CHECK (seq >= 0),
    hash    text NOT NULL
);
-- Sixteen streams (nodes.audit.STREAMS); an append to a stream without a row creates it.
INSERT INTO audit_heads (stream, seq, hash)
SELECT s, 0, repeat('0', 64) FROM generate_series(0, 15) AS s;
UPDATE audit_heads AS h SET seq = e.seq, hash = e.hash
FROM (SELECT seq, hash FROM audit_events WHERE stream = 0 ORDER BY seq DESC LIMIT 1) AS e
WHERE h.stream = 0;

CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_append_only();
CREATE FUNCTION audit_heads_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_heads rows cannot be deleted';
END $$;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_heads_no_delete();

-- The app locks and moves heads (FOR UPDATE needs UPDATE); it never deletes one.
REVOKE ALL ON audit_heads FROM airlock_app, PUBLIC;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO airlock_app;

ALTER TABLE outbox ADD COLUMN audit_stream integer;
