-- Number ownership (issue 13): who may claim which number.

-- Numbers handed out by the `assigned` verifier: the number is the primary key and the receipt
-- unique, so a number is handed out once, ever, and a retried receipt finds its own number.
CREATE TABLE number_assignment (
    phone       TEXT PRIMARY KEY,
    receipt_id  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- One-time codes of the `sms_code` verifier, one per (number, onboarding binding). Only an
-- HMAC of the code is stored; `used_at` makes it single-use, `attempts` counts wrong tries.
CREATE TABLE number_code (
    phone       TEXT NOT NULL,
    binding     TEXT NOT NULL,
    code_mac    TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (phone, binding)
);

-- Codes sent in the last hour, for the per-number and per-address limits (client_ip is the
-- address the server observed). A request reserves its row before counting, so concurrent
-- requests cannot exceed a limit; the row goes again if the limit or the SMS centre refuses.
CREATE TABLE code_sent (
    id          TEXT PRIMARY KEY,
    phone       TEXT NOT NULL,
    client_ip   TEXT NOT NULL,
    sent_at     BIGINT NOT NULL
);

CREATE INDEX code_sent_phone_idx ON code_sent (phone, sent_at);
CREATE INDEX code_sent_ip_idx ON code_sent (client_ip, sent_at);
