-- Lists that do not load states (issue 13).
--
-- Threads: whether a thread waits for a reviewer, for its customer (a confirm gate or a
-- question) or for nothing is kept here, written by the service after every run from the
-- checkpoint it just read, so the thread list reads this table only. ``pending`` holds the
-- kinds of the pending interrupts ('review', 'confirm', 'question'). Rows from before this
-- migration have a NULL status: the list reads their checkpoint once and stores the answer.
-- ``status_checkpoint`` is the id of the checkpoint the status was read from (LangGraph's ids
-- sort by time): a process that read an older checkpoint never overwrites a newer status.
ALTER TABLE threads
    ADD COLUMN status text CHECK (status IN ('idle', 'waiting_review', 'waiting_customer')),
    ADD COLUMN pending text[] NOT NULL DEFAULT '{}',
    ADD COLUMN status_checkpoint text;
ALTER TABLE threads ALTER COLUMN status SET DEFAULT 'idle';
-- Keyset pages, newest activity first (the thread id breaks ties).
CREATE INDEX threads_user_page_idx ON threads (user_id, updated_at DESC, thread_id DESC);
CREATE INDEX threads_page_idx ON threads (updated_at DESC, thread_id DESC);
DROP INDEX threads_user_idx;

-- The inbox: keyset pages by (due_at, review_id) per assignee (one index range per role of the
-- reviewer, merged), and the true count from the same index: a small partial index for the
-- pending cases (an index-only count, ~2 ms for 10,000), the full one for decided cases. The
-- sweeper takes the pending cases due first across assignees.
CREATE INDEX reviews_pending_page_idx ON reviews (assignee, due_at, review_id) WHERE status = 'pending';
CREATE INDEX reviews_page_idx ON reviews (status, assignee, due_at, review_id);
CREATE INDEX reviews_pending_due_idx ON reviews (due_at) WHERE status = 'pending';
DROP INDEX reviews_inbox_idx;
