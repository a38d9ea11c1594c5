-- SLA definitions and their latest evaluation; incidents (at most one open per breach key)
-- and the alert outbox, written in the same transaction as the incidents it announces.

CREATE TABLE slas (
    name       text PRIMARY KEY,
    definition jsonb NOT NULL,
    origin     text NOT NULL CHECK (origin IN ('file', 'api')),
    created    timestamptz NOT NULL,
    updated    timestamptz NOT NULL
);

CREATE TABLE sla_states (
    sla           text PRIMARY KEY REFERENCES slas (name) ON DELETE CASCADE,
    status        text NOT NULL,
    next_deadline timestamptz,
    last_met      timestamptz,
    evaluated     timestamptz NOT NULL,
    explanation   text NOT NULL
);

CREATE TABLE incidents (
    id           uuid PRIMARY KEY,
    sla          text NOT NULL,
    key          text NOT NULL,
    severity     text NOT NULL,
    reason       text NOT NULL,
    resource     text,
    due          timestamptz NOT NULL,
    window_start timestamptz,
    affected     jsonb NOT NULL,
    opened       timestamptz NOT NULL,
    acked        timestamptz,
    resolved     timestamptz
);
CREATE UNIQUE INDEX incidents_open_key ON incidents (sla, key) WHERE resolved IS NULL;
CREATE INDEX incidents_sla ON incidents (sla, opened DESC);
CREATE INDEX incidents_resolved ON incidents (resolved);

CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    channel     text NOT NULL,
    action      text NOT NULL CHECK (action IN ('trigger', 'resolve', 'repeat')),
    created     timestamptz NOT NULL,
    due         timestamptz NOT NULL,
    claimed     timestamptz,
    sent        timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    status      text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed', 'dead')),
    last_error  text,
    response    jsonb
);
CREATE INDEX notifications_status_due ON notifications (status, due);
CREATE INDEX notifications_incident ON notifications (incident_id);
