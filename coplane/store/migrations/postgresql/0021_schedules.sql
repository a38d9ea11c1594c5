-- A deployment's schedules (cron in an IANA zone, or an interval from an anchor), and which
-- schedule made each flow run. A schedule's id is derived from what it says, so redeploying
-- the same schedule keeps its id, its paused state and the runs it has made.
CREATE TABLE schedules (
    id         uuid PRIMARY KEY,
    deployment text NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    cron       text,
    timezone   text NOT NULL,
    interval_s double precision,
    anchor     timestamptz NOT NULL,
    paused     boolean NOT NULL,
    updated    timestamptz NOT NULL
);
CREATE INDEX schedules_deployment ON schedules (deployment);

ALTER TABLE flow_runs ADD COLUMN schedule_id uuid;
CREATE INDEX flow_runs_schedule ON flow_runs (schedule_id, due) WHERE schedule_id IS NOT NULL;
