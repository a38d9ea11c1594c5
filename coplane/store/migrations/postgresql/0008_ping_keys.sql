-- Ping keys: one per monitor slug, carried in the ping URL; only a SHA-256 of each is kept,
-- with the prefix shown after creation. Rotating a key replaces its row.
CREATE TABLE ping_keys (
    id       uuid PRIMARY KEY,
    slug     text NOT NULL UNIQUE,
    prefix   text NOT NULL,
    hash     text NOT NULL UNIQUE,
    created  timestamptz NOT NULL
);
