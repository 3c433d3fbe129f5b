-- The wallet server's durable state. Portable SQL: the same file runs on SQLite and PostgreSQL
-- (TEXT and BIGINT only; hashes, addresses and raw transactions as lower-case hex).

-- One row per paid receipt, ever: the primary key is the store's orderId and the SHA-256 of the
-- purchase token is unique, so a receipt can never be used twice, whatever state its row is in.
CREATE TABLE onboarding (
    receipt_id      TEXT PRIMARY KEY,
    token_sha256    TEXT NOT NULL UNIQUE,
    receipt_hash    TEXT NOT NULL,
    product_id      TEXT NOT NULL,
    purchase_time   BIGINT NOT NULL,
    phone           TEXT NOT NULL,
    wallet          TEXT NOT NULL,
    key_type        BIGINT NOT NULL,
    public_key      TEXT NOT NULL,
    -- received | funding | funded | pending_seen | approved | provisioned | failed | revoked
    state           TEXT NOT NULL,
    fund_amount     TEXT,
    -- The funding transaction, recorded (signed bytes and hash) BEFORE it is broadcast.
    fund_nonce      BIGINT,
    fund_tx_hash    TEXT,
    fund_raw_tx     TEXT,
    fund_block      BIGINT,
    approve_tx_hash TEXT,
    failure_code    TEXT,
    failure_message TEXT,
    last_error      TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    provisioned_at  BIGINT
);

CREATE INDEX onboarding_state_idx ON onboarding (state, next_attempt_at);
CREATE INDEX onboarding_phone_idx ON onboarding (phone);

-- Every transaction the server wallet signed for funding, kept after it is superseded or mined:
-- the audit trail that shows no receipt was funded twice.
CREATE TABLE funding_tx (
    tx_hash     TEXT PRIMARY KEY,
    receipt_id  TEXT NOT NULL,
    nonce       BIGINT NOT NULL,
    amount      TEXT NOT NULL,
    -- signed | mined | dropped
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX funding_tx_receipt_idx ON funding_tx (receipt_id);

-- Nonces of sealed payloads seen within the replay window.
CREATE TABLE seen_nonce (
    nonce       TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
