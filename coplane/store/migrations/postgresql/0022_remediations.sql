-- One row per incident of an SLA whose `remediate` names a deployment: the run started for
-- it (or why none was). The incident is the key, so replicas and restarts start one run.
CREATE TABLE remediations (
    incident_id uuid PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    sla         text NOT NULL,
    deployment  text NOT NULL,
    run_id      uuid,
    outcome     text NOT NULL,
    detail      text NOT NULL,
    created     timestamptz NOT NULL,
    updated     timestamptz NOT NULL
);
CREATE INDEX remediations_sla ON remediations (sla, created DESC);
CREATE INDEX remediations_run ON remediations (run_id) WHERE run_id IS NOT NULL;
