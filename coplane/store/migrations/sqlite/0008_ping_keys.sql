-- Ping keys: one per monitor slug, carried in the ping URL; only a SHA-256 of each is kept,
-- with the prefix shown after creation. Rotating a key replaces its row.
CREATE TABLE ping_keys (
    id       UUID PRIMARY KEY,
    slug     TEXT NOT NULL UNIQUE,
    prefix   TEXT NOT NULL,
    hash     TEXT NOT NULL UNIQUE,
    created  UTCTIME NOT NULL
);
