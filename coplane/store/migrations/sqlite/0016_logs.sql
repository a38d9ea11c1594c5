-- Log lines of flow and task runs, shipped by the flow SDK in batches. Kept apart from the
-- events (a chatty flow must not crowd the event log) and dropped past their own retention.
CREATE TABLE logs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       UUID NOT NULL,
    task_run_id  TEXT,
    at           UTCTIME NOT NULL,
    level        TEXT NOT NULL,
    logger       TEXT NOT NULL,
    message      TEXT NOT NULL,
    received     UTCTIME NOT NULL
);
CREATE INDEX logs_run ON logs (run_id, at, id);
CREATE INDEX logs_at ON logs (at);
