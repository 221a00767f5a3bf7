-- 010: a keyed, anchored audit chain that the app's own role cannot rewrite.
--
-- * seq: a gap-free sequence number assigned under the chain lock (ids have gaps: a rolled-back
--   transaction consumes one), so a missing event is named exactly. key_id: the id of the audit
--   key the event's HMAC was made with (NULL: an event from before this migration, plain SHA-256).
-- * audit_anchors: signed heads of the chain (also appended to a file outside the database).
-- * TRUNCATE is refused by a statement trigger, on both tables; UPDATE and DELETE already are.
-- * airlock_app: the role the app runs as after migrating. It may only INSERT and SELECT the
--   audit tables, owns nothing, so it can neither disable their triggers nor drop them.

ALTER TABLE audit_events ADD COLUMN seq bigint, ADD COLUMN key_id text;
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update;
UPDATE audit_events AS a SET seq = n.seq
FROM (SELECT id, row_number() OVER (ORDER BY id) AS seq FROM audit_events) AS n
WHERE a.id = n.id;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update;
ALTER TABLE audit_events ALTER COLUMN seq SET NOT NULL;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_seq_key UNIQUE (seq);
ALTER TABLE audit_events ADD CONSTRAINT audit_events_seq_positive CHECK (seq > 0);

CREATE FUNCTION airlock_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;

CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_append_only();

CREATE TABLE audit_anchors (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL,
    database    text NOT NULL,
    seq         bigint NOT NULL,
    head_hash   text NOT NULL,
    count       bigint NOT NULL,
    key_id      text NOT NULL,
    mac         text NOT NULL
);
CREATE INDEX audit_anchors_seq_idx ON audit_anchors (seq);
CREATE TRIGGER audit_anchors_no_update BEFORE UPDATE OR DELETE ON audit_anchors
    FOR EACH ROW EXECUTE FUNCTION airlock_append_only();
CREATE TRIGGER audit_anchors_no_truncate BEFORE TRUNCATE ON audit_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_append_only();

-- Roles are shared by every database of the server: create it once, tolerate a concurrent creator.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'airlock_app') THEN
        BEGIN
            CREATE ROLE airlock_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'cannot create the role airlock_app (the app runs as it): run the '
                    'migrations as a role with CREATEROLE, or create it first: CREATE ROLE airlock_app NOLOGIN';
        END;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO airlock_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO airlock_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO airlock_app;
-- Tables the owner creates later (LangGraph's checkpoint tables, later migrations) too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO airlock_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO airlock_app;

REVOKE ALL ON audit_events, audit_anchors FROM airlock_app, PUBLIC;
GRANT SELECT, INSERT ON audit_events, audit_anchors TO airlock_app;
-- schema_migrations is created by the runner (graph/db.py), before any migration.
DO $$
BEGIN
    IF to_regclass('public.schema_migrations') IS NOT NULL THEN
        REVOKE ALL ON schema_migrations FROM airlock_app;
        GRANT SELECT ON schema_migrations TO airlock_app;
    END IF;
END $$;
