-- Fee bumping: every signed version of a server transaction is kept with its bytes, so a
-- replacement (same nonce, higher fees) is recorded before it is broadcast, and whichever version
-- gets mined is found again after a crash.
ALTER TABLE funding_tx ADD COLUMN raw_tx TEXT;

-- The approveClient transaction, recorded (signed bytes and hash) BEFORE it is broadcast, like
-- the funding transaction.
ALTER TABLE onboarding ADD COLUMN approve_nonce BIGINT;
ALTER TABLE onboarding ADD COLUMN approve_raw_tx TEXT;

-- Every approveClient version signed: the audit trail that shows one approval per receipt.
CREATE TABLE approve_tx (
    tx_hash     TEXT PRIMARY KEY,
    receipt_id  TEXT NOT NULL,
    nonce       BIGINT NOT NULL,
    -- signed | replaced | mined | dropped
    status      TEXT NOT NULL,
    raw_tx      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX approve_tx_receipt_idx ON approve_tx (receipt_id);
