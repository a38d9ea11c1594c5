-- Log lines of flow and task runs, shipped by the flow SDK in batches. Kept apart from the
-- events (a chatty flow must not crowd the event log) and dropped past their own retention.
CREATE TABLE logs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       uuid NOT NULL,
    task_run_id  text,
    at           timestamptz NOT NULL,
    level        text NOT NULL,
    logger       text NOT NULL,
    message      text NOT NULL,
    received     timestamptz NOT NULL
);
CREATE INDEX logs_run ON logs (run_id, at, id);
CREATE INDEX logs_at ON logs (at);
