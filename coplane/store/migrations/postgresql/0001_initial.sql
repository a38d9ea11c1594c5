-- Events are append-only and partitioned by time; derived tables are folded from them in
-- the same transaction. With TimescaleDB loaded (shared_preload_libraries), events is a
-- hypertable; otherwise weekly native range partitions, created ahead by store/partitions.py.

DO $$
DECLARE
    timescale boolean := current_setting('shared_preload_libraries', true) LIKE '%timescaledb%'
        AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb');
BEGIN
    -- A unique key on a partitioned table (or hypertable) must hold the partition column;
    -- a retried event repeats both, so (id, occurred) still deduplicates retries.
    EXECUTE 'CREATE TABLE events (
            id          uuid NOT NULL,
            occurred    timestamptz NOT NULL,
            received    timestamptz NOT NULL,
            event       text NOT NULL,
            resource_id text NOT NULL,
            resource    jsonb NOT NULL,
            related     jsonb NOT NULL,
            payload     jsonb NOT NULL,
            run_id      uuid,
            related_ids text[] NOT NULL,
            PRIMARY KEY (id, occurred)
        )' || CASE WHEN timescale THEN '' ELSE ' PARTITION BY RANGE (occurred)' END;
    IF timescale THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('events', 'occurred', chunk_time_interval => interval '1 day');
        ALTER TABLE events SET (timescaledb.compress, timescaledb.compress_segmentby = 'resource_id');
        PERFORM add_compression_policy('events', interval '7 days');
    END IF;
END $$;

CREATE INDEX events_occurred ON events (occurred DESC, id DESC);
CREATE INDEX events_resource ON events (resource_id, occurred DESC);
CREATE INDEX events_run ON events (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX events_related ON events USING gin (related_ids);

CREATE TABLE runs (
    id            uuid PRIMARY KEY,
    pipeline      text NOT NULL,
    run_key       text NOT NULL,
    source        text NOT NULL,
    state         text,
    state_rank    integer NOT NULL,
    state_at      timestamptz,
    error         text,
    scheduled     timestamptz,
    started       timestamptz,
    ended         timestamptz,
    parent_run    uuid,
    nominal_start timestamptz,
    first_seen    timestamptz NOT NULL,
    sort_at       timestamptz GENERATED ALWAYS AS (COALESCE(started, scheduled, first_seen)) STORED
);
CREATE INDEX runs_pipeline ON runs (pipeline, sort_at DESC, id DESC);
CREATE INDEX runs_sort ON runs (sort_at DESC, id DESC);
CREATE INDEX runs_parent ON runs (parent_run) WHERE parent_run IS NOT NULL;

CREATE TABLE resources (
    id         text PRIMARY KEY,
    kind       text,
    name       text,
    labels     jsonb NOT NULL,
    source     text NOT NULL,
    parent     text,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);
CREATE INDEX resources_kind ON resources (kind, id);
CREATE INDEX resources_parent ON resources (parent) WHERE parent IS NOT NULL;

CREATE TABLE assets (
    id       text PRIMARY KEY,
    updated  timestamptz NOT NULL,
    producer text,
    run_id   uuid,
    event_id uuid NOT NULL
);

CREATE TABLE checks (
    asset      text NOT NULL,
    check_name text NOT NULL,
    passed     boolean NOT NULL,
    at         timestamptz NOT NULL,
    message    text,
    event_id   uuid NOT NULL,
    PRIMARY KEY (asset, check_name)
);

CREATE TABLE lineage_edges (
    source     text NOT NULL,
    target     text NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (source, target)
);
CREATE INDEX lineage_edges_target ON lineage_edges (target, source);
