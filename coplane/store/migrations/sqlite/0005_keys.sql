-- API keys: only a SHA-256 of each key is kept, with the prefix shown after creation.
CREATE TABLE api_keys (
    id       UUID PRIMARY KEY,
    name     TEXT NOT NULL,
    prefix   TEXT NOT NULL,
    hash     TEXT NOT NULL UNIQUE,
    scopes   JSON NOT NULL,
    created  UTCTIME NOT NULL,
    used     UTCTIME,
    revoked  UTCTIME
);
