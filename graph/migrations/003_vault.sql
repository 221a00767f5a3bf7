-- 003_vault: the per-thread PII vault (nodes/guards/vault.py).
--
-- A row maps one placeholder such as <EMAIL_ADDRESS_1> in one conversation thread to the
-- value the user typed. The value is stored only as AES-256-GCM ciphertext (bound to
-- thread, entity type and value_hmac as associated data, so a ciphertext copied to
-- another row does not decrypt). value_hmac is HMAC-SHA256 over (thread, normalised value)
-- with a key derived from the vault key: it lets a writer find "same value -> same
-- placeholder" without decrypting, and it differs per thread so rows cannot be linked
-- across conversations.

CREATE TABLE pii_vault (
    thread_id   text        NOT NULL,
    placeholder text        NOT NULL,
    entity_type text        NOT NULL,
    value_hmac  bytea       NOT NULL,
    ciphertext  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pii_vault_pkey PRIMARY KEY (thread_id, placeholder),
    CONSTRAINT pii_vault_thread_value_key UNIQUE (thread_id, value_hmac),
    CONSTRAINT pii_vault_hmac_length CHECK (octet_length(value_hmac) = 32),
    CONSTRAINT pii_vault_placeholder_format
        CHECK (placeholder ~ '^<[A-Z][A-Z0-9_]*_[0-9]+>$'),
    CONSTRAINT pii_vault_entity_type_format CHECK (entity_type ~ '^[A-Z][A-Z0-9_]*$')
);

-- The INSERT computes the next number per (thread, entity type) from this index.
CREATE INDEX pii_vault_thread_type_idx ON pii_vault (thread_id, entity_type);

COMMENT ON TABLE pii_vault IS
    'Per-thread PII vault: placeholder -> AES-GCM ciphertext of the original value.';

-- One row: a one-way fingerprint of the vault key (HKDF output, not the key), so a process
-- started with a different key refuses to start instead of failing on the first decrypt.
CREATE TABLE pii_vault_key_check (
    id          smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    fingerprint bytea       NOT NULL CHECK (octet_length(fingerprint) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
