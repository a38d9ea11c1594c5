-- Local users of the UI (argon2 password hashes) and their login sessions (SHA-256 of the
-- session token, so a copy of the database holds no usable session).
CREATE TABLE users (
    id       UUID PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    role     TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    created  UTCTIME NOT NULL
);
CREATE TABLE sessions (
    hash     TEXT PRIMARY KEY,
    user_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created  UTCTIME NOT NULL,
    expires  UTCTIME NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
