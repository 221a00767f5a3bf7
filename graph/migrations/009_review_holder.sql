-- Which process is applying a review decision (host:pid:start, see nodes/guardrails/idempotency.py
-- `this_holder`): a case left 'deciding' by a process that died is returned to the inbox at once
-- on its host, instead of vanishing until the lease (claimed_at) runs out.
ALTER TABLE reviews ADD COLUMN holder text NOT NULL DEFAULT '';
