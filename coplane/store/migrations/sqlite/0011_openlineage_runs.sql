-- The name each OpenLineage run was given when its first event came: a later event of the
-- same runId may carry fewer facets (Airflow's DAG-run COMPLETE has no run_id), and must
-- still land on that run. Kept like runs: one small row per run.
CREATE TABLE openlineage_runs (
    run_id       TEXT PRIMARY KEY,
    pipeline     TEXT NOT NULL,
    run_key      TEXT NOT NULL,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    first_seen   UTCTIME NOT NULL
);
