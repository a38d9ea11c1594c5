-- Named, typed configuration flows load (`Connection.load(name)`): the fields anyone may read
-- in clear, and the secret fields as one Fernet token of their JSON (COPLANE_SECRET_KEY).
CREATE TABLE connections (
    name      TEXT PRIMARY KEY,
    type      TEXT NOT NULL,
    fields    JSON NOT NULL,
    secrets   TEXT,
    created   UTCTIME NOT NULL,
    updated   UTCTIME NOT NULL
);
