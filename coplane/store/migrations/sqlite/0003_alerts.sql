-- Alert policy: notifications that were deliberately not sent (skipped by the channel,
-- silenced by a quiet period, inhibited by an upstream incident), the incident an
-- inhibited one is attached to, and channels disabled by a permanent error.
-- SQLite cannot change a CHECK constraint, so notifications is rebuilt.

CREATE TABLE notifications_new (
    id          UUID PRIMARY KEY,
    incident_id UUID NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('trigger', 'resolve', 'repeat')),
    created     UTCTIME NOT NULL,
    due         UTCTIME NOT NULL,
    claimed     UTCTIME,
    sent        UTCTIME,
    attempts    INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed', 'dead', 'skipped', 'silenced', 'inhibited')),
    last_error  TEXT,
    response    JSON
);
INSERT INTO notifications_new SELECT * FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_status_due ON notifications (status, due);
CREATE INDEX notifications_incident ON notifications (incident_id);

ALTER TABLE incidents ADD COLUMN inhibited_by UUID;
CREATE INDEX incidents_inhibited_by ON incidents (inhibited_by) WHERE inhibited_by IS NOT NULL;
-- open incidents by resource: finding the upstream incident a new one is caused by
CREATE INDEX incidents_open_resource ON incidents (resource) WHERE resolved IS NULL;

CREATE TABLE channel_states (
    channel     TEXT PRIMARY KEY,
    config_hash TEXT NOT NULL,
    disabled    UTCTIME,
    last_error  TEXT,
    updated     UTCTIME NOT NULL
);
