-- An event is the same event again only when its id, its time and its resource are the same:
-- the key PostgreSQL has (its partitions need the time in it) plus the resource, so that a
-- producer who learns or guesses another's event id cannot make that event a "duplicate".
-- SQLite cannot change a primary key in place: the table is rebuilt.

CREATE TABLE events_dedup (
    id          UUID NOT NULL,
    occurred    UTCTIME NOT NULL,
    received    UTCTIME NOT NULL,
    event       TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource    JSON NOT NULL,
    related     JSON NOT NULL,
    payload     JSON NOT NULL,
    run_id      UUID,
    PRIMARY KEY (id, occurred, resource_id)
);
INSERT INTO events_dedup
    SELECT id, occurred, received, event, resource_id, resource, related, payload, run_id
    FROM events;
DROP TABLE events;
ALTER TABLE events_dedup RENAME TO events;
CREATE INDEX events_occurred ON events (occurred DESC, id DESC);
CREATE INDEX events_resource ON events (resource_id, occurred DESC);
CREATE INDEX events_run ON events (run_id) WHERE run_id IS NOT NULL;
