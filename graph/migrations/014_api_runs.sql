-- Runs of the HTTP API (`airlock serve`): one row per turn a client started, and the events it
-- streamed, so a client that reconnects (to any process) resumes the same run by Last-Event-ID,
-- and a request re-posted with the same Idempotency-Key finds its run instead of starting one.
CREATE TABLE api_runs (
    run_id           text PRIMARY KEY,
    thread_id        text NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    user_id          text NOT NULL,
    idempotency_key  text,
    request_hash     text NOT NULL,
    kind             text NOT NULL,
    status           text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    owner            text NOT NULL,            -- host:pid of the process running the turn
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),  -- renewed while that process lives
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- The same key from the same user is the same request, whatever process receives it.
CREATE UNIQUE INDEX api_runs_key_idx ON api_runs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- One turn at a time per thread: two concurrent runs would race on the checkpoint. A run whose
-- process died (same host: its pid is gone; any host: no heartbeat for the lease) is failed by
-- the next request that meets it, so a crash never locks a thread.
CREATE UNIQUE INDEX api_runs_one_running_idx ON api_runs (thread_id) WHERE status = 'running';

CREATE TABLE api_run_events (
    run_id   text NOT NULL REFERENCES api_runs (run_id) ON DELETE CASCADE,
    seq      integer NOT NULL,
    event    text NOT NULL,
    data     jsonb NOT NULL,
    ts       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
