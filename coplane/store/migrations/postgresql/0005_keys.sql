-- API keys: only a SHA-256 of each key is kept, with the prefix shown after creation.
CREATE TABLE api_keys (
    id       uuid PRIMARY KEY,
    name     text NOT NULL,
    prefix   text NOT NULL,
    hash     text NOT NULL UNIQUE,
    scopes   jsonb NOT NULL,
    created  timestamptz NOT NULL,
    used     timestamptz,
    revoked  timestamptz
);
