-- Local users of the UI (argon2 password hashes) and their login sessions (SHA-256 of the
-- session token, so a copy of the database holds no usable session).
CREATE TABLE users (
    id       uuid PRIMARY KEY,
    name     text NOT NULL UNIQUE,
    password text NOT NULL,
    role     text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    created  timestamptz NOT NULL
);
CREATE TABLE sessions (
    hash     text PRIMARY KEY,
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created  timestamptz NOT NULL,
    expires  timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
