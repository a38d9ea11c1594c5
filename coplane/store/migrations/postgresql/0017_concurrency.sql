-- Concurrency limits shared by flows on any machine: a limit has slots, and each holder or
-- waiter has a lease row that it renews. A lease not renewed before `expires` belongs to a
-- process that died; it is dropped, freeing its slots. Waiters are granted in `position`
-- order (arrival order, numbered from the limit's `next_position`).
CREATE TABLE concurrency_limits (
    name           text PRIMARY KEY,
    slots          integer NOT NULL CHECK (slots >= 0),
    next_position  bigint NOT NULL DEFAULT 0,
    created        timestamptz NOT NULL,
    updated        timestamptz NOT NULL
);
CREATE TABLE concurrency_leases (
    id          uuid PRIMARY KEY,
    limit_name  text NOT NULL REFERENCES concurrency_limits (name) ON DELETE CASCADE,
    holder      text NOT NULL,
    occupy      integer NOT NULL CHECK (occupy >= 1),
    position    bigint NOT NULL,
    granted     timestamptz,
    requested   timestamptz NOT NULL,
    expires     timestamptz NOT NULL,
    UNIQUE (limit_name, position)
);
