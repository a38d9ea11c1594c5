-- Flow runs paused for input: what input the run waits for (a JSON schema), until when, and
-- once resumed, by whom and with what. A run may pause again after a resume; at most one of
-- its pauses is open at a time, which the resume claims with one conditional UPDATE.
CREATE TABLE run_pauses (
    id          UUID PRIMARY KEY,
    run_id      UUID NOT NULL,
    schema      JSON,
    requested   UTCTIME NOT NULL,
    deadline    UTCTIME NOT NULL,
    resumed     UTCTIME,
    resumed_by  TEXT,
    input       JSON
);
CREATE INDEX run_pauses_run ON run_pauses (run_id, requested);
