-- The automation `notify` action: one rendered message per firing and action, unique so that
-- an action run again after a crash queues nothing twice, and announced through the alert
-- outbox like incidents and early warnings. Its notifications have a message_id instead of an
-- incident_id or a warning_id, and the new 'notify' action; SQLite cannot change a CHECK
-- constraint, so notifications is rebuilt.

CREATE TABLE automation_messages (
    id         UUID PRIMARY KEY,
    automation TEXT NOT NULL,
    key        TEXT NOT NULL,
    action     INTEGER NOT NULL,
    message    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    event      TEXT NOT NULL,
    resource   TEXT NOT NULL,
    created    UTCTIME NOT NULL,
    UNIQUE (automation, key, action)
);

CREATE TABLE notifications_new (
    id          UUID PRIMARY KEY,
    incident_id UUID REFERENCES incidents (id) ON DELETE CASCADE,
    warning_id  UUID REFERENCES sla_warnings (id) ON DELETE CASCADE,
    message_id  UUID REFERENCES automation_messages (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('trigger', 'resolve', 'repeat', 'warn', 'notify')),
    created     UTCTIME NOT NULL,
    due         UTCTIME NOT NULL,
    claimed     UTCTIME,
    sent        UTCTIME,
    attempts    INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed', 'dead', 'skipped', 'silenced', 'inhibited')),
    last_error  TEXT,
    response    JSON,
    CHECK ((incident_id IS NOT NULL) + (warning_id IS NOT NULL) + (message_id IS NOT NULL) = 1)
);
INSERT INTO notifications_new (id, incident_id, warning_id, channel, action, created, due,
                               claimed, sent, attempts, status, last_error, response)
    SELECT id, incident_id, warning_id, channel, action, created, due,
           claimed, sent, attempts, status, last_error, response FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_status_due ON notifications (status, due);
CREATE INDEX notifications_incident ON notifications (incident_id);
CREATE INDEX notifications_warning ON notifications (warning_id) WHERE warning_id IS NOT NULL;
CREATE INDEX notifications_message ON notifications (message_id) WHERE message_id IS NOT NULL;
