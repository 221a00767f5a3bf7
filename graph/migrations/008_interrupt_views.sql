-- Typed consent only for what the customer saw.
--
-- A typed "yes" (or a typed answer to a question) counts only when the interrupt's own
-- message, rendered by code from its payload, is the last thing the customer was shown.
-- When the model wrote text in the turn that raised the interrupt, the service shows the
-- interrupt's message again (in a notice) and records it here; only then is a typed reply
-- accepted. Nothing can be appended to the thread while the interrupt is pending, so a
-- row stays valid for exactly that interrupt.
CREATE TABLE interrupt_views (
    thread_id     text NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    interrupt_id  text NOT NULL,
    user_id       text NOT NULL,
    shown_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, interrupt_id)
);
