-- A repository's announcements and states from every author, by identifier (`Store::by_identifier`,
-- asked on every push and for every state): without this index the lookup walked every event of
-- the kind (every repository's), ~10,000 rows on a host of 10,000 repositories.
CREATE INDEX events_by_identifier ON events (kind, d_tag) WHERE d_tag IS NOT NULL;
