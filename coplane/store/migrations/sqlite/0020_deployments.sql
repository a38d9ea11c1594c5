-- Deployments (a flow entrypoint with defaults, a pool and where its code is), their flow
-- runs (the orchestration state a worker claims and moves on; the observed run is the `runs`
-- row of the same id) and the workers that heartbeat while they run them.
CREATE TABLE deployments (
    name              TEXT PRIMARY KEY,
    entrypoint        TEXT NOT NULL,
    flow              TEXT NOT NULL,
    parameters        JSON NOT NULL,
    signature         JSON NOT NULL,
    tags              JSON NOT NULL,
    work_pool         TEXT NOT NULL,
    concurrency_limit INTEGER,
    retries           INTEGER NOT NULL,
    working_dir       TEXT,
    git_url           TEXT,
    git_ref           TEXT,
    env               JSON NOT NULL,
    infrastructure    TEXT NOT NULL,
    origin            TEXT NOT NULL,
    created           UTCTIME NOT NULL,
    updated           UTCTIME NOT NULL
);

CREATE TABLE flow_runs (
    id               UUID PRIMARY KEY,
    flow             TEXT NOT NULL,
    run_key          TEXT NOT NULL,
    deployment       TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    work_pool        TEXT NOT NULL,
    state            TEXT NOT NULL,
    parameters       JSON NOT NULL,
    related          JSON NOT NULL,
    due              UTCTIME NOT NULL,
    -- one run per (deployment, scheduled time) or per incident: replicas and restarts that
    -- create the same run again hit this key instead of making a second one
    idempotency_key  TEXT UNIQUE,
    attempt          INTEGER NOT NULL,
    retry_of         UUID,
    worker           TEXT,
    claimed          UTCTIME,
    started          UTCTIME,
    ended            UTCTIME,
    heartbeat        UTCTIME,
    cancel_requested UTCTIME,
    error            TEXT,
    created          UTCTIME NOT NULL
);
CREATE INDEX flow_runs_due ON flow_runs (work_pool, state, due);
CREATE INDEX flow_runs_deployment ON flow_runs (deployment, created DESC);

CREATE TABLE workers (
    id        TEXT PRIMARY KEY,
    pool      TEXT NOT NULL,
    hostname  TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    started   UTCTIME NOT NULL,
    heartbeat UTCTIME NOT NULL,
    stopped   UTCTIME
);
CREATE INDEX workers_pool ON workers (pool, heartbeat DESC);
