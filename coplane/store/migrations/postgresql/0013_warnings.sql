-- Early warnings: one per SLA and deadline window its forecast said would be missed, kept
-- apart from incidents so that they never count against compliance or the error budget.
-- A warning's notifications have a warning_id instead of an incident_id, and the new 'warn'
-- action.

CREATE TABLE sla_warnings (
    id          uuid PRIMARY KEY,
    sla         text NOT NULL,
    key         text NOT NULL,
    reason      text NOT NULL,
    resource    text,
    due         timestamptz NOT NULL,
    opened      timestamptz NOT NULL,
    resolved    timestamptz,
    outcome     text CHECK (outcome IN ('met', 'breached')),
    incident_id uuid REFERENCES incidents (id) ON DELETE SET NULL,
    UNIQUE (sla, key)
);
CREATE INDEX sla_warnings_open ON sla_warnings (sla) WHERE resolved IS NULL;
CREATE INDEX sla_warnings_incident ON sla_warnings (incident_id) WHERE incident_id IS NOT NULL;

ALTER TABLE notifications ALTER COLUMN incident_id DROP NOT NULL;
ALTER TABLE notifications ADD COLUMN warning_id uuid REFERENCES sla_warnings (id) ON DELETE CASCADE;
ALTER TABLE notifications ADD CONSTRAINT notifications_one_owner
    CHECK ((incident_id IS NULL) <> (warning_id IS NULL));
ALTER TABLE notifications DROP CONSTRAINT notifications_action_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_action_check
    CHECK (action IN ('trigger', 'resolve', 'repeat', 'warn'));
CREATE INDEX notifications_warning ON notifications (warning_id) WHERE warning_id IS NOT NULL;
