-- Automations (as declared), their firings (unique per automation and firing key, so that
-- servers deciding alike fire once), the decision each matching event got (what the
-- explain page shows), and how far the automation pass has read.
CREATE TABLE automations (
    name       text PRIMARY KEY,
    definition jsonb NOT NULL,
    origin     text NOT NULL,
    created    timestamptz NOT NULL,
    updated    timestamptz NOT NULL
);

CREATE TABLE automation_firings (
    automation text NOT NULL,
    key        text NOT NULL,
    grp        text NOT NULL,
    event_id   text NOT NULL,
    fired      timestamptz NOT NULL,
    reason     text NOT NULL,
    actions    jsonb NOT NULL,
    PRIMARY KEY (automation, key)
);
CREATE INDEX automation_firings_fired ON automation_firings (automation, grp, fired DESC);

CREATE TABLE automation_decisions (
    automation text NOT NULL,
    event_id   text NOT NULL,
    at         timestamptz NOT NULL,
    event      text NOT NULL,
    resource   text NOT NULL,
    fired      boolean NOT NULL,
    reason     text NOT NULL,
    PRIMARY KEY (automation, event_id)
);
CREATE INDEX automation_decisions_at ON automation_decisions (automation, at DESC);

CREATE TABLE automation_cursor (
    name     text PRIMARY KEY,
    position timestamptz NOT NULL
);

-- the automation pass reads the events received since it last looked
CREATE INDEX events_received ON events (received);
