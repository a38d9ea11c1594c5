-- The automation `notify` action: one rendered message per firing and action, unique so that
-- an action run again after a crash queues nothing twice, and announced through the alert
-- outbox like incidents and early warnings. Its notifications have a message_id instead of an
-- incident_id or a warning_id, and the new 'notify' action.

CREATE TABLE automation_messages (
    id         uuid PRIMARY KEY,
    automation text NOT NULL,
    key        text NOT NULL,
    action     integer NOT NULL,
    message    text NOT NULL,
    event_id   text NOT NULL,
    event      text NOT NULL,
    resource   text NOT NULL,
    created    timestamptz NOT NULL,
    UNIQUE (automation, key, action)
);

ALTER TABLE notifications ADD COLUMN message_id uuid
    REFERENCES automation_messages (id) ON DELETE CASCADE;
ALTER TABLE notifications DROP CONSTRAINT notifications_one_owner;
ALTER TABLE notifications ADD CONSTRAINT notifications_one_owner
    CHECK (num_nonnulls(incident_id, warning_id, message_id) = 1);
ALTER TABLE notifications DROP CONSTRAINT notifications_action_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_action_check
    CHECK (action IN ('trigger', 'resolve', 'repeat', 'warn', 'notify'));
CREATE INDEX notifications_message ON notifications (message_id) WHERE message_id IS NOT NULL;
