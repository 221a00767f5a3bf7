-- Per-turn records out of the checkpoint (issue 13): a checkpoint rewrites every channel it
-- changes whole, so lists that grow with the conversation made each turn cost more than the last.
--
-- guard_decisions: every guard and guardrail decision (PII-free, as the nodes return them), one
-- row each. A node's rows are written when the node finishes, keyed by LangGraph's task id
-- (deterministic for a checkpoint and a task: a task re-run after an interrupt or a crash has
-- the same id) and the decision's index in that task, and replaced together: a re-run never
-- doubles them. `step` is the thread's superstep (it only grows), the thread order.
CREATE TABLE guard_decisions (
    id          bigserial PRIMARY KEY,
    thread_id   text NOT NULL,
    task_id     text NOT NULL,
    step        integer NOT NULL,
    node        text NOT NULL,
    idx         integer NOT NULL,
    decision    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (thread_id, task_id, idx)
);
CREATE INDEX guard_decisions_thread_idx ON guard_decisions (thread_id, step, id);

-- thread_messages: the messages of a thread's finished turns, moved out of the graph state by
-- the input guard when the next turn starts (the state keeps the current turn). Stored as the
-- checkpoint stores them: masked, then serialised and encrypted with the checkpoint serializer.
-- The message id is unique per thread, so moving the same message again is a no-op.
CREATE TABLE thread_messages (
    thread_id   text NOT NULL,
    position    integer NOT NULL,
    message_id  text NOT NULL,
    kind        text NOT NULL,            -- human | ai | tool | system
    serde_type  text NOT NULL,
    blob        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, position),
    UNIQUE (thread_id, message_id)
);
