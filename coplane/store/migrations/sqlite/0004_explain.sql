-- SLA explain: the evaluations whose result differed from the one before (the latest ones per
-- SLA, pruned by the engine), with the facts the rule used; and the evaluation that opened
-- each incident. No foreign keys: an incident outlives the evaluations pruned after it.

CREATE TABLE sla_evaluations (
    id            UUID PRIMARY KEY,
    sla           TEXT NOT NULL,
    evaluated     UTCTIME NOT NULL,
    status        TEXT NOT NULL,
    next_deadline UTCTIME,
    explanation   TEXT NOT NULL,
    inputs        JSON NOT NULL,
    breaches      JSON NOT NULL
);
CREATE INDEX sla_evaluations_sla ON sla_evaluations (sla, evaluated DESC);

ALTER TABLE incidents ADD COLUMN evaluation_id UUID;
