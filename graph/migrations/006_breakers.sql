-- Circuit breakers shared by every process of the app: one row per guarded tool.
--
-- Changed only inside a transaction holding the row lock, so the window of outcomes, the
-- open state until `open_until` and the single half-open probe (leased until `probe_until`)
-- hold across processes. Times are epoch seconds on the database's clock.
CREATE TABLE circuit_breakers (
    name         text PRIMARY KEY,
    state        text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    outcomes     boolean[] NOT NULL DEFAULT '{}',
    open_until   double precision NOT NULL DEFAULT 0,
    probe_until  double precision NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
