-- Device recovery (issue 14): a provisioned number moved to a new device's wallet and key after
-- the subscriber lost the old one. The onboarding row keeps the receipt and takes the new wallet
-- and key; this table keeps what it had before (the audit trail).

-- One row per accepted recovery request: which wallet the number moved from and to. (The new
-- device's SIP password is derived at a new generation, after the old key is revoked.)
CREATE TABLE recovery (
    receipt_id      TEXT NOT NULL,
    wallet          TEXT NOT NULL,
    old_wallet      TEXT NOT NULL,
    old_key_type    BIGINT NOT NULL,
    old_public_key  TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (receipt_id, wallet)
);

-- The operator's authorisation to recover a number (the `assigned` verifier, where ownership is
-- checked out of band): single use, until `expires_at`.
CREATE TABLE recovery_grant (
    phone       TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
