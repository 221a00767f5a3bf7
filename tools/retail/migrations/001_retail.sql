-- Retail domain (τ²-bench retail data): catalogue, customers, payment methods, orders,
-- the refund/payment ledger, idempotent write requests and the write history.
-- Applied by tools/retail/loader.py (domain migrations, tracked in domain_migrations).
-- Amounts are numeric(12, 2) (cents, never floats); τ² documents are kept as jsonb where no
-- rule needs a column, and the columns a rule needs are the single source of their value.

-- Products: one row per product type; its variants ("items") are rows of retail_items.
CREATE TABLE retail_products (
    product_id text PRIMARY KEY,
    name       text NOT NULL,
    position   integer NOT NULL
);

CREATE TABLE retail_items (
    item_id    text PRIMARY KEY,
    product_id text NOT NULL REFERENCES retail_products (product_id),
    options    jsonb NOT NULL,
    available  boolean NOT NULL,
    price      numeric(12, 2) NOT NULL CHECK (price >= 0),
    position   integer NOT NULL
);
CREATE INDEX retail_items_product_idx ON retail_items (product_id);

-- Customers: the τ² user document without its payment methods (name, address, e-mail, order ids).
CREATE TABLE retail_users (
    user_id text PRIMARY KEY,
    email   text NOT NULL,
    doc     jsonb NOT NULL
);
CREATE INDEX retail_users_email_idx ON retail_users (lower(email));
CREATE INDEX retail_users_zip_idx ON retail_users ((doc->'address'->>'zip'));

-- Payment methods: gift card balances are a column, changed only inside a locked write.
CREATE TABLE retail_payment_methods (
    payment_method_id text PRIMARY KEY,
    user_id           text NOT NULL REFERENCES retail_users (user_id),
    source            text NOT NULL CHECK (source IN ('credit_card', 'gift_card', 'paypal')),
    balance           numeric(12, 2) CHECK (balance IS NULL OR balance >= 0),
    details           jsonb NOT NULL DEFAULT '{}'::jsonb,  -- brand, last_four (cards)
    position          integer NOT NULL,
    CHECK ((source = 'gift_card') = (balance IS NOT NULL))
);
CREATE INDEX retail_payment_methods_user_idx ON retail_payment_methods (user_id);

-- Orders: the τ² order document; status and owner are read from it (one source of truth).
CREATE TABLE retail_orders (
    order_id text PRIMARY KEY,
    doc      jsonb NOT NULL,
    user_id  text GENERATED ALWAYS AS (doc->>'user_id') STORED,
    status   text GENERATED ALWAYS AS (doc->>'status') STORED
);
CREATE INDEX retail_orders_user_idx ON retail_orders (user_id);

-- One row per money movement a write decided: a charge to, or a refund to, one payment method.
-- `settles` says when it reaches the customer (a gift card at once; cards and PayPal in 5-7
-- business days; a return's refund once the items are received).
CREATE TABLE retail_ledger (
    id                bigserial PRIMARY KEY,
    entry_id          text NOT NULL UNIQUE,
    idempotency_key   text,
    conversation_id   text,
    user_id           text NOT NULL,
    order_id          text NOT NULL,
    payment_method_id text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('charge', 'refund')),
    amount_usd        numeric(12, 2) NOT NULL CHECK (amount_usd > 0),
    settles           text NOT NULL CHECK (settles IN ('immediately', 'in 5-7 business days',
                                                       'when the items are received')),
    tool              text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retail_ledger_user_idx ON retail_ledger (user_id, created_at);
CREATE INDEX retail_ledger_order_idx ON retail_ledger (order_id);
CREATE INDEX retail_ledger_key_idx ON retail_ledger (idempotency_key);

-- Every write executed with an idempotency key, claimed in the write's own transaction (as the
-- airline's airline_write_requests): a retry with the key returns the stored result.
CREATE TABLE retail_write_requests (
    idempotency_key text PRIMARY KEY,
    tool            text NOT NULL,
    result          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per executed write, with the changed record before and after. Its ids version the
-- state a decision was made on (state_version) and facts count returns and exchanges from it.
CREATE TABLE retail_events (
    id              bigserial PRIMARY KEY,
    user_id         text NOT NULL,
    order_id        text,
    tool            text NOT NULL,
    idempotency_key text,
    conversation_id text,
    before          jsonb,
    after           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retail_events_order_idx ON retail_events (order_id);
CREATE INDEX retail_events_user_idx ON retail_events (user_id, created_at);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'airlock_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON retail_products, retail_items, retail_users,
            retail_payment_methods, retail_orders, retail_ledger, retail_write_requests,
            retail_events TO airlock_app;
        GRANT USAGE, SELECT ON SEQUENCE retail_ledger_id_seq, retail_events_id_seq TO airlock_app;
    END IF;
END
$$;
