-- Several graspd nodes on one database (docs/storage.md, "Several nodes").
-- One counter every write transaction of the event writers moves: a node that finds it moved by
-- someone else drops its cached reads (the address cache) before deciding anything.
CREATE TABLE write_seq (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    n BIGINT NOT NULL
);
INSERT INTO write_seq (one, n) VALUES (TRUE, 0);
-- Live nodes: each writes its row every few seconds; status lists those seen lately.
CREATE TABLE nodes (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    address TEXT NOT NULL,               -- its public listener, as it reports it
    started_at_ms BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL
);
