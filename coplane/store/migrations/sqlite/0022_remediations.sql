-- One row per incident of an SLA whose `remediate` names a deployment: the run started for
-- it (or why none was). The incident is the key, so replicas and restarts start one run.
CREATE TABLE remediations (
    incident_id UUID PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    sla         TEXT NOT NULL,
    deployment  TEXT NOT NULL,
    run_id      UUID,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    created     UTCTIME NOT NULL,
    updated     UTCTIME NOT NULL
);
CREATE INDEX remediations_sla ON remediations (sla, created DESC);
CREATE INDEX remediations_run ON remediations (run_id) WHERE run_id IS NOT NULL;
