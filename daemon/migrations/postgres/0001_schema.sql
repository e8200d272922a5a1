-- The PostgreSQL schema: the tables of the SQLite migrations (daemon/migrations/sqlite), as they
-- stand after them. Ids, keys and tag values compare bytewise (COLLATE "C"): the order results
-- are served in (created_at DESC, id ASC) is then the same on both backends, and the indexes do
-- not pay for a locale's rules.
CREATE TABLE events (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,   -- 64 lowercase hex
    pubkey TEXT COLLATE "C" NOT NULL,           -- 64 lowercase hex
    created_at BIGINT NOT NULL,                 -- unix seconds
    kind BIGINT NOT NULL,
    -- Address of replaceable ('') and addressable (the 'd' tag) events; NULL for regular events.
    d_tag TEXT COLLATE "C",
    json TEXT NOT NULL                          -- the event as received
);
CREATE INDEX events_by_time ON events (created_at DESC, id);
CREATE INDEX events_by_author ON events (pubkey, created_at DESC, id);
CREATE INDEX events_by_kind ON events (kind, created_at DESC, id);
CREATE UNIQUE INDEX events_by_address ON events (kind, pubkey, d_tag) WHERE d_tag IS NOT NULL;

CREATE TABLE event_tags (
    event_id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX event_tags_by_value ON event_tags (name, value, created_at DESC, event_id);

CREATE TABLE deleted_events (
    event_id TEXT COLLATE "C" NOT NULL,
    pubkey TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (event_id, pubkey)
);

CREATE TABLE deleted_addresses (
    kind BIGINT NOT NULL,
    pubkey TEXT COLLATE "C" NOT NULL,
    d_tag TEXT COLLATE "C" NOT NULL,
    until BIGINT NOT NULL,
    PRIMARY KEY (kind, pubkey, d_tag)
);

CREATE TABLE purgatory (
    event_id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    kind BIGINT NOT NULL,
    pubkey TEXT COLLATE "C" NOT NULL,
    identifier TEXT COLLATE "C" NOT NULL,
    json TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX purgatory_by_identifier ON purgatory (identifier);

CREATE TABLE placeholders (
    event_id TEXT COLLATE "C" NOT NULL,
    area TEXT COLLATE "C" NOT NULL DEFAULT '',
    owner TEXT COLLATE "C" NOT NULL,
    identifier TEXT COLLATE "C" NOT NULL,
    tip TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (event_id, area, owner, identifier)
);
