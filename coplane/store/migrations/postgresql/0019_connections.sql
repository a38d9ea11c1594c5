-- Named, typed configuration flows load (`Connection.load(name)`): the fields anyone may read
-- in clear, and the secret fields as one Fernet token of their JSON (COPLANE_SECRET_KEY).
CREATE TABLE connections (
    name      text PRIMARY KEY,
    type      text NOT NULL,
    fields    jsonb NOT NULL,
    secrets   text,
    created   timestamptz NOT NULL,
    updated   timestamptz NOT NULL
);
