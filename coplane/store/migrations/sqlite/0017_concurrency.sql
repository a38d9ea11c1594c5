-- Concurrency limits shared by flows on any machine: a limit has slots, and each holder or
-- waiter has a lease row that it renews. A lease not renewed before `expires` belongs to a
-- process that died; it is dropped, freeing its slots. Waiters are granted in `position`
-- order (arrival order, numbered from the limit's `next_position`).
CREATE TABLE concurrency_limits (
    name           TEXT PRIMARY KEY,
    slots          INTEGER NOT NULL CHECK (slots >= 0),
    next_position  INTEGER NOT NULL DEFAULT 0,
    created        UTCTIME NOT NULL,
    updated        UTCTIME NOT NULL
);
CREATE TABLE concurrency_leases (
    id          UUID PRIMARY KEY,
    limit_name  TEXT NOT NULL REFERENCES concurrency_limits (name) ON DELETE CASCADE,
    holder      TEXT NOT NULL,
    occupy      INTEGER NOT NULL CHECK (occupy >= 1),
    position    INTEGER NOT NULL,
    granted     UTCTIME,
    requested   UTCTIME NOT NULL,
    expires     UTCTIME NOT NULL,
    UNIQUE (limit_name, position)
);
