-- An approval request that arrived while the chain node was unreachable is recorded here, so the
-- worker finishes it with back-off without the phone asking again.
ALTER TABLE onboarding ADD COLUMN approve_requested_at BIGINT;
-- The machine-readable code of `last_error` (`chain_unavailable`, `pending_entry_missing`, ...).
ALTER TABLE onboarding ADD COLUMN last_error_code TEXT;
