-- Credentials stored through the API, each a Fernet token (encrypted and authenticated with
-- COPLANE_SECRET_KEY), never the value in clear.
CREATE TABLE secrets (
    name     text PRIMARY KEY,
    value    text NOT NULL,
    created  timestamptz NOT NULL,
    updated  timestamptz NOT NULL
);
