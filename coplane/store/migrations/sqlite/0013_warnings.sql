-- Early warnings: one per SLA and deadline window its forecast said would be missed, kept
-- apart from incidents so that they never count against compliance or the error budget.
-- A warning's notifications have a warning_id instead of an incident_id, and the new 'warn'
-- action; SQLite cannot change a CHECK constraint or drop NOT NULL, so notifications is rebuilt.

CREATE TABLE sla_warnings (
    id          UUID PRIMARY KEY,
    sla         TEXT NOT NULL,
    key         TEXT NOT NULL,
    reason      TEXT NOT NULL,
    resource    TEXT,
    due         UTCTIME NOT NULL,
    opened      UTCTIME NOT NULL,
    resolved    UTCTIME,
    outcome     TEXT CHECK (outcome IN ('met', 'breached')),
    incident_id UUID REFERENCES incidents (id) ON DELETE SET NULL,
    UNIQUE (sla, key)
);
CREATE INDEX sla_warnings_open ON sla_warnings (sla) WHERE resolved IS NULL;
CREATE INDEX sla_warnings_incident ON sla_warnings (incident_id) WHERE incident_id IS NOT NULL;

CREATE TABLE notifications_new (
    id          UUID PRIMARY KEY,
    incident_id UUID REFERENCES incidents (id) ON DELETE CASCADE,
    warning_id  UUID REFERENCES sla_warnings (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('trigger', 'resolve', 'repeat', 'warn')),
    created     UTCTIME NOT NULL,
    due         UTCTIME NOT NULL,
    claimed     UTCTIME,
    sent        UTCTIME,
    attempts    INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed', 'dead', 'skipped', 'silenced', 'inhibited')),
    last_error  TEXT,
    response    JSON,
    CHECK ((incident_id IS NULL) <> (warning_id IS NULL))
);
INSERT INTO notifications_new (id, incident_id, channel, action, created, due, claimed, sent,
                               attempts, status, last_error, response)
    SELECT id, incident_id, channel, action, created, due, claimed, sent,
           attempts, status, last_error, response FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_status_due ON notifications (status, due);
CREATE INDEX notifications_incident ON notifications (incident_id);
CREATE INDEX notifications_warning ON notifications (warning_id) WHERE warning_id IS NOT NULL;
