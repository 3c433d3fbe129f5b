-- A UDP flow token names the NAT's address under an HMAC tag: 45 characters for IPv4 but 69 for
-- IPv6 ('u', 18 address bytes and a 16-byte tag in hex), past the 64 that 0001 allowed, so a
-- NAT'd IPv6 phone's REGISTER failed to write. Room for every token sipd mints, with a margin.
ALTER TABLE location ALTER COLUMN flow_token TYPE VARCHAR(128);
