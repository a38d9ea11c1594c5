-- Deployments (a flow entrypoint with defaults, a pool and where its code is), their flow
-- runs (the orchestration state a worker claims and moves on; the observed run is the `runs`
-- row of the same id) and the workers that heartbeat while they run them.
CREATE TABLE deployments (
    name              text PRIMARY KEY,
    entrypoint        text NOT NULL,
    flow              text NOT NULL,
    parameters        jsonb NOT NULL,
    signature         jsonb NOT NULL,
    tags              jsonb NOT NULL,
    work_pool         text NOT NULL,
    concurrency_limit integer,
    retries           integer NOT NULL,
    working_dir       text,
    git_url           text,
    git_ref           text,
    env               jsonb NOT NULL,
    infrastructure    text NOT NULL,
    origin            text NOT NULL,
    created           timestamptz NOT NULL,
    updated           timestamptz NOT NULL
);

CREATE TABLE flow_runs (
    id               uuid PRIMARY KEY,
    flow             text NOT NULL,
    run_key          text NOT NULL,
    deployment       text NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    work_pool        text NOT NULL,
    state            text NOT NULL,
    parameters       jsonb NOT NULL,
    related          jsonb NOT NULL,
    due              timestamptz NOT NULL,
    -- one run per (deployment, scheduled time) or per incident: replicas and restarts that
    -- create the same run again hit this key instead of making a second one
    idempotency_key  text UNIQUE,
    attempt          integer NOT NULL,
    retry_of         uuid,
    worker           text,
    claimed          timestamptz,
    started          timestamptz,
    ended            timestamptz,
    heartbeat        timestamptz,
    cancel_requested timestamptz,
    error            text,
    created          timestamptz NOT NULL
);
CREATE INDEX flow_runs_due ON flow_runs (work_pool, state, due);
CREATE INDEX flow_runs_deployment ON flow_runs (deployment, created DESC);

CREATE TABLE workers (
    id        text PRIMARY KEY,
    pool      text NOT NULL,
    hostname  text NOT NULL,
    pid       integer NOT NULL,
    started   timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL,
    stopped   timestamptz
);
CREATE INDEX workers_pool ON workers (pool, heartbeat DESC);
