-- Automations (as declared), their firings (unique per automation and firing key, so that
-- servers deciding alike fire once), the decision each matching event got (what the
-- explain page shows), and how far the automation pass has read.
CREATE TABLE automations (
    name       TEXT PRIMARY KEY,
    definition JSON NOT NULL,
    origin     TEXT NOT NULL,
    created    UTCTIME NOT NULL,
    updated    UTCTIME NOT NULL
);

CREATE TABLE automation_firings (
    automation TEXT NOT NULL,
    key        TEXT NOT NULL,
    grp        TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    fired      UTCTIME NOT NULL,
    reason     TEXT NOT NULL,
    actions    JSON NOT NULL,
    PRIMARY KEY (automation, key)
);
CREATE INDEX automation_firings_fired ON automation_firings (automation, grp, fired DESC);

CREATE TABLE automation_decisions (
    automation TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    at         UTCTIME NOT NULL,
    event      TEXT NOT NULL,
    resource   TEXT NOT NULL,
    fired      BOOL NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (automation, event_id)
);
CREATE INDEX automation_decisions_at ON automation_decisions (automation, at DESC);

CREATE TABLE automation_cursor (
    name     TEXT PRIMARY KEY,
    position UTCTIME NOT NULL
);

-- the automation pass reads the events received since it last looked
CREATE INDEX events_received ON events (received);
