-- Alert policy: notifications that were deliberately not sent (skipped by the channel,
-- silenced by a quiet period, inhibited by an upstream incident), the incident an
-- inhibited one is attached to, and channels disabled by a permanent error.

ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'sent', 'failed', 'dead', 'skipped', 'silenced', 'inhibited'));
ALTER TABLE notifications DROP CONSTRAINT notifications_action_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_action_check
    CHECK (action IN ('trigger', 'resolve', 'repeat'));

ALTER TABLE incidents ADD COLUMN inhibited_by uuid;
CREATE INDEX incidents_inhibited_by ON incidents (inhibited_by) WHERE inhibited_by IS NOT NULL;
-- open incidents by resource: finding the upstream incident a new one is caused by
CREATE INDEX incidents_open_resource ON incidents (resource) WHERE resolved IS NULL;

CREATE TABLE channel_states (
    channel     text PRIMARY KEY,
    config_hash text NOT NULL,
    disabled    timestamptz,
    last_error  text,
    updated     timestamptz NOT NULL
);
