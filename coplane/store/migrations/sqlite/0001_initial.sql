-- Events are append-only; derived tables are folded from them in the same transaction.
-- Times are UTC ISO text (UTCTIME), ids UUID text, JSON as text: see store/dialects.py.

CREATE TABLE events (
    id          UUID PRIMARY KEY,
    occurred    UTCTIME NOT NULL,
    received    UTCTIME NOT NULL,
    event       TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource    JSON NOT NULL,
    related     JSON NOT NULL,
    payload     JSON NOT NULL,
    run_id      UUID
);
CREATE INDEX events_occurred ON events (occurred DESC, id DESC);
CREATE INDEX events_resource ON events (resource_id, occurred DESC);
CREATE INDEX events_run ON events (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE runs (
    id            UUID PRIMARY KEY,
    pipeline      TEXT NOT NULL,
    run_key       TEXT NOT NULL,
    source        TEXT NOT NULL,
    state         TEXT,
    state_rank    INTEGER NOT NULL,
    state_at      UTCTIME,
    error         TEXT,
    scheduled     UTCTIME,
    started       UTCTIME,
    ended         UTCTIME,
    parent_run    UUID,
    nominal_start UTCTIME,
    first_seen    UTCTIME NOT NULL,
    sort_at       UTCTIME GENERATED ALWAYS AS (COALESCE(started, scheduled, first_seen)) STORED
);
CREATE INDEX runs_pipeline ON runs (pipeline, sort_at DESC, id DESC);
CREATE INDEX runs_sort ON runs (sort_at DESC, id DESC);
CREATE INDEX runs_parent ON runs (parent_run) WHERE parent_run IS NOT NULL;

CREATE TABLE resources (
    id         TEXT PRIMARY KEY,
    kind       TEXT,
    name       TEXT,
    labels     JSON NOT NULL,
    source     TEXT NOT NULL,
    parent     TEXT,
    first_seen UTCTIME NOT NULL,
    last_seen  UTCTIME NOT NULL
);
CREATE INDEX resources_kind ON resources (kind, id);
CREATE INDEX resources_parent ON resources (parent) WHERE parent IS NOT NULL;

CREATE TABLE assets (
    id       TEXT PRIMARY KEY,
    updated  UTCTIME NOT NULL,
    producer TEXT,
    run_id   UUID,
    event_id UUID NOT NULL
);

CREATE TABLE checks (
    asset      TEXT NOT NULL,
    check_name TEXT NOT NULL,
    passed     BOOL NOT NULL,
    at         UTCTIME NOT NULL,
    message    TEXT,
    event_id   UUID NOT NULL,
    PRIMARY KEY (asset, check_name)
);

CREATE TABLE lineage_edges (
    source     TEXT NOT NULL,
    target     TEXT NOT NULL,
    first_seen UTCTIME NOT NULL,
    last_seen  UTCTIME NOT NULL,
    PRIMARY KEY (source, target)
);
CREATE INDEX lineage_edges_target ON lineage_edges (target, source);
