-- SLA definitions and their latest evaluation; incidents (at most one open per breach key)
-- and the alert outbox, written in the same transaction as the incidents it announces.

CREATE TABLE slas (
    name       TEXT PRIMARY KEY,
    definition JSON NOT NULL,
    origin     TEXT NOT NULL CHECK (origin IN ('file', 'api')),
    created    UTCTIME NOT NULL,
    updated    UTCTIME NOT NULL
);

CREATE TABLE sla_states (
    sla           TEXT PRIMARY KEY REFERENCES slas (name) ON DELETE CASCADE,
    status        TEXT NOT NULL,
    next_deadline UTCTIME,
    last_met      UTCTIME,
    evaluated     UTCTIME NOT NULL,
    explanation   TEXT NOT NULL
);

CREATE TABLE incidents (
    id           UUID PRIMARY KEY,
    sla          TEXT NOT NULL,
    key          TEXT NOT NULL,
    severity     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    resource     TEXT,
    due          UTCTIME NOT NULL,
    window_start UTCTIME,
    affected     JSON NOT NULL,
    opened       UTCTIME NOT NULL,
    acked        UTCTIME,
    resolved     UTCTIME
);
CREATE UNIQUE INDEX incidents_open_key ON incidents (sla, key) WHERE resolved IS NULL;
CREATE INDEX incidents_sla ON incidents (sla, opened DESC);
CREATE INDEX incidents_resolved ON incidents (resolved);

CREATE TABLE notifications (
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
        CHECK (status IN ('pending', 'sent', 'failed', 'dead')),
    last_error  TEXT,
    response    JSON
);
CREATE INDEX notifications_status_due ON notifications (status, due);
CREATE INDEX notifications_incident ON notifications (incident_id);
