-- Credentials stored through the API, each a Fernet token (encrypted and authenticated with
-- COPLANE_SECRET_KEY), never the value in clear.
CREATE TABLE secrets (
    name     TEXT PRIMARY KEY,
    value    TEXT NOT NULL,
    created  UTCTIME NOT NULL,
    updated  UTCTIME NOT NULL
);
