-- Events served by the relay. Written in the SQL both SQLite and PostgreSQL understand.
CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,          -- 64 lowercase hex
    pubkey TEXT NOT NULL,                  -- 64 lowercase hex
    created_at BIGINT NOT NULL,            -- unix seconds
    kind BIGINT NOT NULL,
    -- Address of replaceable ('' ) and addressable (the 'd' tag) events; NULL for regular events.
    d_tag TEXT,
    json TEXT NOT NULL                     -- the event as received
);
-- Every index ends in (created_at DESC, id): the order REQ results are served in, so a `limit`
-- stops the scan early instead of sorting every match.
CREATE INDEX events_by_time ON events (created_at DESC, id);
CREATE INDEX events_by_author ON events (pubkey, created_at DESC, id);
CREATE INDEX events_by_kind ON events (kind, created_at DESC, id);
-- Only the newest event per address is kept.
CREATE UNIQUE INDEX events_by_address ON events (kind, pubkey, d_tag) WHERE d_tag IS NOT NULL;

-- Single-letter tags (NIP-01 '#x' filters): first value of each. Rows are appended in arrival
-- order; the one index serves filters and, with the event's own tags, deletion. Rows are removed
-- together with their event by the store (no foreign key: one lookup less per insert).
CREATE TABLE event_tags (
    event_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX event_tags_by_value ON event_tags (name, value, created_at DESC, event_id);

-- NIP-09: ids deleted by their author; the event is refused if it (re)arrives.
-- Keyed by (event_id, pubkey): a stranger's deletion of an id must not shadow the author's.
CREATE TABLE deleted_events (
    event_id TEXT NOT NULL,
    pubkey TEXT NOT NULL,
    PRIMARY KEY (event_id, pubkey)
);

-- NIP-09 'a' deletions: events at this address up to 'until' are deleted.
CREATE TABLE deleted_addresses (
    kind BIGINT NOT NULL,
    pubkey TEXT NOT NULL,
    d_tag TEXT NOT NULL,
    until BIGINT NOT NULL,
    PRIMARY KEY (kind, pubkey, d_tag)
);

-- Accepted events that wait for their git data (see docs/explanation/purgatory.md).
CREATE TABLE purgatory (
    event_id TEXT PRIMARY KEY NOT NULL,
    kind BIGINT NOT NULL,
    pubkey TEXT NOT NULL,
    identifier TEXT NOT NULL,
    json TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,        -- unix milliseconds
    expires_at_ms BIGINT NOT NULL,         -- unix milliseconds
    source TEXT NOT NULL                   -- 'user' or 'sync'
);
CREATE INDEX purgatory_by_identifier ON purgatory (identifier);
