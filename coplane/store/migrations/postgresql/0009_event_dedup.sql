-- An event is the same event again only when its id, its time and its resource are the same
-- (SQLite's key is the same), so that a producer who learns or guesses another's event id
-- cannot make that event a "duplicate". Partitions take the new key from their parent.

ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (id, occurred, resource_id);
