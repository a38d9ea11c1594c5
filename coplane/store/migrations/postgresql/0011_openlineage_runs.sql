-- The name each OpenLineage run was given when its first event came: a later event of the
-- same runId may carry fewer facets (Airflow's DAG-run COMPLETE has no run_id), and must
-- still land on that run. Kept like runs: one small row per run.
CREATE TABLE openlineage_runs (
    run_id       text PRIMARY KEY,
    pipeline     text NOT NULL,
    run_key      text NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    first_seen   timestamptz NOT NULL
);
