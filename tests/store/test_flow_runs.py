"""Flow runs in the store, on both backends: created once per key, claimed once, in due order,
within a deployment's concurrency limit, and crashed once."""

from __future__ import annotations

import threading
from datetime import timedelta

from coplane.orchestrate.runs import crash_stale_runs, create_flow_run
from coplane.store import Conn, Store
from coplane.store.deployments import DeploymentRow, upsert_deployment
from coplane.store.dialects import Row
from coplane.store.flow_runs import claim_flow_run, read_flow_run
from coplane.store.runs import read_run
from tests.factories import T0, at

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def make_deployment(conn: Conn, name: str = "d", **overrides: object) -> Row:
    fields: dict[str, object] = {
        "name": name, "entrypoint": "flows.py:f", "flow": f"sdk.{name}",
        "signature": {"schema": SCHEMA}, "working_dir": "/tmp", **overrides,
    }  # fmt: skip
    return upsert_deployment(conn, DeploymentRow(**fields), T0, replace=True)  # type: ignore[arg-type]


def _claim(store: Store, conn: Conn, worker: str, minutes: float) -> Row | None:
    with conn.transaction():
        return claim_flow_run(conn, "default", worker, at(minutes))


def test_an_idempotency_key_creates_one_run(store: Store, conn: Conn) -> None:
    d = make_deployment(conn)
    with conn.transaction():
        first, new = create_flow_run(store, conn, d, {"n": 1}, idempotency_key="k", now=T0)
    with conn.transaction():
        again, new_again = create_flow_run(store, conn, d, {"n": 2}, idempotency_key="k", now=T0)
    assert new and not new_again and again["id"] == first["id"]
    assert again["parameters"] == {"n": 1}
    run = read_run(conn, first["id"])  # the observed run exists, scheduled at its due time
    assert run["state"] == "scheduled" and run["pipeline"] == "sdk.d"
    assert run["source"] == "deployment"


def test_runs_are_claimed_once_in_due_order(store: Store, conn: Conn) -> None:
    d = make_deployment(conn)
    with conn.transaction():
        late, _ = create_flow_run(store, conn, d, due=at(5), now=T0)
        early, _ = create_flow_run(store, conn, d, due=at(1), now=T0)
    assert _claim(store, conn, "w1", 0) is None  # neither is due yet
    got = _claim(store, conn, "w1", 10)
    assert got is not None and got["id"] == early["id"] and got["worker"] == "w1"
    assert got["state"] == "pending"
    second = _claim(store, conn, "w2", 10)
    assert second is not None and second["id"] == late["id"]
    assert _claim(store, conn, "w1", 10) is None


def test_a_concurrency_limit_holds_back_claims(store: Store, conn: Conn) -> None:
    d = make_deployment(conn, concurrency_limit=1)
    with conn.transaction():
        for _ in range(3):
            create_flow_run(store, conn, d, now=T0)
    first = _claim(store, conn, "w1", 1)
    assert first is not None
    assert _claim(store, conn, "w2", 1) is None  # one is active already
    with conn.transaction():
        conn.execute("UPDATE flow_runs SET state = 'completed' WHERE id = ?",
                     (conn.uid(first["id"]),))  # fmt: skip
    assert _claim(store, conn, "w2", 1) is not None


def test_concurrent_claims_never_take_one_run_twice(store: Store, conn: Conn) -> None:
    d = make_deployment(conn)
    with conn.transaction():
        for _ in range(40):
            create_flow_run(store, conn, d, now=T0)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(worker: str) -> None:
        with store.connect() as c:
            while True:
                with c.transaction():
                    row = claim_flow_run(c, "default", worker, at(1))
                if row is None:
                    return
                with lock:
                    claimed.append(str(row["id"]))

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_a_stale_run_is_crashed_once_and_retried_within_retries(store: Store, conn: Conn) -> None:
    d = make_deployment(conn, retries=1)
    with conn.transaction():
        create_flow_run(store, conn, d, {"n": 4}, now=T0)
    run = _claim(store, conn, "w1", 0)
    assert run is not None
    assert crash_stale_runs(store, timedelta(seconds=30), now=at(0.2)) == []  # still fresh
    crashed = crash_stale_runs(store, timedelta(seconds=30), now=at(1))
    assert [r["id"] for r in crashed] == [run["id"]]
    assert crash_stale_runs(store, timedelta(seconds=30), now=at(1)) == []  # only once
    assert read_flow_run(conn, run["id"])["state"] == "crashed"
    assert read_run(conn, run["id"])["state"] == "crashed"
    retry = _claim(store, conn, "w2", 2)
    assert retry is not None and retry["attempt"] == 2 and retry["parameters"] == {"n": 4}
    assert str(retry["retry_of"]) == str(run["id"])
    crash_stale_runs(store, timedelta(seconds=30), now=at(5))  # the retry crashes too
    assert _claim(store, conn, "w3", 6) is None  # and no third attempt: retries is 1
