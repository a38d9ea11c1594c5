-- Flow runs paused for input: what input the run waits for (a JSON schema), until when, and
-- once resumed, by whom and with what. A run may pause again after a resume; at most one of
-- its pauses is open at a time, which the resume claims with one conditional UPDATE.
CREATE TABLE run_pauses (
    id          uuid PRIMARY KEY,
    run_id      uuid NOT NULL,
    schema      jsonb,
    requested   timestamptz NOT NULL,
    deadline    timestamptz NOT NULL,
    resumed     timestamptz,
    resumed_by  text,
    input       jsonb
);
CREATE INDEX run_pauses_run ON run_pauses (run_id, requested);
