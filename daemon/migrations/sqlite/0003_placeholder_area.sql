-- GRASP-06: placeholders in contributors' pull request repositories (`<git-root>/prs/...`) as well
-- as in owners' repositories. `area` is '' for an owner's repository and 'prs' for a pull request
-- repository; it is part of the key, as the same npub and identifier name one of each.
CREATE TABLE placeholders_with_area (
    event_id TEXT NOT NULL,
    area TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL,                   -- hex public key of the repository's npub
    identifier TEXT NOT NULL,
    tip TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (event_id, area, owner, identifier)
);
INSERT INTO placeholders_with_area (event_id, area, owner, identifier, tip, expires_at_ms)
    SELECT event_id, '', owner, identifier, tip, expires_at_ms FROM placeholders;
DROP TABLE placeholders;
ALTER TABLE placeholders_with_area RENAME TO placeholders;
