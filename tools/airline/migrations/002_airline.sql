-- Airline domain (τ²-bench data) and the payments ledger (was engine migration 002; see DomainPlugin.adopted_migrations).
-- The τ² records are stored unchanged as jsonb documents; the key columns are copies of ids inside.

CREATE TABLE airline_flights (
    flight_number text PRIMARY KEY,
    doc           jsonb NOT NULL
);

CREATE TABLE airline_users (
    user_id text PRIMARY KEY,
    doc     jsonb NOT NULL
);

CREATE TABLE airline_reservations (
    reservation_id text PRIMARY KEY,
    user_id        text NOT NULL,
    doc            jsonb NOT NULL
);
CREATE INDEX airline_reservations_user_idx ON airline_reservations (user_id);

-- One row per executed charge or refund. Amounts are always positive; `kind` gives the direction.
CREATE TABLE payments_ledger (
    id              bigserial PRIMARY KEY,
    charge_id       text NOT NULL UNIQUE,
    idempotency_key text,
    user_id         text NOT NULL,
    reservation_id  text,
    payment_id      text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('charge', 'refund')),
    amount_usd      numeric(12, 2) NOT NULL CHECK (amount_usd > 0),
    tool            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_ledger_reservation_idx ON payments_ledger (reservation_id);
CREATE INDEX payments_ledger_user_idx ON payments_ledger (user_id);
CREATE INDEX payments_ledger_key_idx ON payments_ledger (idempotency_key);

-- Every write executed with an idempotency key, inserted in the same transaction as the write:
-- the primary key makes a concurrent or retried call with the same key wait, then find the row
-- and return the stored result instead of applying the write again.
CREATE TABLE airline_write_requests (
    idempotency_key text PRIMARY KEY,
    tool            text NOT NULL,
    result          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Domain history: one row per executed write, with the touched document before and after
-- (a reservation; for send_certificate the new certificate). Facts use it, e.g. "this reservation
-- had a delayed flight and was since changed" or "a compensation was already issued".
CREATE TABLE airline_events (
    id              bigserial PRIMARY KEY,
    user_id         text NOT NULL,
    reservation_id  text,
    tool            text NOT NULL,
    idempotency_key text,
    before          jsonb,
    after           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX airline_events_reservation_idx ON airline_events (reservation_id);
CREATE INDEX airline_events_user_idx ON airline_events (user_id);
