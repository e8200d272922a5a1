-- Pull request refs pushed before their event (GRASP-01 [45]): refs/nostr/<event_id> in one
-- owner's repository at `tip`, waiting (with purgatory's expiry) for the event to arrive.
CREATE TABLE placeholders (
    event_id TEXT NOT NULL,
    owner TEXT NOT NULL,                   -- hex public key of the repository owner
    identifier TEXT NOT NULL,
    tip TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (event_id, owner, identifier)
);
