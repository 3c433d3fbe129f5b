-- sipd's location service in PostgreSQL: Kamailio 5.6 usrloc's `location` table (its columns and
-- defaults, so Kamailio's tools can read it), plus what sipd needs: the node that holds the
-- binding's connection, the flow token of that connection (RFC 5626), and the identity the
-- TLS-PSK handshake proved. One row per (username, domain, contact): the upsert key that lets
-- RFC 3261 §10.3's CSeq rule run in SQL.
CREATE TABLE IF NOT EXISTS location (
    id SERIAL PRIMARY KEY NOT NULL,
    ruid VARCHAR(64) DEFAULT '' NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT NULL,
    contact VARCHAR(512) DEFAULT '' NOT NULL,
    received VARCHAR(128) DEFAULT NULL,
    path VARCHAR(512) DEFAULT NULL,
    expires TIMESTAMP WITHOUT TIME ZONE DEFAULT '2030-05-28 21:32:15' NOT NULL,
    q REAL DEFAULT 1.0 NOT NULL,
    callid VARCHAR(255) DEFAULT 'Default-Call-ID' NOT NULL,
    cseq INTEGER DEFAULT 1 NOT NULL,
    last_modified TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:01' NOT NULL,
    flags INTEGER DEFAULT 0 NOT NULL,
    cflags INTEGER DEFAULT 0 NOT NULL,
    user_agent VARCHAR(255) DEFAULT '' NOT NULL,
    socket VARCHAR(64) DEFAULT NULL,
    methods INTEGER DEFAULT NULL,
    instance VARCHAR(255) DEFAULT NULL,
    reg_id INTEGER DEFAULT 0 NOT NULL,
    server_id INTEGER DEFAULT 0 NOT NULL,
    connection_id INTEGER DEFAULT 0 NOT NULL,
    keepalive INTEGER DEFAULT 0 NOT NULL,
    partition INTEGER DEFAULT 0 NOT NULL,
    node_id VARCHAR(64) DEFAULT '' NOT NULL,
    flow_token VARCHAR(64) DEFAULT NULL,
    identity VARCHAR(128) DEFAULT NULL,
    CONSTRAINT location_ruid_idx UNIQUE (ruid),
    CONSTRAINT location_account_contact_idx UNIQUE (username, domain, contact)
);

CREATE INDEX IF NOT EXISTS location_expires_idx ON location (expires);
CREATE INDEX IF NOT EXISTS location_node_idx ON location (node_id);
